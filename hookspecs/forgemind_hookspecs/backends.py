"""What a backend looks like, and what the kernel hands it when it runs.

A backend is a class with a ``name`` (what goal files write), an ``Options`` attrs class
(its typed settings; every field needs a default) and a constructor taking an ``Options``
instance. A plugin offers backends through the registration hooks
(``forgemind_register_generators(register)`` and friends): ``register(MyBackend)``.

The methods a backend needs depend on its pillar: see the ``Protocol`` classes below. They
all take a :class:`StageContext` last, which carries the run's ids, folders, logger, budget,
progress reporting and a view of the run's history.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

from attrs import Factory, define, frozen

from .errors import BudgetExceeded
from .policy import Policy
from .records import (
    Checkpoint,
    DatasetRef,
    Decision,
    Estimate,
    EvalCase,
    EvalResult,
    Example,
    GenerationPlan,
    Goal,
    Plan,
    PretrainSpec,
    ReviewDecision,
    ReviewItem,
    TaskPack,
    Verdict,
)

__all__ = [
    "PILLARS",
    "Adversary",
    "Backend",
    "Budget",
    "Endpoint",
    "Executor",
    "Exporter",
    "Filter",
    "Generator",
    "History",
    "IterationSummary",
    "Planner",
    "ProgressTask",
    "Registry",
    "Reviewer",
    "Runner",
    "Scorer",
    "Server",
    "StageContext",
    "TrainRequest",
    "Trainer",
]

T = TypeVar("T")
R = TypeVar("R")

#: Registration hook suffix -> the kind of backend it registers. ``forge plugins`` lists
#: backends under these names; goal files select them by ``name``.
PILLARS: tuple[str, ...] = (
    "generators",
    "filters",
    "trainers",
    "runners",
    "scorers",
    "adversaries",
    "reviewers",
    "planners",
    "executors",
    "exporters",
    "servers",
)


# --------------------------------------------------------------------------------------------
# What the kernel hands a backend.
# --------------------------------------------------------------------------------------------


class ProgressTask(Protocol):
    """A progress bar (or its stand-in): ``advance`` by units done, with live ``fields``
    (``loss=...``, ``tokens_per_s=...``) shown beside it."""

    def advance(self, n: float = 1, **fields: Any) -> None: ...

    def close(self) -> None: ...


class _NullProgress:
    def advance(self, n: float = 1, **fields: Any) -> None:
        return None

    def close(self) -> None:
        return None


def _null_progress(description: str, total: float | None = None) -> ProgressTask:
    return _NullProgress()


@define
class Budget:
    """Money a run may still spend, shared by every stage of the run.

    ``limit_usd`` is ``None`` for unlimited. A backend that is about to pay for something calls
    :meth:`reserve` with the worst-case cost first (so the budget is never exceeded), then
    :meth:`settle` with the real cost once known. The kernel persists :attr:`spent_usd`.
    """

    limit_usd: float | None = None
    spent_usd: float = 0.0
    reserved_usd: float = 0.0
    on_change: Callable[[Budget], None] | None = None

    def remaining_usd(self) -> float | None:
        if self.limit_usd is None:
            return None
        return self.limit_usd - self.spent_usd - self.reserved_usd

    def can_afford(self, usd: float) -> bool:
        remaining = self.remaining_usd()
        return remaining is None or usd <= remaining + 1e-12

    def reserve(self, usd: float, what: str = "") -> None:
        """Hold ``usd`` back for an operation; raises :class:`BudgetExceeded` if it does not fit."""
        if not self.can_afford(usd):
            raise BudgetExceeded(
                f"{what or 'this step'} may cost ${usd:.4f} but only "
                f"${self.remaining_usd() or 0.0:.4f} of the budget is left"
            )
        self.reserved_usd += usd

    def settle(self, reserved_usd: float, actual_usd: float) -> None:
        """Replace a reservation by the actual cost."""
        self.reserved_usd = max(0.0, self.reserved_usd - reserved_usd)
        self.spent_usd += actual_usd
        if self.on_change is not None:
            self.on_change(self)

    def charge(self, usd: float, what: str = "") -> None:
        """Spend ``usd`` at once (reserve and settle)."""
        self.reserve(usd, what)
        self.settle(usd, usd)


class History(Protocol):
    """What a filter or generator may look at from earlier work of the same run."""

    def kept_examples(self) -> Iterator[Example]:
        """Every example kept by the filters in earlier iterations of this run (and its parents)."""
        ...

    def eval_cases(self) -> Sequence[EvalCase]:
        """Every evaluation case of the goal (all tiers), for decontamination."""
        ...


class _EmptyHistory:
    def kept_examples(self) -> Iterator[Example]:
        return iter(())

    def eval_cases(self) -> Sequence[EvalCase]:
        return ()


def _discard(kind: str, payload: Mapping[str, Any]) -> None:
    return None


class _StdlibLog:
    """``StageContext.log`` when the kernel hands none (plugin tests): structlog's call shape,
    ``log.warning("event", key=value)``, over the standard library's ``forgemind`` logger, which
    would otherwise raise ``TypeError`` on the keywords at any enabled level."""

    def __init__(self, name: str = "forgemind", **context: Any) -> None:
        import logging

        self._logger = logging.getLogger(name)
        self._context = context

    def bind(self, **context: Any) -> _StdlibLog:
        return _StdlibLog(self._logger.name, **{**self._context, **context})

    def _log(self, level: int, event: str, fields: dict[str, Any]) -> None:
        if self._logger.isEnabledFor(level):
            pairs = " ".join(f"{k}={v!r}" for k, v in {**self._context, **fields}.items())
            self._logger.log(level, f"{event} {pairs}" if pairs else event)

    def debug(self, event: str, **fields: Any) -> None:
        self._log(10, event, fields)

    def info(self, event: str, **fields: Any) -> None:
        self._log(20, event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        self._log(30, event, fields)

    def error(self, event: str, **fields: Any) -> None:
        self._log(40, event, fields)


def _null_logger() -> Any:
    return _StdlibLog()


@define
class StageContext:
    """Everything the kernel hands a backend for one stage of one iteration.

    :ivar run_id: the run's id.
    :ivar iteration: 1-based iteration number (0 outside the loop, e.g. ``forge train``).
    :ivar stage: ``generate``, ``filter``, ``train``, ``evaluate``, ... .
    :ivar home: the ForgeMind home folder (``./.forgemind`` by default).
    :ivar work_dir: a folder this stage owns; it survives a crash, so a resumed stage finds its
        partial work (e.g. training checkpoints) there.
    :ivar cache_dir: caches shared by runs (LLM responses, pre-trained bases).
    :ivar seed: the seed for this stage (derived from the goal's seed and the iteration).
    :ivar goal: the goal, when running one.
    :ivar pack: the goal's task pack, if any.
    :ivar log: a structlog logger bound to run/iteration/stage.
    :ivar emit: ``emit(kind, payload)`` records an event (a metric, a progress note).
    :ivar progress: ``progress(description, total)`` returns a :class:`ProgressTask`.
    :ivar budget: the run's :class:`Budget`.
    :ivar history: a :class:`History` view over the run's earlier work.
    :ivar policy: the goal's safety :class:`~forgemind_hookspecs.policy.Policy` (``review.policy``),
        or ``None`` when the goal names none.
    """

    run_id: str = "adhoc"
    iteration: int = 0
    stage: str = ""
    home: Path = Path(".forgemind")
    work_dir: Path = Path(".forgemind/work")
    cache_dir: Path = Path(".forgemind/cache")
    seed: int = 0
    goal: Goal | None = None
    pack: TaskPack | None = None
    log: Any = Factory(_null_logger)
    emit: Callable[[str, Mapping[str, Any]], None] = _discard
    progress: Callable[..., ProgressTask] = _null_progress
    budget: Budget = Factory(Budget)
    history: History = Factory(_EmptyHistory)
    policy: Policy | None = None


# --------------------------------------------------------------------------------------------
# Requests and summaries that only make sense together with the protocols below.
# --------------------------------------------------------------------------------------------


@frozen
class TrainRequest:
    """One training job: fine-tune ``base`` on ``dataset`` with ``method`` and
    ``hyperparameters`` (the trainer's Options fields, overridden by the plan), writing to
    ``output_dir``. A request with the same ``output_dir`` resumes from its last checkpoint."""

    base: Checkpoint
    dataset: DatasetRef
    method: str
    output_dir: str
    hyperparameters: Mapping[str, Any] = Factory(dict)
    seed: int = 0


@frozen
class Endpoint:
    """Where a started :class:`Server` answers: an OpenAI-compatible ``base_url`` (ending in
    ``/v1``), the ``model`` name to send, and hints for its clients.

    :ivar api_key: the key the server wants, ``None`` when it accepts any.
    :ivar client_defaults: client options the server knows its clients want (llama.cpp's:
        ``dialect: llamacpp``, so the openai plugin treats it as serial and sends schemas as its
        grammar); the kernel applies each only to a client whose ``Options`` has the field and
        whose goal entry does not write it.
    :ivar pid: the server's process id, when it runs as a local process.
    :ivar log: the server's log file, when it writes one.
    """

    base_url: str
    model: str
    api_key: str | None = None
    client_defaults: Mapping[str, Any] = Factory(dict)
    pid: int | None = None
    log: str | None = None


@frozen
class IterationSummary:
    """What the planner sees of one finished (or cut-short) iteration."""

    iteration: int
    plan: Plan
    generated: int = 0
    kept: int = 0
    dropped_by_reason: Mapping[str, int] = Factory(dict)
    kept_by_category: Mapping[str, int] = Factory(dict)
    dataset_id: str | None = None
    estimate: Estimate | None = None
    checkpoint_id: str | None = None
    loss_curve: tuple[float, ...] = ()
    scores: Mapping[str, Mapping[str, Any]] = Factory(dict)
    cost_usd: float = 0.0
    seconds: float = 0.0
    decision: Decision | None = None


# --------------------------------------------------------------------------------------------
# Backend protocols, one per registration hook.
# --------------------------------------------------------------------------------------------


@runtime_checkable
class Backend(Protocol):
    """Common shape: ``name`` (as written in goal files), ``Options`` (attrs class whose fields
    all have defaults), constructed as ``Backend(options)``. The class docstring's first line is
    what ``forge plugins`` shows."""

    name: ClassVar[str]
    Options: ClassVar[type]

    def __init__(self, options: Any) -> None: ...


class Generator(Backend, Protocol):
    """Foundry: makes training examples (``forgemind_register_generators``)."""

    def generate(self, plan: GenerationPlan, ctx: StageContext) -> Iterable[Example]:
        """Yield up to ``plan.count`` examples, spread over ``plan.category_weights``.

        Yielding one at a time lets the kernel persist each example as soon as it exists, so
        nothing paid for is lost if the run dies midway.
        """
        ...


class Filter(Backend, Protocol):
    """Foundry/Warden: judges examples (``forgemind_register_filters``)."""

    def filter(self, examples: Sequence[Example], ctx: StageContext) -> Sequence[Verdict]:
        """Return one :class:`Verdict` per example, in order; a dropped example says why."""
        ...


class Trainer(Backend, Protocol):
    """Forge: builds base models and fine-tunes them (``forgemind_register_trainers``)."""

    def pretrain(self, spec: PretrainSpec, ctx: StageContext) -> Checkpoint:
        """Build (or reuse, content-addressed) a base model from scratch as ``spec`` says."""
        ...

    def load_base(self, base_model: str, ctx: StageContext) -> Checkpoint:
        """Describe an existing base (a local model folder or a hub id) as a :class:`Checkpoint`."""
        ...

    def estimate(self, request: TrainRequest, ctx: StageContext) -> Estimate:
        """Predict tokens, steps, wall time and cost of ``request`` without training."""
        ...

    def train(self, request: TrainRequest, ctx: StageContext) -> Checkpoint:
        """Train, resuming from the last checkpoint in ``request.output_dir`` if there is one."""
        ...


class Runner(Backend, Protocol):
    """Trial Grounds: runs a checkpoint on prompts (``forgemind_register_runners``)."""

    def generate(
        self,
        checkpoint: Checkpoint,
        prompts: Sequence[str],
        ctx: StageContext,
        *,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
    ) -> list[str]:
        """Return one completion per prompt (greedy when ``temperature == 0``)."""
        ...


class Scorer(Backend, Protocol):
    """Trial Grounds: judges model outputs (``forgemind_register_scorers``)."""

    def score(
        self, cases: Sequence[EvalCase], outputs: Sequence[str], ctx: StageContext
    ) -> list[EvalResult]:
        """Return one :class:`EvalResult` per (case, output) pair, in order."""
        ...


class Adversary(Backend, Protocol):
    """Trial Grounds: writes adversarial cases from existing ones (``forgemind_register_adversaries``)."""

    def perturb(self, cases: Sequence[EvalCase], count: int, ctx: StageContext) -> list[EvalCase]:
        """Return up to ``count`` new cases (tier ``adversarial``) derived from ``cases``."""
        ...


class Planner(Backend, Protocol):
    """Brain: writes the next plan from the whole history (``forgemind_register_planners``)."""

    def plan(
        self, goal: Goal, history: Sequence[IterationSummary], ctx: StageContext
    ) -> Decision:
        """Return ``Decision("iterate", next_plan=...)`` (with ``reasons``) or
        ``Decision("stop", reasons=...)``. ``history`` is empty before the first iteration."""
        ...


class Executor(Backend, Protocol):
    """Brain: runs independent work items, e.g. candidate plans (``forgemind_register_executors``)."""

    def map(self, fn: Callable[[T], R], items: Sequence[T], ctx: StageContext) -> list[R]:
        """Return ``[fn(item) for item in items]``, possibly in parallel; ``fn`` is picklable."""
        ...


class Reviewer(Backend, Protocol):
    """Warden: decides review items, or routes them to a human (``forgemind_register_reviewers``)."""

    def review(self, items: Sequence[ReviewItem], ctx: StageContext) -> list[ReviewDecision]:
        """Return the decisions made now (possibly fewer than ``items``: the rest stay pending)."""
        ...


class Exporter(Backend, Protocol):
    """Export: writes a checkpoint as a bundle for another tool (``forgemind_register_exporters``)."""

    def export(
        self, checkpoint: Checkpoint, out_dir: Path, metadata: Mapping[str, Any], ctx: StageContext
    ) -> Path:
        """Write the bundle into ``out_dir`` and return its main path."""
        ...


class Server(Backend, Protocol):
    """Serves a model on an OpenAI-compatible HTTP API for other backends
    (``forgemind_register_servers``). One instance serves one model; the kernel starts it
    lazily, shares it between the stages of a run that need the same (server, model, options),
    and stops it when the run ends, also by error or interrupt."""

    def start(self, model: str, ctx: StageContext) -> Endpoint:
        """Start serving ``model`` (a name or a path, as the client's ``model`` option says) and
        return once it answers requests. ``ctx.work_dir`` is the server's folder in the run
        (for its log). Raises :class:`~forgemind_hookspecs.errors.ForgeError` (one sentence)
        when it cannot start."""
        ...

    def stop(self) -> None:
        """Stop serving; safe to call twice, and when :meth:`start` failed."""
        ...


class Registry(Protocol):
    """Lorekeeper, query side: what ``forgemind_registry(home)`` returns (firstresult).

    Methods return plain JSON-compatible data (lists of dicts) so that the CLI's ``--json``
    and the dashboard can pass them through.
    """

    def runs(self) -> list[dict[str, Any]]:
        """One row per run: id, goal name, status, started, finished, iterations, outcome."""
        ...

    def run(self, run_id: str) -> dict[str, Any] | None:
        """A run's details: its row, iterations with plan/scores/decision, checkpoints."""
        ...

    def events(self, run_id: str, kinds: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The run's events in ``seq`` order, optionally only these kinds."""
        ...

    def rejections(self, run_id: str) -> list[dict[str, Any]]:
        """Every dropped example of the run with its filter, rule, score and reason."""
        ...

    def lineage(self, node_id: str) -> dict[str, Any]:
        """Ancestors and descendants of a checkpoint, dataset, example or run. A checkpoint
        served to a later run (``server.used`` events: the teacher) is an ancestor of that run
        and of the datasets its examples or its judgements went into (relations ``generated``,
        ``judged``, ``attacked``, ``answered``), so a student's lineage reaches its teacher's."""
        ...

    def channel(self, channel: str = "stable") -> list[dict[str, Any]]:
        """The versions on a channel (``promotion`` events), newest first: version, checkpoint
        id, run id, time."""
        ...

    def metrics(self, run_id: str, name: str | None = None) -> list[dict[str, Any]]:
        """The run's ``metric`` events as rows: iteration, stage, name, step, value."""
        ...

    def examples(self, dataset_id: str) -> list[dict[str, Any]]:
        """The examples of a dataset with their source (generator, model, prompt template)."""
        ...

    def checkpoint(self, checkpoint_id: str) -> dict[str, Any] | None:
        """A checkpoint's record (``checkpoint``: the Checkpoint dict) with its ``run_id`` and
        ``iteration``, or ``None``. Accepts a unique id prefix."""
        ...

    def eval_reports(self, checkpoint_id: str) -> list[dict[str, Any]]:
        """The EvalReport dicts (results included) recorded for a checkpoint, one per tier."""
        ...

    def run_tree(self) -> list[dict[str, Any]]:
        """Every run as a node of the tree of forks (``forge runs --tree``; the kernel nests them).

        :returns: one row per run, oldest first (by ``started``, runs without one last, then by
            id): ``id``, ``goal_name``, ``branch`` (``"main"`` when the run names none),
            ``parent_run`` and ``parent_iteration`` (``None`` for a run that is not a fork),
            ``status``, ``outcome``, ``started``, ``stable_checkpoint``.
        """
        ...

    def resolve(self, node_id: str, kinds: Sequence[str] = ("run", "dataset", "checkpoint")) -> tuple[str, str] | None:
        """What an id given by a user names, where a command accepts several kinds of thing
        (``forge export-data ID``).

        :param node_id: a full id or a prefix of one.
        :param kinds: where to look, in this order (``run``, ``dataset``, ``checkpoint``); the first
            kind holding the exact id, or exactly one id that starts with ``node_id``, answers.
        :returns: ``(kind, full id)``, or ``None`` when no kind has such an id.
        :raises UserError: ``node_id`` is a prefix of several ids of one kind (give more characters).
        """
        ...

    def rows_of(self, kind: str, node_id: str) -> dict[str, list[dict[str, Any]]]:
        """The registry's rows that belong to a run or a checkpoint, table by table
        (``forge export-data``): each row as :meth:`sql` would return it, JSON columns as JSON text,
        so a file written from them reads back with the same rows.

        :param kind: ``run`` (every table of the run's history, filtered to the run: ``runs``,
            ``iterations``, ``events``, ``examples``, ``verdicts``, ``datasets``, ``checkpoints``,
            ``eval_reports``, ``eval_results``, ``metrics``, ``decisions``, ``promotions``) or
            ``checkpoint`` (``eval_results`` and ``eval_reports`` of the checkpoint).
        :param node_id: the full id (see :meth:`resolve`).
        :returns: ``{table: rows}`` in the order above, each table's rows in a stable order.
        :raises UserError: ``kind`` is neither ``run`` nor ``checkpoint``.
        """
        ...

    def dataset(self, dataset_id: str) -> dict[str, Any] | None:
        """A dataset's record: ``id``, ``run_id``, ``iteration``, ``path`` (its snapshot file, as
        recorded: absolute, or relative to the home), ``n_examples``, ``parents`` and ``stats``.

        :param dataset_id: the full id.
        :returns: the record, or ``None`` when no dataset has that id.
        """
        ...

    def checkpoints(self) -> list[dict[str, Any]]:
        """Every checkpoint a run recorded (``Forge.checkpoints`` adds those made outside a run).

        :returns: one row per checkpoint, the latest run and iteration first: ``id``, ``path``,
            ``kind``, ``method``, ``base_model``, ``run_id``, ``iteration``.
        """
        ...

    def sql(self, query: str, *, timeout_s: float | None = ..., max_rows: int | None = ...,
            memory_limit: str | None = ...) -> list[dict[str, Any]]:
        """Run read-only SQL over the registry's tables; any write is refused. The query is
        bounded: stopped after ``timeout_s`` seconds, past ``memory_limit`` (``"1GB"``), or when it
        returns more than ``max_rows`` rows (a UserError each; 0 lifts the time or row limit)."""
        ...

    def reviews(
        self, run_id: str | None = None, *, status: str | None = None, subject_kind: str | None = None
    ) -> list[dict[str, Any]]:
        """The review queue (``review.item`` events with their latest ``review.decision``):
        item_id, run_id, iteration, subject_kind, subject_id, payload, scores, reasons, created,
        action, reviewer, reason, edited, decided, status (``pending`` until a decision other
        than ``skip``, then ``decided``). Filter by run, status or subject kind; oldest first."""
        ...
