"""Tiered evaluation: canary stop, tier order, batching, per-category metrics, diversity, style,
checkpoint resolution, and ``forge eval`` through click's CliRunner."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
from attrs import frozen
from forgemind_hookspecs import (
    Checkpoint,
    ConfigError,
    EvalCase,
    Example,
    PluginError,
    StageContext,
    UserError,
    hookimpl,
    to_dict,
)

from forgemind_core.trials.scorers import ExactMatchScorer, LabelMatchScorer, RegexScorer
from forgemind_core.trials.tiers import (
    DISTINCT_N_MODULE,
    data_diversity,
    distinct_n,
    diversity,
    evaluate_checkpoint,
    resolve_checkpoint,
    style_match,
)

CKPT = Checkpoint(id="ck1", path="/nowhere", base_model="tiny", method="lora")
SCORERS = {"label_match": LabelMatchScorer(), "exact_match": ExactMatchScorer(), "regex": RegexScorer()}


class DictRunner:
    """Answers from a dict keyed by prompt; remembers every batch it was given."""

    name: ClassVar[str] = "dict"

    @frozen
    class Options:
        pass

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.batches: list[list[str]] = []

    def generate(
        self, checkpoint: Checkpoint, prompts: Sequence[str], ctx: StageContext, **kw: Any
    ) -> list[str]:
        self.batches.append(list(prompts))
        return [self.answers.get(p, "") for p in prompts]


class Progress:
    def __init__(self) -> None:
        self.calls: list[tuple[str, float | None]] = []
        self.advanced = 0.0
        self.closed = 0

    def __call__(self, description: str, total: float | None = None) -> Progress:
        self.calls.append((description, total))
        return self

    def advance(self, n: float = 1, **fields: Any) -> None:
        self.advanced += n

    def close(self) -> None:
        self.closed += 1


def _case(tier: str, text: str, expected: str, category: str | None = None, **kw: Any) -> EvalCase:
    return EvalCase(input=text, expected=expected, tier=tier, category=category or expected, **kw)


def _suites() -> dict[str, list[EvalCase]]:
    return {
        "adversarial": [_case("adversarial", "adv {x}", "B602")],
        "full": [
            _case("full", "f1", "B602"),
            _case("full", "f2", "B602"),
            _case("full", "f3", "B303"),
            _case("full", "f4", "no issue"),
            _case("full", "f5", "anything", "format", checker="regex"),
        ],
        "canary": [_case("canary", "c1", "B602"), _case("canary", "c2", "B303")],
    }


ANSWERS = {
    "Q: c1": "B602 shell",
    "Q: c2": "B303",
    "Q: f1": "B602",
    "Q: f2": "B303",  # wrong
    "Q: f3": "B303 md5",
    "Q: f4": "no issue found",
    "Q: f5": "anything at all",
    "Q: adv {x}": "B602",
}


def test_tiers_run_in_order_with_per_category_metrics() -> None:
    runner = DictRunner(ANSWERS)
    progress = Progress()
    emitted: list[tuple[str, dict[str, Any]]] = []
    ctx = StageContext(progress=progress, emit=lambda kind, payload: emitted.append((kind, dict(payload))))
    reports = evaluate_checkpoint(
        CKPT,
        _suites(),
        runner=runner,
        scorers=SCORERS,
        default_scorer="label_match",
        prompt_format="Q: {input}",
        ctx=ctx,
        batch_size=2,
    )
    assert list(reports) == ["canary", "full", "adversarial"]
    assert [b[0] for b in runner.batches] == ["Q: c1", "Q: f1", "Q: f3", "Q: f5", "Q: adv {x}"]
    assert max(len(b) for b in runner.batches) == 2
    full = reports["full"]
    assert full.metrics["n"] == 5 and full.metrics["accuracy"] == pytest.approx(4 / 5)
    assert full.metrics["per_category"] == {"B303": 1.0, "B602": 0.5, "format": 1.0, "no issue": 1.0}
    assert full.metrics["per_category_n"]["B602"] == 2
    assert {r.scorer for r in full.results} == {"label_match", "regex"}
    assert all(r.tier == "full" and r.input.startswith("f") for r in full.results)
    assert "stopped" not in reports["canary"].metrics
    assert progress.calls == [("evaluate canary", 2), ("evaluate full", 5), ("evaluate adversarial", 1)]
    assert progress.advanced == 8 and progress.closed == 3
    assert [p["name"] for k, p in emitted if k == "metric"] == [
        "eval.canary.accuracy",
        "eval.full.accuracy",
        "eval.adversarial.accuracy",
    ]


def test_canary_failure_stops_before_the_full_benchmark() -> None:
    runner = DictRunner({**ANSWERS, "Q: c2": "B602"})
    reports = evaluate_checkpoint(
        CKPT,
        _suites(),
        runner=runner,
        scorers=SCORERS,
        default_scorer="label_match",
        prompt_format="Q: {input}",
        ctx=StageContext(),
    )
    assert list(reports) == ["canary"]
    metrics = reports["canary"].metrics
    assert metrics["stopped"] is True and metrics["accuracy"] == 0.5
    assert "full, adversarial" in metrics["stop_reason"]
    assert all(not p.startswith("Q: f") for batch in runner.batches for p in batch)
    relaxed = evaluate_checkpoint(
        CKPT,
        _suites(),
        runner=DictRunner({**ANSWERS, "Q: c2": "B602"}),
        scorers=SCORERS,
        default_scorer="label_match",
        prompt_format="Q: {input}",
        ctx=StageContext(),
        canary_min=0.5,
    )
    assert list(relaxed) == ["canary", "full", "adversarial"]


def test_prompt_format_keeps_braces_and_tiers_argument_selects() -> None:
    code = 'd = {"a": 1}; f"{d}"'
    runner = DictRunner({f"```{code}```": "B602"})
    reports = evaluate_checkpoint(
        CKPT,
        {"full": [_case("full", code, "B602")], "canary": [_case("canary", "c", "x")]},
        runner=runner,
        scorers=SCORERS,
        default_scorer="label_match",
        prompt_format="```{input}```",
        ctx=StageContext(),
        tiers=("full",),
    )
    assert list(reports) == ["full"] and reports["full"].metrics["accuracy"] == 1.0


def test_unknown_checker_and_broken_runner_are_reported() -> None:
    suites = {"full": [_case("full", "a", "x", checker="llm_judge")]}
    with pytest.raises(ConfigError, match="llm_judge"):
        evaluate_checkpoint(
            CKPT,
            suites,
            runner=DictRunner({}),
            scorers=SCORERS,
            default_scorer="exact_match",
            prompt_format="{input}",
            ctx=StageContext(),
        )

    class Short(DictRunner):
        def generate(
            self, checkpoint: Checkpoint, prompts: Sequence[str], ctx: StageContext, **kw: Any
        ) -> list[str]:
            return []

    with pytest.raises(PluginError, match="0 outputs for 1 prompts"):
        evaluate_checkpoint(
            CKPT,
            {"full": [_case("full", "a", "x")]},
            runner=Short({}),
            scorers=SCORERS,
            default_scorer="exact_match",
            prompt_format="{input}",
            ctx=StageContext(),
        )


def test_diversity_and_style_metrics() -> None:
    assert distinct_n(["a a a a"], 1) == 0.25
    assert distinct_n(["a b", "a b"], 2) == 0.5
    assert distinct_n([], 2) == 0.0
    assert diversity(["x y z", "x y w"], backend="plain") == {"distinct_1": 4 / 6, "distinct_2": 3 / 4}
    style = style_match(["B602", '{"a": 1}', "one\ntwo three"], ["B303", "B602", "x"])
    assert style["format_match"] == pytest.approx(1 / 3)
    assert style["length_ratio"] == pytest.approx((1 + 2 + 3) / 3)
    assert style_match(["x"], [""]) == {"format_match": 0.0, "length_ratio": 0.0, "n": 0}


def test_data_diversity_with_and_without_embeddings() -> None:
    same = [Example(prompt="check this code", completion=str(i)) for i in range(4)]
    varied = ["check this code", "is md5 safe here", "review the yaml loader", "what about pickle"]
    plain = data_diversity(same)
    assert plain["n"] == 4 and plain["unique_ratio"] == 0.25 and "embedding_spread" not in plain
    assert data_diversity(varied)["distinct_2"] > plain["distinct_2"]

    def embed(texts: list[str]) -> list[list[float]]:  # a bag-of-letters stand-in for a real model
        return [[t.count(ch) for ch in "abcdefghijklmnopqrstuvwxyz"] for t in texts]

    assert data_diversity(same, embed=embed)["embedding_spread"] == pytest.approx(0.0, abs=1e-9)
    assert data_diversity(varied, embed=embed)["embedding_spread"] > 0.05


def test_local_evaluate_metric_module_agrees_with_plain(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_EVALUATE_OFFLINE"):
        monkeypatch.setenv(var, "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    evaluate = pytest.importorskip("evaluate")
    texts = ["the cat sat", "the cat ran far", "a dog sat"]
    metric = evaluate.load(str(DISTINCT_N_MODULE))
    computed = metric.compute(predictions=texts, max_n=2)
    assert computed["distinct_1"] == pytest.approx(distinct_n(texts, 1))
    assert computed["distinct_2"] == pytest.approx(distinct_n(texts, 2))
    assert diversity(texts, backend="evaluate") == pytest.approx(diversity(texts, backend="plain"))


# --- resolve_checkpoint ------------------------------------------------------------------------------


class FakeRegistry:
    def checkpoint(self, ref: str) -> dict[str, Any] | None:
        return {"checkpoint": to_dict(CKPT), "run_id": "r1"} if ref == "ck1" else None


class FakeForge:
    def registry(self) -> FakeRegistry:
        return FakeRegistry()


def test_resolve_checkpoint_by_id_folder_and_manifest(tmp_path: Path) -> None:
    assert resolve_checkpoint(FakeForge(), "ck1") == CKPT
    with pytest.raises(UserError, match="neither a folder nor a checkpoint id"):
        resolve_checkpoint(FakeForge(), "nope")
    plain = tmp_path / "model"
    plain.mkdir()
    first = resolve_checkpoint(FakeForge(), str(plain))
    assert first.path == str(plain.resolve()) and first.kind == "full" and first.method == "full"
    assert resolve_checkpoint(FakeForge(), str(plain)).id == first.id
    (plain / "checkpoint.json").write_text(json.dumps(to_dict(CKPT)))
    moved = resolve_checkpoint(FakeForge(), str(plain))
    assert moved.id == "ck1" and moved.path == str(plain.resolve())  # recorded path gone: use the folder
    (plain / "checkpoint.json").write_text('{"id": "x",\n oops}')
    with pytest.raises(ConfigError, match=r"checkpoint\.json:2"):
        resolve_checkpoint(FakeForge(), str(plain))
    (plain / "checkpoint.json").write_text('{"id": "x"}')
    with pytest.raises(ConfigError, match="not a Checkpoint record"):
        resolve_checkpoint(FakeForge(), str(plain))


# --- forge eval ---------------------------------------------------------------------------------------


class FolderRunner:
    """A test runner whose checkpoint folder holds ``answers.json`` ({prompt: output})."""

    name: ClassVar[str] = "folder"

    @frozen
    class Options:
        pass

    def __init__(self, options: Any) -> None:
        self.options = options

    def generate(
        self, checkpoint: Checkpoint, prompts: Sequence[str], ctx: StageContext, **kw: Any
    ) -> list[str]:
        answers = json.loads((Path(checkpoint.path) / "answers.json").read_text())
        return [answers.get(p, "") for p in prompts]


class FolderRunnerPlugin:
    @hookimpl
    def forgemind_register_runners(self, register: Any) -> None:
        register(FolderRunner)


def make_cli(home: Path) -> Any:
    from forgemind_core.api import Forge
    from forgemind_core.cli.main import build_cli

    return build_cli(Forge(home=home, plugins=[FolderRunnerPlugin()], entry_points=False))


def write_model(folder: Path, answers: dict[str, str]) -> Path:
    folder.mkdir(parents=True)
    (folder / "answers.json").write_text(json.dumps(answers))
    return folder


def write_suite(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


SUITE_ROWS = [
    {"input": "a = eval(x)", "expected": "B307"},
    {"input": "subprocess.run(c, shell=True)", "expected": "B602"},
    {"input": "x = 1", "expected": "no issue", "category": "clean"},
]


def test_forge_eval_json_and_table(tmp_path: Path) -> None:
    from click.testing import CliRunner

    model = write_model(
        tmp_path / "m",
        {
            "Label: a = eval(x)": "B307",
            "Label: subprocess.run(c, shell=True)": "B602",
            "Label: x = 1": "B602",
        },
    )
    suite = write_suite(tmp_path / "suite.jsonl", SUITE_ROWS)
    cli = make_cli(tmp_path / "home")
    args = [
        "eval",
        str(model),
        "--suite",
        str(suite),
        "--runner",
        "folder",
        "--prompt-format",
        "Label: {input}",
        "--scorer",
        "label_match",
    ]
    result = CliRunner().invoke(cli, [*args, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    report = data["report"]
    assert report["tier"] == "full" and report["metrics"]["accuracy"] == pytest.approx(2 / 3)
    assert report["metrics"]["per_category"] == {"B307": 1.0, "B602": 1.0, "clean": 0.0}
    assert [r["output"] for r in report["results"]] == ["B307", "B602", "B602"]
    table = CliRunner().invoke(cli, args)
    assert table.exit_code == 0, table.output
    assert "accuracy 66.7%" in table.output and "clean" in table.output


def test_forge_eval_bad_suite_exits_2_with_one_sentence(tmp_path: Path) -> None:
    from click.testing import CliRunner

    model = write_model(tmp_path / "m", {})
    suite = tmp_path / "bad.jsonl"
    suite.write_text('{"input": "a", "expected": "x"}\n{"expected": "y"}\n')
    cli = make_cli(tmp_path / "home")
    result = CliRunner().invoke(cli, ["eval", str(model), "--suite", str(suite), "--runner", "folder"])
    assert result.exit_code == 2
    assert "bad.jsonl:2" in result.output and "input" in result.output and "Traceback" not in result.output
    both = CliRunner().invoke(
        cli,
        [
            "eval",
            str(model),
            "--suite",
            str(suite),
            "--runner",
            "folder",
            "--pack",
            str(tmp_path),
            "--prompt-format",
            "{input}",
        ],
    )
    assert both.exit_code == 2 and "not both" in both.output
    unknown = CliRunner().invoke(
        cli,
        [
            "eval",
            str(tmp_path / "missing-model"),
            "--suite",
            str(write_suite(tmp_path / "ok.jsonl", SUITE_ROWS)),
            "--runner",
            "folder",
        ],
    )
    assert unknown.exit_code in (1, 2) and "Traceback" not in unknown.output
