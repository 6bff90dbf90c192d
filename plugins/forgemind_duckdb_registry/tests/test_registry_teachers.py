"""The teacher edge: a run served a recorded checkpoint (``server.used``) to generate or judge its
examples, so the lineage of the model trained on them walks back through that checkpoint to the
teacher's own dataset and run (docs/registry.md, "Teachers")."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import forgemind_duckdb_registry as plugin
from _registry_events import Stream, full_run
from forgemind_hookspecs import Checkpoint, Example, Source, Verdict, to_dict
from forgemind_hookspecs.snapshots import write_snapshot


def _student(home: Path, run_id: str, teacher: Checkpoint, *, served_as: str,
             judge: bool = True) -> dict[str, Any]:
    """A run whose openai generator (and llm_judge) were served ``teacher`` under ``served_as``."""
    ev = Stream(run_id)
    examples = [Example(prompt=f"{run_id} ticket {i}", completion=f"answer {i}", category="billing",
                        source=Source("openai", model=served_as, tokens=5)) for i in range(4)]
    examples.append(Example(prompt=f"{run_id} templated", completion="t", category="billing",
                            source=Source("template", prompt_template="t1")))
    ref = write_snapshot(examples, home / "datasets")
    student = Checkpoint(id=f"ck-{run_id}", path=str(home / run_id), base_model="pretrain:tiny",
                         method="full", kind="full", dataset_id=ref.id)
    used = {"key": "k1", "served_model": served_as, "checkpoint_id": teacher.id, "ref": "stable:sqli-detector",
            "checkpoint_run": "run-a", "goal": "sqli-detector", "version": 1, "file": "/x.gguf"}
    batches = [
        [ev("run.started", {"goal": {"name": "successor"}, "forgemind_version": "0.1.0"})],
        [ev("server.started", {"backend": "llamacpp", "model": "stable:sqli-detector", "key": "k1",
                               "served_model": served_as, "checkpoint_id": teacher.id}, stage="servers"),
         ev("server.used", {**used, "pillar": "generators", "client": "openai", "field": "generate"},
            stage="servers"),
         ev("examples", {"examples": to_dict(examples)}, iteration=1, stage="generate")],
    ]  # fmt: skip
    if judge:
        batches.append([
            ev("server.used", {**used, "pillar": "filters", "client": "llm_judge", "field": "filter"},
               stage="servers"),
            ev("verdicts", {"verdicts": [to_dict(Verdict(e.id, "llm_judge", True, score=0.7)) for e in examples]},
               iteration=1, stage="filter"),
        ])  # fmt: skip
    batches += [
        [ev("dataset", {"dataset": to_dict(ref)}, iteration=1, stage="dataset")],
        [ev("checkpoint", {"checkpoint": to_dict(student)}, iteration=1, stage="train")],
    ]
    for batch in batches:
        plugin.forgemind_record(batch, str(home))
    return {"examples": examples, "dataset": ref, "checkpoint": student}


def _teacher(home: Path) -> dict[str, Any]:
    run = full_run(home)  # gen 1: run-a, promoted to stable:v1
    for batch in run["batches"]:
        plugin.forgemind_record(batch, str(home))
    return run


def _edges(ancestors: list[dict[str, Any]], node: str) -> set[tuple[str, str]]:
    return {(a["relation"], a["child"]) for a in ancestors if a["id"] == node}


def test_the_lineage_of_a_student_walks_back_through_its_teacher(forge_home: Path) -> None:
    gen1 = _teacher(forge_home)
    teacher = gen1["checkpoint"]
    gen2 = _student(forge_home, "run-b", teacher, served_as=teacher.id)
    registry = plugin.DuckDBRegistry(forge_home)

    lineage = registry.lineage(gen2["checkpoint"].id)
    ancestors = lineage["ancestors"]
    dataset2 = gen2["dataset"].id
    # checkpoint <- dataset <- (examples of the) teacher checkpoint <- its dataset <- its run
    assert _edges(ancestors, dataset2) == {("trained", gen2["checkpoint"].id)}
    assert _edges(ancestors, teacher.id) == {("generated", dataset2), ("judged", dataset2),
                                             ("generated", "run-b"), ("judged", "run-b")}
    assert _edges(ancestors, gen1["dataset"].id) == {("trained", teacher.id)}
    assert ("produced", gen1["dataset"].id) in _edges(ancestors, "run-a")
    assert {c["id"] for c in lineage["checkpoints"]} >= {gen2["checkpoint"].id, teacher.id, gen1["base"].id}
    assert {d["id"] for d in lineage["datasets"]} == {dataset2, gen1["dataset"].id}
    assert lineage["runs"] == ["run-a", "run-b"]
    sources = next(d for d in lineage["datasets"] if d["id"] == dataset2)["sources"]
    assert {"generator": "openai", "model": teacher.id, "prompt_template": None, "examples": 4} in sources

    # and forwards: the teacher's descendants hold its student and its promotion
    down = {d["id"] for d in registry.lineage(teacher.id)["descendants"]}
    assert {dataset2, gen2["checkpoint"].id, "stable:v1", "run-b"} <= down

    # an example the teacher wrote names it among its ancestors; a templated one does not
    written, templated = gen2["examples"][0], gen2["examples"][-1]
    example = registry.lineage(written.id)
    assert _edges(example["ancestors"], teacher.id) == {("generated", written.id)}
    assert gen1["dataset"].id in {a["id"] for a in example["ancestors"]}
    assert teacher.id not in {a["id"] for a in registry.lineage(templated.id)["ancestors"]}

    # which stage of which run used it, as recorded
    served = registry.sql("SELECT run_id, checkpoint_id, pillar, client, goal, version FROM served_models "
                          "ORDER BY pillar")
    assert [tuple(r.values()) for r in served] == [
        ("run-b", teacher.id, "filters", "llm_judge", "sqli-detector", 1),
        ("run-b", teacher.id, "generators", "openai", "sqli-detector", 1)]


def test_a_teacher_served_under_another_name_is_found_by_the_run_it_served(forge_home: Path) -> None:
    teacher = _teacher(forge_home)["checkpoint"]
    gen2 = _student(forge_home, "run-c", teacher, served_as="q8_0", judge=False)
    registry = plugin.DuckDBRegistry(forge_home)
    ancestors = registry.lineage(gen2["checkpoint"].id)["ancestors"]
    assert _edges(ancestors, teacher.id) == {("generated", gen2["dataset"].id), ("generated", "run-c")}
    assert _edges(registry.lineage(gen2["examples"][0].id)["ancestors"], teacher.id) == {
        ("generated", gen2["examples"][0].id)}


def test_a_served_model_of_no_checkpoint_adds_no_teacher(forge_home: Path) -> None:
    """A catalogue GGUF (no checkpoint id in ``server.used``) and an example naming an unknown
    model leave the lineage as it was: no edge to a node the registry does not know."""
    _teacher(forge_home)
    ev = Stream("run-d")
    examples = [Example(prompt="p", completion="c", source=Source("openai", model="smollm2-135m-instruct"))]
    ref = write_snapshot(examples, forge_home / "datasets")
    plugin.forgemind_record([
        ev("run.started", {"goal": {"name": "g"}}),
        ev("server.used", {"key": "k", "pillar": "generators", "client": "openai", "checkpoint_id": None,
                           "served_model": "smollm2-135m-instruct"}, stage="servers"),
        ev("examples", {"examples": to_dict(examples)}, iteration=1, stage="generate"),
        ev("dataset", {"dataset": to_dict(ref)}, iteration=1, stage="dataset"),
    ], str(forge_home))  # fmt: skip
    registry = plugin.DuckDBRegistry(forge_home)
    assert [(a["kind"], a["relation"]) for a in registry.lineage(ref.id)["ancestors"]] == [("run", "produced")]
    assert registry.sql("SELECT count(*) AS n FROM served_models") == [{"n": 0}]
