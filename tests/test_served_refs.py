"""A model reference beside ``server:`` (docs/servers.md, "Model references"): generation 1 of the
colours goal is trained for real (a tiny pre-trained base, LoRA, the hf trainer) and promoted;
generation 2 names it ``stable:colors`` for its openai generator and its llm_judge filter, so the
run resolves it in the registry, serves its GGUF export with a real llama.cpp server (one server
for both stages), and records the teacher edge, which ``forge lineage`` of the generation-2
checkpoint walks back to generation 1's own dataset. A tiny model writes nonsense; that is fine
for the edge. An unknown or malformed ``stable:`` reference is one sentence, exit code 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from colors_pack import write_pack
from llama_server import needs_llama

from forgemind_core.brain.goalshape import model_ref_problem

CORPUS = " ".join(
    f"the {t} is {c}. my {t} looks {c} today. Sentence: paint it {c} please\nTemperature: {w}\n"
    for t in ("car", "wall", "cup", "lamp")
    for w, cs in (("warm", ("red", "orange", "amber", "crimson", "scarlet", "coral", "ruby", "rust")),
                  ("cool", ("blue", "teal", "azure", "cyan", "navy", "cobalt", "indigo", "sapphire")))
    for c in cs
) * 3

SERVER = "{backend: llamacpp, n_ctx: 512, n_threads: 2}"

STUDENT = f"""\
generate:
  - backend: template
    share: 0.5
  - backend: openai
    share: 0.5
    model: stable:colors
    server: {SERVER}
    examples_per_call: 1
    max_tokens: 96
    temperature: 0.0
    timeout_s: 120
filter:
  - backend: llm_judge
    model: stable:colors
    server: {SERVER}
    on_error: keep
    threshold: 0.0
    max_tokens: 32
    timeout_s: 120
"""


def _forge(home: Path):
    import kernel_plugins

    from forgemind_core import Forge

    return Forge(home=home, plugins=[kernel_plugins])


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """Generation 1: the colours goal on a tiny base pre-trained here, LoRA, promoted to stable."""
    pytest.importorskip("forgemind_hf")
    pytest.importorskip("gguf")
    root = tmp_path_factory.mktemp("successors")
    (root / "corpus.txt").write_text(CORPUS)
    goal = write_pack(root / "colors")
    text = goal.read_text()
    text = text.replace("limits: {base_model: pretrain, method: full, max_iterations: 3}",
                        "limits: {base_model: pretrain, method: lora, max_iterations: 1}\n"
                        f"pretrain: {{corpus: {root / 'corpus.txt'}, preset: tiny, layers: 2, hidden: 64, "
                        "heads: 4, ffn: 128, vocab: 400, context: 128, seq_len: 64, batch_size: 8, steps: 20, "
                        "bf16: false}")
    text = text.replace("success: {metric: accuracy, threshold: 0.9, tier: full, canary_min: 1.0}",
                        "success: {metric: accuracy, threshold: 0.0, tier: full, canary_min: 0.0}")
    text = text.replace("train: {backend: memo}",
                        "train: {backend: hf, epochs: 1, learning_rate: 0.003, bf16: false, batch_size: 8, "
                        "save_every_steps: 0, max_length: 64}")
    text = text.replace("runner: {backend: memo}", "runner: {backend: hf, max_new_tokens: 4, bf16: false}")
    goal.write_text(text)
    forge = _forge(root / "home")
    summary = forge.run(goal, run_id="gen-1")
    assert summary["outcome"] == "promoted", summary["reasons"]
    return forge, summary, root


def _student_goal(root: Path, name: str, sections: str) -> Path:
    """Generation 2: the same pack under another goal name, memo training (the edge is the point)."""
    goal = write_pack(root / name)
    text = goal.read_text().replace("name: colors\n", f"name: {name}\n", 1)
    text = text.replace("max_iterations: 3", "max_iterations: 1")
    start, end = text.index("generate:\n"), text.index("train:")
    goal.write_text(text[:start] + sections + text[end:])
    return goal


@needs_llama
def test_stable_goal_resolves_serves_and_records_the_teacher_edge(teacher):
    from forgemind_core.cli.main import build_cli

    forge, gen1, root = teacher
    teacher_id = gen1["stable_checkpoint"]["id"] if isinstance(gen1["stable_checkpoint"], dict) \
        else gen1["stable_checkpoint"]
    goal = _student_goal(root, "colors-student", STUDENT)
    gen2 = forge.run(goal, run_id="gen-2")
    assert gen2["iterations"], gen2

    registry = forge.registry()
    events = registry.events("gen-2", kinds=["server.started", "server.used", "server.stopped"])
    started = [e["payload"] for e in events if e["kind"] == "server.started"]
    # one server for both stages: the reference resolved once, to gen 1's promoted checkpoint
    assert len(started) == 1, started
    [s] = started
    assert (s["ref"], s["checkpoint_id"], s["checkpoint_run"], s["goal"], s["version"]) == (
        "stable:colors", teacher_id, "gen-1", "colors", 1)
    assert s["served_model"] == teacher_id  # served under its id: examples record it as their model
    # its q8_0 GGUF, exported once into the cache forge serve uses
    assert Path(s["file"]) == forge.home / "cache" / "served" / teacher_id / "model-q8_0.gguf"
    assert Path(s["file"]).is_file()
    used = sorted((e["payload"]["pillar"], e["payload"]["client"], e["payload"]["file"]) for e in events
                  if e["kind"] == "server.used")
    assert used == [("filters", "llm_judge", s["file"]), ("generators", "openai", s["file"])]
    assert [e["kind"] for e in events][-1] == "server.stopped"
    assert not _alive(s["pid"])

    # the judge's verdicts are in, for every example (on_error: keep lets nonsense through)
    verdicts = registry.sql("SELECT count(*) AS n FROM verdicts WHERE run_id = 'gen-2' AND filter = 'llm_judge'")
    assert verdicts[0]["n"] > 0

    student = gen2["iterations"][-1]["checkpoint"]
    result = CliRunner().invoke(build_cli(forge), ["lineage", student, "--json"])
    assert result.exit_code == 0, result.output
    lineage = json.loads(result.output)
    by_id = {}
    for a in lineage["ancestors"]:
        by_id.setdefault(a["id"], set()).add((a["relation"], a["child"]))
    dataset2 = gen2["iterations"][-1]["data"]["dataset_id"]
    dataset1 = gen1["iterations"][0]["data"]["dataset_id"]
    # gen-2 checkpoint <- gen-2 dataset <- teacher (judged it; served the run's generator) <- gen-1 dataset
    assert ("trained", student) in by_id[dataset2]
    assert {("judged", dataset2), ("judged", "gen-2"), ("generated", "gen-2")} <= by_id[teacher_id]
    assert ("trained", teacher_id) in by_id[dataset1]
    assert "gen-1" in lineage["runs"] and "gen-2" in lineage["runs"]

    # The generator asked the teacher under its id, so what it writes names it: the tiny model's
    # grammar-constrained answers are mostly `{"input": ""}` (rejected, and the rejection names the
    # model); an answer that parses is an example whose source.model is the teacher's id, and its
    # dataset then gets the example-level `generated` edge (plugins/forgemind_duckdb_registry/tests/
    # test_registry_teachers.py checks that edge on recorded examples).
    asked = {e["payload"]["model"] for e in registry.events("gen-2", kinds=["generation.rejected"])}
    models = registry.sql("SELECT DISTINCT model FROM examples WHERE run_id = 'gen-2' AND generator = 'openai'")
    assert asked | {m["model"] for m in models} == {teacher_id}
    members = registry.sql(f"SELECT count(*) AS n FROM dataset_examples WHERE dataset_id = '{dataset2}' "
                           f"AND model = '{teacher_id}'")
    assert (("generated", dataset2) in by_id[teacher_id]) == bool(members[0]["n"])


def _alive(pid: int | None) -> bool:
    if pid is None:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def test_an_unknown_stable_reference_is_one_sentence_and_exit_2(forge_home, tmp_path):
    from forgemind_core.cli.main import build_cli

    goal = _student_goal(tmp_path, "orphan", STUDENT.replace("stable:colors", "stable:nobody", 1))
    forge = _forge(forge_home)
    result = CliRunner().invoke(build_cli(forge), ["run", str(goal)])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "generate[1].model" in message and "'stable:nobody'" in message
    assert "no model of goal 'nobody'" in message
    assert "Traceback" not in result.output


def test_a_malformed_channel_reference_fails_validation_with_its_line(forge_home, tmp_path):
    from forgemind_core.cli.main import build_cli

    goal = _student_goal(tmp_path, "typo", STUDENT.replace("stable:colors", "stable:colors@latest", 1))
    result = CliRunner().invoke(build_cli(_forge(forge_home)), ["validate", str(goal)])
    assert result.exit_code == 2, result.output
    line = next(i for i, text in enumerate(goal.read_text().splitlines(), 1) if "@latest" in text)
    assert f"goal.yaml:{line}: generate[1].model:" in result.output
    assert "stable:GOAL@VERSION (VERSION a whole number)" in result.output


@pytest.mark.parametrize(("model", "problem"), [
    ("stable:tickets", None), ("stable:tickets@2", None), ("smollm2-135m-instruct", None),
    ("models/m.gguf", None), ("3f2a9c", None), ("stable:", "not a model reference"),
    ("stable:t@v2", "not a model reference"), ("candidate:t@", "not a model reference"),
])
def test_model_ref_shapes(model, problem):
    found = model_ref_problem(model)
    assert (found is None) if problem is None else (problem in found)


@needs_llama
def test_the_adversary_and_the_runner_take_a_checkpoint_id_too(teacher, tmp_path):
    """The other two clients of a served model, named by the checkpoint's id prefix: one server
    (the same model as stable:colors), both pointed at it under the checkpoint's id, each use
    recorded with its pillar, and the server gone once the pool closes."""
    from forgemind_hookspecs import StageContext

    from forgemind_core.base.servers import ServerPool
    from forgemind_core.lorekeeper.served import RegistryModels

    forge, gen1, _ = teacher
    teacher_id = gen1["stable_checkpoint"]["id"] if isinstance(gen1["stable_checkpoint"], dict) \
        else gen1["stable_checkpoint"]
    events: list[tuple[str, dict]] = []
    pool = ServerPool(forge, context=lambda: StageContext(work_dir=tmp_path / "servers", home=forge.home),
                      record=lambda kind, **kw: events.append((kind, kw["payload"])),
                      resolver=RegistryModels(forge))
    server = {"backend": "llamacpp", "n_ctx": 256, "n_threads": 2}
    with pool:
        runner = pool.backend("runners", "openai", {"model": teacher_id[:12], "server": server},
                              field="evaluate.runner")
        adversary = pool.backend("adversaries", "openai_adversary",
                                 {"model": "stable:colors@1", "server": dict(server)}, field="evaluate.adversary")
        [endpoint] = pool.running()
        assert runner.options.base_url == adversary.options.base_url == endpoint.base_url
        assert runner.options.model == adversary.options.model == endpoint.model == teacher_id
    assert pool.running() == [] and not _alive(endpoint.pid)
    kinds = [k for k, _ in events]
    assert kinds == ["server.started", "server.used", "server.used", "server.stopped"]
    used = {(p["pillar"], p["client"], p["checkpoint_id"], p["goal"], p["version"]) for k, p in events
            if k == "server.used"}
    assert used == {("runners", "openai", teacher_id, "colors", 1),
                    ("adversaries", "openai_adversary", teacher_id, "colors", 1)}
