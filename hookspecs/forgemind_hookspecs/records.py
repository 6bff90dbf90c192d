"""The records that cross hooks: small, frozen, typed attrs classes.

Every record is (de)serialised only through :data:`forgemind_hookspecs.converter.converter`.
Ids are content hashes wherever the content defines the thing (examples, datasets, eval cases,
events); :func:`content_hash` is the one hashing function everybody uses.

Evolving a record means adding a field *with a default* at the end, so old JSON still loads.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any, Literal

from attrs import Factory, field, frozen

from .bounds import above, at_least, between, one_of

__all__ = [
    "BackendChoice",
    "Checkpoint",
    "DatasetRef",
    "Decision",
    "Estimate",
    "EvalCase",
    "EvalReport",
    "EvalResult",
    "EvaluateSection",
    "Event",
    "Example",
    "GenerationPlan",
    "GeneratorChoice",
    "Goal",
    "Limits",
    "Message",
    "Plan",
    "PretrainSpec",
    "PromptTemplate",
    "ReviewDecision",
    "ReviewItem",
    "ReviewSection",
    "SearchSection",
    "Source",
    "SuccessCriterion",
    "TaskPack",
    "Verdict",
    "content_hash",
]

Tier = Literal["canary", "full", "adversarial"]
TIERS: tuple[str, ...] = ("canary", "full", "adversarial")
#: The most candidate plans one iteration may run (``search.candidates``).
MAX_CANDIDATES = 1024


def content_hash(value: Any, *, length: int = 16) -> str:
    """A stable hex digest of ``value`` (any JSON-serialisable structure, keys sorted).

    :param value: the content; dicts are hashed with sorted keys, tuples as lists.
    :param length: number of hex characters to keep (16 = 64 bits).
    :returns: the hex digest prefix.
    """
    data = json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()[:length]


def _frozen_dict() -> dict[str, Any]:
    return {}


# --------------------------------------------------------------------------------------------
# Goal: what the user asked for (read from a goal YAML file).
# --------------------------------------------------------------------------------------------


@frozen
class SuccessCriterion:
    """When a try counts as a success.

    ``metric`` reaches ``threshold`` on ``tier``, with the canary tier at least ``canary_min``
    and the adversarial tier at least ``adversarial_min``.
    """

    metric: str = "accuracy"
    threshold: float = field(default=0.9, validator=between(0, 1))
    tier: str = field(default="full", validator=one_of(*TIERS))
    canary_min: float = field(default=1.0, validator=between(0, 1))
    adversarial_min: float = field(default=0.0, validator=between(0, 1))


@frozen
class Limits:
    """What a run may use. ``None`` means unlimited.

    ``base_model`` is a local Hugging Face model directory, a hub id, or ``"pretrain"`` to
    pre-train a small base from scratch as the goal's ``pretrain`` section says.
    ``patience`` stops a run after that many iterations without improvement (0: never).
    ``method`` is one of the goal's trainer's ``methods`` (a trainer backend may declare them as a
    class attribute, e.g. the ``hf`` trainer's ``("full", "lora", "qlora")``; goal validation
    checks it there, so the kernel never imports a plugin).
    """

    base_model: str = "pretrain"
    method: str = "lora"
    max_iterations: int = field(default=3, validator=at_least(1))
    budget_usd: float | None = field(default=None, validator=at_least(0))
    wall_clock_s: float | None = field(default=None, validator=above(0))
    max_tokens: int | None = field(default=None, validator=at_least(1))
    patience: int = field(default=2, validator=at_least(0))


@frozen
class PretrainSpec:
    """How to build a base model from scratch when ``limits.base_model == "pretrain"``.

    ``corpus`` is a path, a glob, or ``"stdlib"`` (the Python standard library's source).
    ``preset`` is one of the goal's trainer's ``presets`` (a class attribute of the trainer
    backend, checked by goal validation like ``Limits.method``).
    """

    corpus: str = "stdlib"
    preset: str = "tiny"
    options: Mapping[str, Any] = Factory(_frozen_dict)


@frozen
class BackendChoice:
    """A backend chosen by name in a goal file, with its options (validated by the backend's
    ``Options`` class). In YAML every key beside ``backend`` is an option."""

    backend: str
    options: Mapping[str, Any] = Factory(_frozen_dict)


@frozen
class GeneratorChoice:
    """A generator in the goal's ``generate`` list: its backend, its ``share`` of the examples
    each iteration, and its options."""

    backend: str
    share: float = field(default=1.0, validator=at_least(0))
    options: Mapping[str, Any] = Factory(_frozen_dict)


@frozen
class EvaluateSection:
    """How checkpoints are evaluated: the model ``runner`` backend and the ``scorers`` applied
    to each case (a case may name its own scorer in its ``checker`` field); each iteration the
    ``adversary`` backend writes ``adversarial_per_iteration`` fresh adversarial cases."""

    runner: BackendChoice = BackendChoice("hf")
    scorers: tuple[BackendChoice, ...] = (BackendChoice("label_match"),)
    adversarial_per_iteration: int = field(default=0, validator=at_least(0, 100_000))
    adversary: BackendChoice = BackendChoice("perturb")


@frozen
class ReviewSection:
    """Which reviewer backend runs and which policy file governs the Warden (optional)."""

    backend: str | None = None
    policy: str | None = None
    options: Mapping[str, Any] = Factory(_frozen_dict)


@frozen
class SearchSection:
    """Parallel experimentation (docs/candidates.md): ``candidates`` plans per iteration, the
    planner's own plan first and the rest drawn from ``space`` (a goal-file key such as
    ``train.learning_rate``, ``dataset_size`` or ``strategy`` -> the values to try); each runs as
    a branch of the run on the goal's executor and the best by the success criterion wins.
    ``storage`` is where workers write (default: the ForgeMind home; a path every node sees)."""

    candidates: int = field(default=1, validator=at_least(1, MAX_CANDIDATES))
    space: Mapping[str, tuple[Any, ...]] = Factory(_frozen_dict)
    storage: str | None = None


@frozen
class Goal:
    """A goal: the task, the success criterion, the limits and one section per pillar.

    ``pack`` is the task-pack folder (resolved against the goal file's folder on load);
    ``source`` is the goal file's path (set by the loader, not written by users);
    ``export`` is model-card metadata for ``forge export`` (author, license, version, tags, ...);
    ``report_to`` names the experiment trackers a recorder sends the run to (``mlflow``,
    ``tensorboard``, ``wandb``: docs/tracking.md).
    """

    name: str
    task: str
    success: SuccessCriterion = SuccessCriterion()
    limits: Limits = Limits()
    pack: str | None = None
    pretrain: PretrainSpec = PretrainSpec()
    generate: tuple[GeneratorChoice, ...] = (GeneratorChoice("template"),)
    filter: tuple[BackendChoice, ...] = (BackendChoice("dedupe"), BackendChoice("rules"))
    train: BackendChoice = BackendChoice("hf")
    evaluate: EvaluateSection = EvaluateSection()
    planner: BackendChoice = BackendChoice("default")
    executor: BackendChoice = BackendChoice("local")
    search: SearchSection = SearchSection()
    review: ReviewSection = ReviewSection()
    seed: int = field(default=0, validator=at_least(0, 2**32 - 1))
    source: str | None = None
    export: Mapping[str, Any] = Factory(_frozen_dict)
    report_to: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------
# Task packs: prompt templates, slot values, labels, rubric, evaluation suites.
# --------------------------------------------------------------------------------------------


@frozen
class PromptTemplate:
    """One prompt template of a task pack.

    ``prompt`` and ``completion`` use ``{slot}`` placeholders filled from the pack's slot values
    (or an LLM writes them from ``instruction`` when an LLM generator is used).
    ``category`` is the label the examples of this template carry.
    ``strategies`` names the generation strategies that may use this template (e.g.
    ``("varied",)`` for shapes kept out of the plain ``basic`` data); empty means every strategy.
    ``frames`` names the frame kinds the template fits (empty: any frame). ``python`` is the
    resolved ``file.py:function`` of a pack's own generator function (then ``prompt`` is empty and
    ``id`` is ``file.py:function@<content hash>``).
    """

    id: str
    category: str
    prompt: str
    completion: str = ""
    instruction: str = ""
    weight: float = 1.0
    strategies: tuple[str, ...] = ()
    frames: tuple[str, ...] = ()
    python: str = ""


@frozen
class TaskPack:
    """A task pack loaded from its folder (see docs/task-packs.md for the format).

    ``suites`` maps a tier name (canary, full, adversarial) to a JSONL file path.
    ``data_files`` are real data files (JSONL, CSV, Parquet) mixed into training.
    ``frames`` are surroundings (with ``{head}`` and ``{body}`` placeholders) that the template
    generator's ``varied`` strategy wraps template expansions in.
    ``label_weights`` is the relative share of new data each label gets before any targeting
    (a label not named gets 1): a broad class such as "no issue" (all safe code) needs more.
    ``linked`` holds the slots that are not plain lists of texts: record slots (one draw, several
    fields) and slots drawn from a table keyed by another slot, as the pack wrote them.
    ``frame_kinds`` is each frame's kind ("" for none), parallel to ``frames``. ``scoring`` maps
    ``default`` or a tier to the scorer of suite cases without ``checker``. ``suite_fields`` says
    what a suite row's unknown fields do (``error``, ``ignore`` or ``keep`` them in ``meta``).
    ``verify`` is a ``regex`` generated answers must match, or a ``checker`` scorer name.
    """

    root: str
    name: str
    task: str = ""
    labels: tuple[str, ...] = ()
    label_descriptions: Mapping[str, str] = Factory(_frozen_dict)
    system_prompt: str = ""
    prompt_format: str = "{input}"
    templates: tuple[PromptTemplate, ...] = ()
    slots: Mapping[str, tuple[str, ...]] = Factory(_frozen_dict)
    rubric: str = ""
    suites: Mapping[str, str] = Factory(_frozen_dict)
    data_files: tuple[str, ...] = ()
    frames: tuple[str, ...] = ()
    label_weights: Mapping[str, float] = Factory(_frozen_dict)
    linked: Mapping[str, Any] = Factory(_frozen_dict)
    frame_kinds: tuple[str, ...] = ()
    scoring: Mapping[str, str] = Factory(_frozen_dict)
    suite_fields: str = "error"
    verify: Mapping[str, str] = Factory(_frozen_dict)


# --------------------------------------------------------------------------------------------
# Foundry: examples, verdicts, datasets.
# --------------------------------------------------------------------------------------------


@frozen
class Message:
    """One chat message (role: system, user or assistant)."""

    role: str
    content: str


@frozen
class Source:
    """Where an example came from: generator backend, model, prompt template, seed, and what
    making it cost (tokens, USD)."""

    generator: str
    model: str | None = None
    prompt_template: str | None = None
    seed: int | None = None
    tokens: int = 0
    cost_usd: float = 0.0


def _example_id(self: Example) -> str:
    return content_hash(
        {
            "prompt": self.prompt,
            "completion": self.completion,
            "messages": [[m.role, m.content] for m in self.messages],
        }
    )


@frozen
class Example:
    """One training example: ``prompt``/``completion`` or chat ``messages``.

    ``id`` is the content hash of prompt, completion and messages (not of the source), so the
    same content made twice has one id. ``category`` is the label/category used for targeting.
    """

    prompt: str = ""
    completion: str = ""
    messages: tuple[Message, ...] = ()
    category: str | None = None
    source: Source = Source("unknown")
    meta: Mapping[str, Any] = Factory(_frozen_dict)
    id: str = field(default=Factory(_example_id, takes_self=True))


@frozen
class Verdict:
    """A filter's judgement of one example; every drop is recorded with its reason.

    ``review`` asks for a human's look at a kept example (a score in the policy's grey band):
    the Warden's review stage queues it (see docs/warden.md).
    """

    example_id: str
    filter: str
    keep: bool
    rule: str = ""
    score: float | None = None
    reason: str = ""
    review: bool = False


@frozen
class DatasetRef:
    """A dataset snapshot: ``id`` is the hash of its sorted example ids; ``path`` its Parquet
    file; ``parents`` the datasets it was built from; ``stats`` counts (per category, ...)."""

    id: str
    path: str
    n_examples: int
    parents: tuple[str, ...] = ()
    stats: Mapping[str, Any] = Factory(_frozen_dict)


# --------------------------------------------------------------------------------------------
# Brain: plans and decisions.
# --------------------------------------------------------------------------------------------


@frozen
class GenerationPlan:
    """What one generator makes this iteration: ``count`` examples, spread over categories by
    ``category_weights`` (empty = uniform), with a prompt ``strategy`` and extra ``options``."""

    generator: str
    count: int
    category_weights: Mapping[str, float] = Factory(_frozen_dict)
    strategy: str = "default"
    options: Mapping[str, Any] = Factory(_frozen_dict)


@frozen
class Plan:
    """One try: what to generate, how big the dataset is, how to train, and why."""

    iteration: int
    generation: tuple[GenerationPlan, ...]
    train: Mapping[str, Any] = Factory(_frozen_dict)
    dataset_size: int = 0
    reasons: tuple[str, ...] = ()
    candidate: int = 0


@frozen
class Decision:
    """The policy's verdict after an iteration: ``promote``, ``iterate`` or ``stop``."""

    action: Literal["promote", "iterate", "stop"]
    reasons: tuple[str, ...] = ()
    checkpoint_id: str | None = None
    next_plan: Plan | None = None


# --------------------------------------------------------------------------------------------
# Forge: estimates and checkpoints.
# --------------------------------------------------------------------------------------------


@frozen
class Estimate:
    """What a try will cost before it runs: tokens, optimiser steps, wall time and USD.

    ``basis`` says how ``seconds`` was obtained (``"calibration"``, ``"measured"``, ...).
    """

    tokens: int
    steps: int
    seconds: float
    cost_usd: float = 0.0
    generation_cost_usd: float = 0.0
    basis: str = "calibration"
    details: Mapping[str, Any] = Factory(_frozen_dict)

    @property
    def total_cost_usd(self) -> float:
        return self.cost_usd + self.generation_cost_usd


@frozen
class Checkpoint:
    """A trained (or pre-trained) model on disk.

    ``kind`` is ``adapter`` (LoRA weights only), ``full`` or ``merged``; ``manifest`` holds the
    training config, dataset id, base model hash, seed, library versions, hardware, duration,
    loss curve and cost.
    """

    id: str
    path: str
    base_model: str
    method: str
    kind: Literal["adapter", "full", "merged"] = "full"
    dataset_id: str | None = None
    parent: str | None = None
    manifest: Mapping[str, Any] = Factory(_frozen_dict)


# --------------------------------------------------------------------------------------------
# Trial Grounds: evaluation.
# --------------------------------------------------------------------------------------------


def _case_id(self: EvalCase) -> str:
    return content_hash({"tier": self.tier, "input": self.input, "expected": self.expected})


@frozen
class EvalCase:
    """One evaluation case: ``input`` for the model, ``expected`` output (or pattern), the
    ``checker`` (scorer backend name) that judges it, its ``category`` and ``tier``."""

    input: str
    expected: str = ""
    tier: str = "full"
    category: str | None = None
    checker: str | None = None
    meta: Mapping[str, Any] = Factory(_frozen_dict)
    id: str = field(default=Factory(_case_id, takes_self=True))


@frozen
class EvalResult:
    """A scorer's judgement of one model output on one case.

    ``input`` is the case's input (set by the evaluator, not by scorers), so that a recorded
    report shows what the model was asked without the suite file at hand (``forge compare``,
    the dashboard's side-by-side view).
    """

    case_id: str
    output: str
    score: float
    passed: bool
    scorer: str
    tier: str = "full"
    category: str | None = None
    expected: str = ""
    details: Mapping[str, Any] = Factory(_frozen_dict)
    input: str = ""


@frozen
class EvalReport:
    """All results of one checkpoint on one tier, with aggregate ``metrics``
    (``accuracy``, ``pass_rate``, ``per_category``: {category: accuracy}, ...)."""

    checkpoint_id: str
    tier: str
    results: tuple[EvalResult, ...]
    metrics: Mapping[str, Any] = Factory(_frozen_dict)


# --------------------------------------------------------------------------------------------
# Lorekeeper: events.
# --------------------------------------------------------------------------------------------


@frozen
class Event:
    """Something that happened in a run, broadcast to every recorder via ``forgemind_record``.

    ``kind`` names the payload's shape (see docs/hooks.md: ``run.started``, ``stage.finished``,
    ``examples``, ``verdicts``, ``dataset``, ``estimate``, ``checkpoint``, ``eval.report``,
    ``decision``, ``metric``, ``review.item``, ``review.decision``, ``run.finished``, ...).
    ``seq`` orders events within a run; ``id`` is deterministic, so recording the same event
    again after a crash is idempotent.
    """

    run_id: str
    kind: str
    iteration: int = 0
    stage: str = ""
    payload: Mapping[str, Any] = Factory(_frozen_dict)
    seq: int = 0
    time: float = Factory(time.time)
    id: str = field(
        default=Factory(
            lambda self: content_hash([self.run_id, self.iteration, self.stage, self.kind, self.seq]),
            takes_self=True,
        )
    )


# --------------------------------------------------------------------------------------------
# Warden: review.
# --------------------------------------------------------------------------------------------


@frozen
class ReviewItem:
    """Something waiting for a human: an example (``subject_kind="example"``) or a checkpoint's
    promotion (``"promotion"``), with the scores and reasons that sent it to review."""

    id: str
    run_id: str
    subject_kind: str
    subject_id: str
    payload: Mapping[str, Any] = Factory(_frozen_dict)
    scores: Mapping[str, float] = Factory(_frozen_dict)
    reasons: tuple[str, ...] = ()


@frozen
class ReviewDecision:
    """A human's decision on a review item (``approve``, ``reject``, ``edit``, ``skip``)."""

    item_id: str
    action: Literal["approve", "reject", "edit", "skip"]
    reviewer: str
    reason: str = ""
    edited: Mapping[str, Any] | None = None
    time: float = Factory(time.time)
