"""The Brain's built-in backends: the default planner, a fixed-schedule planner, the local executor.

The default planner is deterministic and offline. It reads the whole history and writes the next
plan with its reasons, acting on four signals:

- **failing categories** get a larger share of the new data (weight grows with the gap to the
  goal's threshold and with the number of cases behind the score: "category B608 at 41% of 10
  cases (full) -> 3.2x its share of new data"; one failed canary case moves it far less);
- **generalisation gap** (training loss low but the target tier failing, or canary fine but full
  failing) moves the generators one step up the ``strategies`` ladder (e.g. ``basic -> varied``):
  more of the same shapes would not help;
- **rejected or missing data** (most of a batch dropped, e.g. as near-duplicates, or the generators
  making far fewer examples than asked because the strategy ran out of distinct inputs) also moves
  one step up the ladder, since that prompt strategy is exhausted;
- **loss**: a curve that is still falling at the end of training gets more epochs; a curve that
  rises or explodes gets half the learning rate; a curve that went flat while still high (the
  model stopped learning before it fit the data) gets twice the learning rate;
- **adversarial tier**: when the target tier passes but the adversarial tier does not, its
  failing categories are targeted and the strategy ladder is climbed, as for the target tier;
- **failure analysis** (the Trial Grounds' ``analysis`` of the tier it targets,
  :mod:`forgemind_core.brain.failures`): a confusion pair ``A -> B`` gets contrastive data (for
  the template generator A's templates closest to B's, and B's closest to A's, weighted up through
  its ``template_weights``; for an LLM generator an instruction naming the confusion; A's share up
  unless its score already raised it); a part of the answer wrong across a category (a JSON field,
  a segment) gets data where it varies more (the templates whose slot feeds that part weighted up);
  mode collapse (one answer for many different inputs) lowers the learning rate, or adds an epoch
  when the loss is still high, and holds the data at its size for that try (the first time: a
  collapse that outlives a training change gets more data as well);
- **budget**: when what is left cannot pay for another try like the last one, it stops;
- **advisor** (optional, ``advisor: {model, server | base_url}``, :mod:`forgemind_core.brain.advisor`):
  the rules' plan, the history and the failure analysis, summarised, go to an LLM that may propose
  category weights, a strategy, epochs, a learning rate and an example count; each is clipped to
  its bound from these options and recorded beside the rules' reasons (``advisor: epochs 2 -> 3
  (clipped from 9)``); an answer that is not valid advice, or no answer, leaves the rules' plan
  with the reason recorded.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

from attrs import field, frozen
from forgemind_hookspecs import (
    Decision,
    ForgeError,
    GenerationPlan,
    Goal,
    IterationSummary,
    Plan,
    StageContext,
    hookimpl,
)
from forgemind_hookspecs.bounds import above, at_least, between, each, one_of

from forgemind_core.brain.advisor import (
    Advisor,
    BadAdvice,
    Bounds,
    Proposal,
    advice_prompt,
    check_advisor,
    parse_advisor,
    read_advice,
)
from forgemind_core.brain.failures import FailureChanges, failure_changes, recorded_analysis
from forgemind_core.foundry.template import STRATEGIES

__all__ = ["DefaultPlanner", "FixedPlanner", "LocalExecutor"]

T = TypeVar("T")
R = TypeVar("R")


def _initial_generation(goal: Goal, count: int, strategy: str, ctx: StageContext) -> tuple[GenerationPlan, ...]:
    total_share = sum(max(c.share, 0.0) for c in goal.generate) or 1.0
    weights = _label_prior(ctx)
    plans = []
    for choice in goal.generate:
        n = max(1, round(count * max(choice.share, 0.0) / total_share))
        plans.append(GenerationPlan(generator=choice.backend, count=n, strategy=strategy,
                                    category_weights=weights, options=dict(choice.options)))
    return tuple(plans)


def _label_prior(ctx: StageContext) -> dict[str, float]:
    """The pack's ``label_weights`` over all its labels (1 where not named), or nothing when the
    pack names none: the share of data each label gets before any targeting."""
    pack = ctx.pack
    if pack is None or not pack.label_weights:
        return {}
    return {label: float(pack.label_weights.get(label, 1.0)) for label in pack.labels}


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _train_defaults(goal: Goal) -> dict[str, Any]:
    return {k: v for k, v in goal.train.options.items() if k in ("epochs", "learning_rate")}


class DefaultPlanner:
    """Deterministic offline planner: targets failing categories, climbs the data-strategy ladder
    on a generalisation gap or rejected data, tunes epochs/learning rate from the loss curve, and
    stops when the budget cannot pay for another try."""

    name: ClassVar[str] = "default"

    @frozen
    class Options:
        initial_examples: int = field(default=600, validator=at_least(1))
        growth: float = field(default=1.5, validator=above(0))
        max_examples_per_iteration: int = field(default=4000, validator=at_least(1))
        strategies: tuple[str, ...] = field(default=("basic", "varied"), validator=each(one_of(*STRATEGIES)))
        max_category_weight: float = field(default=4.0, validator=above(0))
        min_cases_for_full_weight: int = field(default=5, validator=at_least(0))
        low_loss: float = field(default=0.15, validator=at_least(0))
        high_loss: float = field(default=0.5, validator=at_least(0))
        max_learning_rate: float = field(default=0.01, validator=above(0))
        rejected_fraction: float = field(default=0.5, validator=between(0, 1))
        #: Failure analysis: the least count of a confusion pair, and of a wrong part in a
        #: category, that the planner acts on. ``use_analysis`` is off by default until
        #: benchmarks/planner_bench.py has measured it on the example packs (issue 21): it changes the
        #: quickstart's data, whose measured scores the README states; ``true`` turns it on.
        use_analysis: bool = False
        min_confusions: int = field(default=2, validator=at_least(1))
        min_part_failures: int = field(default=3, validator=at_least(1))
        #: The generators that take ``template_weights`` (per template id) and ``instructions``
        #: (per template id or category) options, which the failure analysis sets.
        template_weight_generators: tuple[str, ...] = ("template",)
        instruction_generators: tuple[str, ...] = ("openai",)
        #: The LLM advisor (``{model, server: {backend: llamacpp}}`` or ``{model, base_url}``) and the
        #: bounds of what it may change beside ``max_category_weight``, ``max_learning_rate``,
        #: ``max_examples_per_iteration`` and ``strategies``.
        advisor: Mapping[str, Any] | None = field(default=None, validator=check_advisor)
        min_category_weight: float = field(default=0.25, validator=above(0))
        max_epochs: int = field(default=10, validator=at_least(1))
        min_learning_rate: float = field(default=1e-6, validator=above(0))

    def __init__(self, options: DefaultPlanner.Options) -> None:
        self.options = options
        self.advisor: Advisor | None = parse_advisor(options.advisor)

    def plan(self, goal: Goal, history: Sequence[IterationSummary], ctx: StageContext) -> Decision:
        opts = self.options
        if not history:
            count = opts.initial_examples
            plan = Plan(
                iteration=1,
                generation=_initial_generation(goal, count, opts.strategies[0], ctx),
                train=_train_defaults(goal),
                dataset_size=count,
                reasons=(f"first try: {count} examples with the '{opts.strategies[0]}' strategy",),
            )
            return Decision("iterate", reasons=plan.reasons, next_plan=plan)

        last = history[-1]
        reasons: list[str] = []
        tier = goal.success.tier
        threshold = goal.success.threshold

        # Budget: can what is left pay for another try like the last one?
        remaining = ctx.budget.remaining_usd()
        last_cost = max(last.cost_usd, last.estimate.total_cost_usd if last.estimate else 0.0)
        if remaining is not None and last_cost > 0 and remaining < last_cost:
            return Decision("stop", reasons=(f"${remaining:.4f} of the budget left cannot pay for another try "
                                             f"(~${last_cost:.4f})",))

        # Strategy ladder.
        strategy = last.plan.generation[0].strategy if last.plan.generation else opts.strategies[0]
        step = opts.strategies.index(strategy) if strategy in opts.strategies else 0
        scores = last.scores.get(tier, {})
        target = float(scores.get(goal.success.metric, scores.get("accuracy", 0.0)))
        # The loss at the end of training: the mean of the last steps (one step's loss is noisy).
        final_loss = _mean(last.loss_curve[-max(1, len(last.loss_curve) // 8):]) if last.loss_curve else math.inf
        canary = float(last.scores.get("canary", {}).get("accuracy", 1.0))
        adversarial = last.scores.get("adversarial", {})
        adversarial_failing = (target >= threshold and bool(adversarial)
                               and float(adversarial.get("accuracy", 1.0)) < goal.success.adversarial_min)
        rejected = (last.generated - last.kept) / last.generated if last.generated else 0.0
        requested = sum(g.count for g in last.plan.generation)
        climb = None
        seen = f"{tier} at {target:.0%}" if scores else f"canary at {canary:.0%} (stopped before {tier})"
        if target < threshold and (final_loss <= opts.low_loss or canary >= goal.success.canary_min):
            climb = f"{seen} while training loss is {final_loss:.3f}: the model fits the data it saw but not new shapes"
        elif adversarial_failing:
            climb = (f"{tier} passes but adversarial is at {float(adversarial.get('accuracy', 0.0)):.0%} "
                     f"< {goal.success.adversarial_min:.0%}: the model does not resist unseen shapes")
        elif rejected >= opts.rejected_fraction:
            top = max(last.dropped_by_reason.items(), key=lambda kv: kv[1])[0] if last.dropped_by_reason else "filters"
            climb = f"{rejected:.0%} of the data was rejected (mostly {top})"
        elif requested and (requested - last.generated) / requested >= opts.rejected_fraction:
            climb = (f"the generators made only {last.generated} of the {requested} examples asked for: "
                     f"the '{strategy}' strategy has run out of distinct inputs")
        if climb and step + 1 < len(opts.strategies):
            new = opts.strategies[step + 1]
            reasons.append(f"{climb} -> strategy '{strategy}' -> '{new}'")
            strategy = new

        # Category targeting: the target tier's categories, or the canary's when the canary
        # stopped the iteration before the target tier ran.
        weights: dict[str, float] = {}
        if adversarial_failing and adversarial.get("per_category"):
            seen_tier = "adversarial"
        else:
            seen_tier = tier if scores.get("per_category") else "canary"
        per_category = last.scores.get(seen_tier, {}).get("per_category") or {}
        per_category_n = last.scores.get(seen_tier, {}).get("per_category_n") or {}
        for category, accuracy in sorted(per_category.items()):
            accuracy = float(accuracy)
            if accuracy < threshold:
                boost = 2.0 * (threshold - accuracy) / max(threshold, 1e-9) * 1.5
                # A score from a handful of cases (a canary has one or two per category) is weak
                # evidence: the boost grows with the number of cases behind it.
                n = int(per_category_n.get(category, opts.min_cases_for_full_weight))
                boost *= min(1.0, n / max(opts.min_cases_for_full_weight, 1))
                weights[category] = round(min(opts.max_category_weight, 1.0 + boost), 2)
        for category, weight in sorted(weights.items(), key=lambda kv: -kv[1])[:5]:
            cases = per_category_n.get(category)
            of = f" of {cases} case{'s' if cases != 1 else ''}" if cases is not None else ""
            reasons.append(f"category {category} at {float(per_category[category]):.0%}{of} ({seen_tier}) -> "
                           f"{weight:.1f}x its share of new data")
        changes = FailureChanges()
        analysis = recorded_analysis(last.scores.get(seen_tier, {})) if opts.use_analysis else None
        if analysis is not None and (target < threshold or adversarial_failing or not scores):
            changes = failure_changes(analysis, tier=seen_tier, pack=ctx.pack, max_weight=opts.max_category_weight,
                                      targeted=weights, min_confusions=opts.min_confusions,
                                      min_part_failures=opts.min_part_failures)
            for category, weight in changes.category_weights.items():
                weights[category] = max(weights.get(category, 1.0), weight)
            reasons.extend(changes.reasons)
        if weights:
            for category in per_category:
                weights.setdefault(category, 1.0)
        prior = _label_prior(ctx)
        if prior:  # the pack's prior share is each label's floor; targeting may raise it, not multiply it
            weights = {c: max(w, weights.get(c, 1.0)) for c, w in prior.items()} | {
                c: w for c, w in weights.items() if c not in prior}

        # Data volume.
        previous_count = sum(g.count for g in last.plan.generation)
        count = min(opts.max_examples_per_iteration, max(1, round(previous_count * opts.growth)))
        collapse = changes.collapse
        tried = any(r.startswith("mode collapse") for r in last.plan.reasons)
        if collapse is not None and tried:
            reasons.append(f"mode collapse in {seen_tier} outlived a training change ({collapse.answer!r} for "
                           f"{collapse.inputs} different inputs) -> {count} new examples as well (was {previous_count})")
        elif collapse is not None:  # a collapsed model is a training problem first: hold the data
            count = previous_count
            reasons.append(f"mode collapse in {seen_tier}: {collapse.answer!r} answered for {collapse.inputs} different "
                           f"inputs ({collapse.share:.0%} of answers, {collapse.expected_share:.0%} of references) "
                           f"-> training changes before more data: {count} new examples, as before")
        elif count != previous_count:
            reasons.append(f"{tier} below {threshold:.0%} -> {count} new examples (was {previous_count})")

        # Loss curve (per-step losses are noisy: compare means of the halves of the last quarter).
        train = dict(last.plan.train)
        curve = list(last.loss_curve)
        if len(curve) >= 4:
            quarter = max(2, len(curve) // 4)
            tail, head = curve[-quarter:], curve[:quarter]
            early, late = _mean(tail[: len(tail) // 2]), _mean(tail[len(tail) // 2:])
            if not all(math.isfinite(x) for x in curve) or min(tail) > min(head) * 1.05:
                lr = float(train.get("learning_rate", goal.train.options.get("learning_rate", 1e-3)))
                train["learning_rate"] = lr / 2
                reasons.append(f"loss rose late in training -> learning rate {lr:g} -> {lr / 2:g}")
            elif late > opts.low_loss and early - late > 0.02 * max(early, 1e-9):
                epochs = int(train.get("epochs", goal.train.options.get("epochs", 1)))
                train["epochs"] = epochs + 1
                reasons.append(f"loss still falling at {late:.3f} -> epochs {epochs} -> {epochs + 1}")
            elif late > opts.high_loss:
                lr = float(train.get("learning_rate", goal.train.options.get("learning_rate", 1e-3)))
                new_lr = min(opts.max_learning_rate, lr * 2)
                if new_lr > lr:
                    train["learning_rate"] = new_lr
                    reasons.append(f"loss flat at {late:.3f}, far from fitting the data -> learning rate "
                                   f"{lr:g} -> {new_lr:g}")

        last_lr = float(last.plan.train.get("learning_rate", goal.train.options.get("learning_rate", 1e-3)))
        if collapse is not None and float(train.get("learning_rate", last_lr)) > last_lr:
            # a flat, high loss asked for a higher learning rate; a collapsed model gets more epochs instead
            train["learning_rate"] = last_lr
            if "learning_rate" not in last.plan.train:
                del train["learning_rate"]
            reasons = [r for r in reasons if not r.startswith("loss flat at")]
        if collapse is not None and train == dict(last.plan.train):  # the loss curve changed nothing
            if final_loss > opts.high_loss:
                epochs = int(train.get("epochs", goal.train.options.get("epochs", 1)))
                train["epochs"] = epochs + 1
                reasons.append(f"mode collapse with training loss still at {final_loss:.3f} -> epochs {epochs} -> "
                               f"{epochs + 1}")
            else:
                lr = float(train.get("learning_rate", goal.train.options.get("learning_rate", 1e-3)))
                train["learning_rate"] = lr / 2
                reasons.append(f"mode collapse at training loss {final_loss:.3f} -> learning rate {lr:g} -> {lr / 2:g}")

        if self.advisor is not None:
            weights, strategy, count, train, advised = self._advise(
                goal, history, weights, strategy, count, train, reasons,
                analysis=analysis if analysis is not None else recorded_analysis(last.scores.get(seen_tier, {})),
                categories=tuple(sorted({*per_category, *prior, *weights})))
            reasons.extend(advised)

        generation = tuple(
            GenerationPlan(generator=g.generator, count=max(1, round(count * g.count / max(previous_count, 1))),
                           category_weights=weights, strategy=strategy,
                           options=_generator_options(goal, g.generator, g.options, changes, opts, ctx))
            for g in last.plan.generation
        )
        plan = Plan(iteration=last.iteration + 1, generation=generation, train=train,
                    dataset_size=count, reasons=tuple(reasons))
        return Decision("iterate", reasons=tuple(reasons), next_plan=plan)

    def _advise(self, goal: Goal, history: Sequence[IterationSummary], weights: dict[str, float], strategy: str,
                count: int, train: dict[str, Any], reasons: Sequence[str], *, analysis: Any,
                categories: tuple[str, ...]) -> tuple[dict[str, float], str, int, dict[str, Any], list[str]]:
        """The rules' plan after the advisor's answer, and the reasons it adds (one per change, or
        why the answer was not used)."""
        assert self.advisor is not None
        opts = self.options
        lr = float(train.get("learning_rate", goal.train.options.get("learning_rate", 1e-3)))
        epochs = int(train.get("epochs", goal.train.options.get("epochs", 1)))
        proposal = Proposal(category_weights={c: weights.get(c, 1.0) for c in categories}, strategy=strategy,
                            epochs=epochs, learning_rate=lr, examples=count)
        bounds = Bounds(categories=categories, strategies=opts.strategies, min_weight=opts.min_category_weight,
                        max_weight=opts.max_category_weight, min_epochs=1, max_epochs=opts.max_epochs,
                        min_learning_rate=opts.min_learning_rate, max_learning_rate=opts.max_learning_rate,
                        min_examples=1, max_examples=opts.max_examples_per_iteration)
        prompt = advice_prompt(history, tier=goal.success.tier, threshold=goal.success.threshold, proposal=proposal,
                               bounds=bounds, analysis=analysis, rule_reasons=reasons)
        try:
            advice = read_advice(self.advisor.ask(prompt, bounds.schema()), proposal, bounds)
        except (BadAdvice, ForgeError) as error:
            return weights, strategy, count, train, [f"advisor: {error} -> the rules' plan stands"]
        new = advice.proposal
        train = dict(train)
        if "epochs" in advice.changed:
            train["epochs"] = new.epochs
        if "learning_rate" in advice.changed:
            train["learning_rate"] = new.learning_rate
        if "category_weights" in advice.changed:
            weights = {**weights, **new.category_weights}
        return weights, new.strategy, new.examples, train, list(advice.reasons)


def _generator_options(goal: Goal, generator: str, options: Mapping[str, Any], changes: FailureChanges,
                       opts: DefaultPlanner.Options, ctx: StageContext) -> dict[str, Any]:
    """A generator's options for the next plan: the last plan's, with the failure analysis's
    ``template_weights`` or ``instructions`` put on top of the goal's own (never accumulated over
    iterations: each try's options answer the last try's evidence)."""
    out = dict(options)
    own = next((dict(c.options) for c in goal.generate if c.backend == generator), {})
    if generator in opts.template_weight_generators:
        weights = {**dict(own.get("template_weights") or {}), **changes.template_weights}
        if weights:
            out["template_weights"] = weights
        else:
            out.pop("template_weights", None)
    if generator in opts.instruction_generators:
        instructions = dict(own.get("instructions") or {})
        templates = ctx.pack.templates if ctx.pack is not None else ()
        for category, extra in changes.instructions.items():
            mine = [t for t in templates if t.category == category]
            if not mine:
                instructions[category] = f"{instructions.get(category, '')} {extra}".strip()
            for t in mine:  # per template: the goal's or the pack's own instruction, then the evidence
                base = instructions.get(t.id) or instructions.get(category) or t.instruction
                instructions[t.id] = f"{base} {extra}".strip()
        if instructions:
            out["instructions"] = instructions
        else:
            out.pop("instructions", None)
    return out


class FixedPlanner:
    """A fixed schedule, the baseline the default planner is measured against: the same strategy,
    no targeting, no hyper-parameter changes, the data doubled each iteration."""

    name: ClassVar[str] = "fixed"

    @frozen
    class Options:
        initial_examples: int = field(default=600, validator=at_least(1))
        factor: float = field(default=2.0, validator=above(0))
        strategy: str = field(default="basic", validator=one_of(*STRATEGIES))

    def __init__(self, options: FixedPlanner.Options) -> None:
        self.options = options

    def plan(self, goal: Goal, history: Sequence[IterationSummary], ctx: StageContext) -> Decision:
        n = len(history)
        count = round(self.options.initial_examples * self.options.factor**n)
        plan = Plan(iteration=n + 1, generation=_initial_generation(goal, count, self.options.strategy, ctx),
                    train=_train_defaults(goal), dataset_size=count,
                    reasons=(f"fixed schedule: {count} new examples",))
        return Decision("iterate", reasons=plan.reasons, next_plan=plan)


class LocalExecutor:
    """Runs work items on this machine: in worker processes sized to the CPU count (and, when
    ``memory_gb`` per item is given, to the memory available), or one after another in this
    process when there is one item or room for one worker."""

    name: ClassVar[str] = "local"

    @frozen
    class Options:
        workers: int = field(default=0, validator=at_least(0))  # 0 = one per CPU core, at most one per item
        memory_gb: float = field(default=0.0, validator=at_least(0))  # memory one item needs; 0 = do not size by memory

    def __init__(self, options: LocalExecutor.Options) -> None:
        self.options = options

    def workers_for(self, items: int) -> int:
        """How many items run at once: the option (or the CPU count), at most one per item and,
        with ``memory_gb``, as many as the available memory holds (at least one)."""
        workers = self.options.workers or (os.cpu_count() or 1)
        if self.options.memory_gb > 0:
            available = _available_memory_gb()
            if available is not None:
                workers = min(workers, int(available // self.options.memory_gb))
        return max(1, min(workers, items))

    def map(self, fn: Callable[[T], R], items: Sequence[T], ctx: StageContext) -> list[R]:
        workers = self.workers_for(len(items))
        if workers == 1:
            return [fn(item) for item in items]
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        # A fair share of the cores per worker, so parallel torch trainings do not oversubscribe.
        threads = max(1, (os.cpu_count() or 1) // workers)
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=_share_threads, initargs=(threads,)) as pool:
            return list(pool.map(fn, items))


def _available_memory_gb() -> float | None:
    """Memory available now (Linux: ``MemAvailable``), or ``None`` where it is not cheap to know."""
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024 / 1024
    except OSError:
        return None
    return None


def _share_threads(threads: int) -> None:
    """Worker start-up: cap the math libraries' threads before torch (or numpy) is imported."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "FORGEMIND_WORKER_THREADS"):
        os.environ[var] = str(threads)


@hookimpl
def forgemind_register_planners(register: Callable[[type], None]) -> None:
    register(DefaultPlanner)
    register(FixedPlanner)


@hookimpl
def forgemind_register_executors(register: Callable[[type], None]) -> None:
    register(LocalExecutor)
