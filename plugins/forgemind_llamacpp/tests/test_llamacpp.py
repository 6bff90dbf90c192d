"""The llamacpp server against the real llama_cpp.server serving SmolLM2-135M-Instruct: a chat
answer through the real openai client, the server gone after a SIGKILL of the process that
started it, a crash while starting as one sentence, the run's pool sharing one real server
between two stages, and validation of the server key with its line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import forgemind_llamacpp
import pytest
from forgemind_hookspecs import ForgeError, StageContext, collect_backends, make_plugin_manager
from forgemind_llamacpp import LlamaCppServer

SMOLLM2 = "smollm2-135m-instruct"

try:
    import llama_cpp.server.app  # noqa: F401 - the server and its [server] extra
except ImportError as error:
    LLAMA_CPP_MISSING: str | None = f"llama-cpp-python[server] cannot be imported: {error}"
else:
    LLAMA_CPP_MISSING = None

needs_llama = pytest.mark.skipif(LLAMA_CPP_MISSING is not None, reason=LLAMA_CPP_MISSING or "")


def _gone(pid: int, within_s: float = 10.0) -> bool:
    """The process ended (a zombie waiting for a reaper counts as ended)."""
    deadline = time.monotonic() + within_s
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError, IndexError):
            return True
        if state in ("Z", "X"):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    server = LlamaCppServer(LlamaCppServer.Options(n_ctx=1024, port=0))
    endpoint = server.start(SMOLLM2, StageContext(work_dir=tmp_path_factory.mktemp("llamacpp")))
    yield endpoint
    server.stop()
    assert _gone(endpoint.pid)


def test_hook_forgemind_register_servers_llamacpp():
    servers = collect_backends(make_plugin_manager([forgemind_llamacpp]), "servers")
    assert servers["llamacpp"].cls is LlamaCppServer
    assert servers["llamacpp"].description.startswith("Serves a GGUF with llama.cpp")


@needs_llama
def test_smollm2_answers_the_real_openai_client(served):
    import openai

    client = openai.OpenAI(base_url=served.base_url, api_key="not-needed")
    assert [m.id for m in client.models.list().data] == [SMOLLM2]
    reply = client.chat.completions.create(
        model=served.model, messages=[{"role": "user", "content": "Say hello in one word."}],
        max_tokens=8, temperature=0.0,
    )
    assert reply.choices[0].message.content.strip()
    assert served.client_defaults == {"dialect": "llamacpp"}
    assert "Uvicorn running" in Path(served.log).read_text(errors="replace")


CHILD = textwrap.dedent("""\
    import sys, threading, time
    from pathlib import Path
    from forgemind_hookspecs import StageContext
    from forgemind_llamacpp import LlamaCppServer

    def start():
        server = LlamaCppServer(LlamaCppServer.Options(n_ctx=512, n_threads=1, port=0))
        endpoint = server.start(sys.argv[1], StageContext(work_dir=Path(sys.argv[2])))
        print(endpoint.pid, flush=True)

    if sys.argv[3] == "thread":  # a worker thread that ends: the server must stay up
        t = threading.Thread(target=start); t.start(); t.join()
    else:
        start()
    time.sleep(600)
    """)


@needs_llama
@pytest.mark.parametrize("started_from", ["main", "thread"])
def test_the_server_dies_with_its_parent_on_sigkill(tmp_path, started_from):
    parent = subprocess.Popen([sys.executable, "-c", CHILD, SMOLLM2, str(tmp_path), started_from],
                              stdout=subprocess.PIPE, text=True)
    pid = None
    try:
        line = parent.stdout.readline()
        assert line.strip().isdigit(), f"the parent printed {line!r}"
        pid = int(line)
        assert not _gone(pid, within_s=1.0)  # up, and still up after its starting thread ended
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        assert _gone(pid), f"server {pid} outlived its SIGKILLed parent"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        parent.stdout.close()
        if pid is not None and not _gone(pid, within_s=0):  # a failed test leaves no server behind
            os.kill(pid, signal.SIGKILL)


@needs_llama
def test_a_crash_while_starting_is_one_sentence_with_the_log(tmp_path):
    bogus = tmp_path / "broken.gguf"
    bogus.write_bytes(b"this is not a GGUF file")
    server = LlamaCppServer(LlamaCppServer.Options(port=0, startup_timeout_s=120))
    with pytest.raises(ForgeError) as raised:
        server.start(str(bogus), StageContext(work_dir=tmp_path / "srv"))
    message = str(raised.value)
    assert message.startswith(f"the llama.cpp server for {bogus} exited with code ")
    assert "\n" not in message and f"(log: {tmp_path / 'srv' / 'server.log'})" in message


def test_a_missing_model_names_the_file_or_the_catalogue(tmp_path):
    from forgemind_hookspecs import ConfigError

    with pytest.raises(ConfigError, match="no such GGUF file"):
        LlamaCppServer().start(str(tmp_path / "none.gguf"), StageContext(work_dir=tmp_path))
    with pytest.raises(ConfigError, match="unknown shipped model 'tinyllama'; expected one of smollm2"):
        LlamaCppServer().start("tinyllama", StageContext(work_dir=tmp_path))


def _forge(home):
    import forgemind_duckdb_registry
    import forgemind_openai

    from forgemind_core import Forge

    return Forge(home=home, entry_points=False, plugins=[
        ("llamacpp", forgemind_llamacpp), ("openai", forgemind_openai), ("duckdb", forgemind_duckdb_registry)])


@needs_llama
def test_the_pool_shares_one_real_server_between_two_stages_and_stops_it(forge_home, tmp_path):
    from forgemind_core.base.servers import ServerPool

    forge = _forge(forge_home)
    events = []
    pool = ServerPool(forge, context=lambda: StageContext(work_dir=tmp_path / "servers"),
                      record=lambda kind, **kw: events.append(kind))
    server = {"backend": "llamacpp", "n_ctx": 512, "port": 0}
    with pool:
        generator = pool.backend("generators", "openai", {"model": SMOLLM2, "server": server}, field="generate")
        judge = pool.backend("filters", "llm_judge",
                             {"model": SMOLLM2, "concurrency": 2, "dialect": "openai", "server": dict(server)},
                             field="filter")
        [endpoint] = pool.running()
        assert generator.options.base_url == judge.options.base_url == endpoint.base_url
        assert generator.options.model == judge.options.model == SMOLLM2
        # the server's hint where the goal writes nothing, the goal's value where it does
        assert (generator.options.dialect, judge.options.dialect) == ("llamacpp", "openai")
        assert (generator.options.concurrency, judge.options.concurrency) == (None, 2)
        assert Path(endpoint.log).parent.parent == tmp_path / "servers"
    assert pool.running() == [] and _gone(endpoint.pid)
    assert events == ["server.started", "server.stopped"]


def test_an_unknown_server_backend_fails_validation_with_its_line(forge_home, tmp_path):
    goal = tmp_path / "goal.yaml"
    goal.write_text(textwrap.dedent(f"""\
        name: served
        task: t
        generate:
          - backend: openai
            model: {SMOLLM2}
            server:
              backend: llama
              n_ctx: 2048
        """))
    errors = [str(e) for e in _forge(forge_home).validate_goal(goal)]
    assert errors == [f"{goal}:7: generate[0].server.backend: no server named 'llama'; installed: llamacpp"]


@needs_llama
def test_forge_eval_scores_a_served_gguf_and_stops_its_server(forge_home, tmp_path):
    import json

    from click.testing import CliRunner

    from forgemind_core.cli.main import build_cli

    suite = tmp_path / "suite.jsonl"
    suite.write_text(json.dumps({"input": "What is the capital of France? Answer in one word.",
                                 "expected": "Paris"}) + "\n")
    result = CliRunner().invoke(build_cli(_forge(forge_home)), [
        "eval", SMOLLM2, "--suite", str(suite), "--runner", "openai", "-o", f"model={SMOLLM2}",
        "-o", 'server={"backend": "llamacpp", "n_ctx": 512, "port": 0}', "--scorer", "exact_match",
        "--max-new-tokens", "12", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)["report"]
    assert len(report["results"]) == 1 and report["results"][0]["output"].strip()
    [log] = (forge_home / "work").rglob("server.log")
    text = log.read_text(errors="replace")
    assert "Uvicorn running" in text
    port = text.split("starting on port ", 1)[1].split()[0]
    assert not _serving(port), "the server outlived forge eval"


def _serving(port: str) -> bool:
    """A forgemind_llamacpp server process on ``port`` is still running."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"forgemind_llamacpp._serve" in args and port.encode() in args and not _gone(int(cmdline.parent.name), 0):
            return True
    return False
