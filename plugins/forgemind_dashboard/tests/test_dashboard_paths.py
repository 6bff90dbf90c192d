"""No file outside the allowed folders, and no secret, leaves the dashboard through its HTTP API.

``forge dashboard`` runs as its own process (so ``/proc/self/environ`` is the server's, holding
its token, an API key and a canary variable), with a token, on 127.0.0.1; ``gradio_client`` logs
in and reads the app's API info, and EVERY endpoint it lists is called with each hostile path in
every free-text parameter (all at once, then one at a time with the others empty), and with goal
texts naming those paths. An endpoint added later is in the API info, so it is driven too. No
answer may hold a line of ``/etc/passwd``, the token, the key or the canary.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

TOKEN = "probe-token-5f1c9e7a2b"
API_KEY = "sk-probe" + "0123456789abcdefghijklmnopqrstuv"
CANARY = "canary-value-7d3e1f0a"  # a variable with a plain name: no redactor hides it, only confinement
PASSWD_LINE = re.compile(r"root:[^\s:]*:0:0:")


def _secrets_in(text: str) -> list[str]:
    found = [name for name, value in (("token", TOKEN), ("api key", API_KEY), ("canary", CANARY)) if value in text]
    return found + (["/etc/passwd line"] if PASSWD_LINE.search(text) else [])


def _wait_up(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    import httpx

    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"forge dashboard exited {proc.returncode}: {log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"forge dashboard did not answer on {url}: {log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def served(tmp_path_factory, free_port):
    """``forge --home HOME dashboard --token T`` started in PROJECT (the default allow-list: the
    current folder and the home), with symlinks out of the home and out of the project."""
    root = tmp_path_factory.mktemp("paths")
    home, project = root / "home", root / "project"
    (home / "exports").mkdir(parents=True)
    project.mkdir()
    (home / "escape").symlink_to("/etc/passwd")
    (home / "escape-dir").symlink_to("/etc")
    (home / "exports" / "escape.zip").symlink_to("/etc/passwd")
    (project / "environ.yaml").symlink_to("/proc/self/environ")
    env = {**os.environ, "FORGEMIND_DASHBOARD_TOKEN": TOKEN, "OPENAI_API_KEY": API_KEY, "FM_PROBE": CANARY,
           "GRADIO_ANALYTICS_ENABLED": "False"}
    log = root / "dashboard.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "forgemind_core", "--home", str(home), "dashboard",
                                 "--port", str(free_port)], cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{free_port}/"
    try:
        _wait_up(url, proc, log)
        yield {"url": url, "home": home, "project": project, "log": log}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert not _secrets_in(log.read_text(errors="replace")), "the dashboard's own output holds a secret"


def hostile_paths(home: Path) -> list[str]:
    return ["/etc/passwd", "/proc/self/environ", "../" * 12 + "etc/passwd", f"{home}/" + "../" * 12 + "etc/passwd",
            str(home / "escape"), str(home / "escape-dir" / "passwd"), "environ.yaml"]


def hostile_goals(home: Path) -> list[str]:
    """Goal texts whose fields name the hostile paths (the policy validator echoed file lines)."""
    return [f"name: probe\ntask: probe\npack: {json.dumps(str(Path(p).parent))}\nreview:\n  policy: {json.dumps(p)}\n"
            f"pretrain:\n  corpus: {json.dumps(p)}\n" for p in hostile_paths(home)]


def _is_free_text(param: dict[str, Any]) -> bool:
    """A string parameter whose value the client chooses (a textbox, code, a custom-value dropdown);
    a dropdown or radio with fixed choices gets its first choice (gradio refuses anything else)."""
    kind = param.get("type") or {}
    if kind.get("type") == "array":
        kind = kind.get("items") or {}
    return kind.get("type") == "string" and not kind.get("enum")


def _default(param: dict[str, Any]) -> Any:
    kind = param.get("type") or {}
    if param.get("parameter_has_default"):
        return param.get("parameter_default")
    if kind.get("enum"):
        return kind["enum"][0]
    return None  # a File: gradio itself refuses a path it did not receive as an upload (tested below)


def _as_value(param: dict[str, Any], text: str) -> Any:
    return [text] if (param.get("type") or {}).get("type") == "array" else text


def calls(api: dict[str, Any], values: list[str], alone: list[str]) -> list[tuple[str, list[Any]]]:
    """Every endpoint x every value in all its free-text parameters at once, and x each value of
    ``alone`` in each free-text parameter alone (the others empty, so that a check of another
    field, e.g. exporter options that must read KEY=VALUE, cannot stop the call before the path)."""
    out = []
    for name, endpoint in api["named_endpoints"].items():
        params = endpoint["parameters"]
        free = [i for i, p in enumerate(params) if _is_free_text(p)]
        base = [_default(p) for p in params]
        if not free:
            out.append((name, base))
            continue
        for value in values:
            out.append((name, [_as_value(p, value) if i in free else base[i] for i, p in enumerate(params)]))
        for value in alone if len(free) > 1 else []:
            for j in free:
                out.append((name, [_as_value(p, value) if i == j else ("" if i in free else base[i])
                                   for i, p in enumerate(params)]))
    return out


def _answer_text(result: Any, downloads: Path) -> str:
    """The answer as text, with the content of any file gradio_client downloaded for it (into
    ``downloads``; a path the page merely shows, such as the one the user typed, is not read)."""
    parts = [repr(result)]

    def walk(obj: Any) -> None:
        if isinstance(obj, str) and len(obj) < 4096 and Path(obj).is_relative_to(downloads) and os.path.isfile(obj):
            parts.append(Path(obj).read_text(errors="replace"))
        elif isinstance(obj, dict):
            for v in obj.values():
                walk(v)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                walk(v)

    walk(result)
    return "\n".join(parts)


def test_no_endpoint_returns_a_file_outside_the_allowed_folders_or_a_secret(served):
    from gradio_client import Client

    downloads = served["home"].parent / "downloads"
    client = Client(served["url"], auth=("anyone", TOKEN), verbose=False, download_files=downloads)
    api = client.view_api(return_format="dict", print_info=False)
    names = set(api["named_endpoints"])
    # the endpoints that take a path are in the info (a renamed one would fall out of the sweep unseen)
    assert {"/lp_load_fn", "/lp_validate_fn", "/lp_run_fn", "/lp_form_fn", "/ex_fn", "/pg_send_fn",
            "/ev_compare", "/rn_config_fn", "/rn_show_fn", "/ln_fn", "/poll"} <= names, sorted(names)
    paths, goals = hostile_paths(served["home"]), hostile_goals(served["home"])
    todo = calls(api, paths + goals, [paths[1], paths[4], goals[0], goals[1]])

    def one(call: tuple[str, list[Any]]) -> tuple[str, list[Any], str]:
        name, args = call
        try:
            answer = _answer_text(client.predict(*args, api_name=name), downloads)
        except Exception as error:  # an error shown to the client is an answer too
            answer = f"{type(error).__name__}: {error}"
        return name, args, answer

    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(one, todo))
    leaks = [(name, args, found, answer[:300]) for name, args, answer in answers if (found := _secrets_in(answer))]
    assert not leaks, (f"{len(leaks)} of {len(answers)} calls leaked, through {sorted({leak[0] for leak in leaks})}; "
                       f"first: {leaks[:3]}")
    # the loader and the validator refuse with one sentence that names the allowed folders
    by_name = {(n, json.dumps(a)): text for n, a, text in answers}
    refused = by_name[("/lp_load_fn", json.dumps(["/proc/self/environ"]))]
    assert "outside the folders this dashboard may read" in refused and "\n" not in refused.strip("()'\" ")


def test_gradio_serves_no_file_outside_its_own_and_the_exports(served):
    """The file route and a file parameter given as a path (not uploaded) return no content."""
    import httpx

    url, home = served["url"], served["home"]
    with httpx.Client(base_url=url, timeout=30) as http:
        assert http.post("login", data={"username": "x", "password": TOKEN}).status_code < 400
        for path in ("/etc/passwd", "/proc/self/environ", str(home / "escape"), str(home / "exports" / "escape.zip")):
            answer = http.get(f"gradio_api/file={path}")
            assert answer.status_code >= 400 and not _secrets_in(answer.text), (path, answer.status_code)
        file_data = {"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}, "orig_name": "passwd"}
        started = http.post("gradio_api/call/ft_check", json={"data": [file_data, "auto", "", "", "", "", "lora",
                                                                          1, 1, 0.001, 16, 4, 8]})
        text = started.text
        if started.status_code == 200:
            text += http.get(f"gradio_api/call/ft_check/{started.json()['event_id']}").text
        assert not _secrets_in(text), text[:500]


def test_a_base_model_or_checkpoint_path_is_confined_once_a_dataset_is_uploaded(served):
    """The fine-tuning buttons reach the base model only with a real upload, which the sweep does
    not send (one would start work): each is driven here with a small dataset and hostile bases."""
    from gradio_client import Client, handle_file

    data = served["project"] / "rows.jsonl"
    data.write_text('{"prompt": "a", "completion": "b"}\n')
    client = Client(served["url"], auth=("anyone", TOKEN), verbose=False,
                    download_files=served["home"].parent / "downloads")
    for endpoint in ("/ft_estimate_fn", "/ft_start"):
        for base in hostile_paths(served["home"]):
            answer = repr(client.predict(handle_file(str(data)), "auto", "", "", "", base, "lora", 1, 1, 0.001,
                                         16, 4, 8, api_name=endpoint))
            assert "outside the folders this dashboard may read" in answer and not _secrets_in(answer), answer
    # a file inside the project is read (the allow-list's default is the folder it was started in)
    assert "first 1 row(s)" in repr(client.predict(handle_file(str(data)), "auto", "", "", "", "", "lora", 1, 1,
                                                   0.001, 16, 4, 8, api_name="/ft_check"))
