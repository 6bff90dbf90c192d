"""The ``openai`` generator: training examples from any OpenAI-compatible chat model.

It asks the model for ``examples_per_call`` examples of one category per call, with a JSON
schema (structured outputs), fills the task pack's ``prompt_format`` with each answer, and
yields :class:`~forgemind_hookspecs.Example` records as calls complete. Categories get
``plan.count`` examples in proportion to ``plan.category_weights`` (the planner raises the
weight of failing categories); within a category, the pack's templates take turns by weight.

Requests are deterministic (each carries a seed derived from the stage seed, category, template
and call index), so a repeated or resumed run hits the response cache instead of paying again.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import urlparse

from attrs import Factory, frozen
from forgemind_hookspecs import (
    BudgetExceeded,
    Example,
    GenerationPlan,
    PromptTemplate,
    Source,
    StageContext,
    TaskPack,
    content_hash,
)

from .client import CallResult, ClientOptions, LLMEngine, Rejection, new_event_loop, parse_json_object

__all__ = ["DEFAULT_PROMPT", "DEFAULT_SYSTEM_PROMPT", "OpenAIGenerator", "allocate"]

DEFAULT_SYSTEM_PROMPT = "You write varied, realistic training data for a machine-learning model."

DEFAULT_PROMPT = (
    "Task: {task}\n"
    "Write {n} different examples for the category \"{category}\"{description}.\n"
    "{instruction}\n"
    "Vary length, style and details; do not number or explain them.\n"
    "Answer with a JSON object {{\"examples\": [...]}}, each item {format_hint}."
)


def _str_map() -> dict[str, str]:
    return {}


def allocate(count: int, weights: Mapping[str, float]) -> dict[str, int]:
    """Split ``count`` over categories in proportion to ``weights`` (largest remainder, ties by
    name), so the counts always add up to ``count`` and the split is deterministic."""
    positive = {k: float(v) for k, v in weights.items() if v and v > 0}
    if count <= 0 or not positive:
        return dict.fromkeys(weights, 0)
    total = sum(positive.values())
    exact = {k: count * w / total for k, w in positive.items()}
    out = {k: math.floor(v) for k, v in exact.items()}
    rest = count - sum(out.values())
    for k in sorted(exact, key=lambda k: (-(exact[k] - out[k]), k))[:rest]:
        out[k] += 1
    return {k: out.get(k, 0) for k in weights}


class _Template:
    """A template this generator writes from (a pack template, or one made for a bare category)."""

    def __init__(self, id: str, category: str | None, instruction: str, weight: float) -> None:
        self.id = id
        self.category = category
        self.instruction = instruction
        self.weight = weight
        self.current = 0.0


def _weighted_round_robin(templates: Sequence[_Template], n: int) -> list[_Template]:
    """Smooth weighted round-robin: deterministic, interleaved, proportional to weights."""
    for t in templates:
        t.current = 0.0
    total = sum(t.weight for t in templates)
    picks = []
    for _ in range(n):
        for t in templates:
            t.current += t.weight
        best = max(templates, key=lambda t: t.current)
        best.current -= total
        picks.append(best)
    return picks


class OpenAIGenerator:
    """Generate training examples with an OpenAI-compatible chat model (structured outputs)."""

    name: ClassVar[str] = "openai"

    @frozen
    class Options(ClientOptions):
        """Generator settings (see :class:`~forgemind_openai.client.ClientOptions` for the rest).

        :ivar examples_per_call: examples asked for in one request.
        :ivar system_prompt: the system message (default :data:`DEFAULT_SYSTEM_PROMPT`; the
            task pack's ``system_prompt`` is the trained model's, not the teacher's).
        :ivar prompt: the user message; placeholders ``{task}``, ``{category}``,
            ``{description}``, ``{instruction}``, ``{n}``, ``{format_hint}``.
        :ivar instructions: ``{template id or category: instruction}`` overriding the pack's.
        :ivar templates: only these pack template ids (empty = all), so two generators in one
            goal can each use their own prompts.
        :ivar max_calls_factor: at most this many times the needed calls per category, counting
            the replacements for rejected answers (plus one call per example missing when the
            model answers with fewer examples than asked).
        :ivar label: a name for this generator in example metadata (default: the model).
        """

        examples_per_call: int = 4
        system_prompt: str = ""
        prompt: str = DEFAULT_PROMPT
        instructions: Mapping[str, str] = Factory(_str_map)
        templates: tuple[str, ...] = ()
        max_calls_factor: float = 2.0
        label: str = ""

    def __init__(self, options: OpenAIGenerator.Options | None = None) -> None:
        self.options = options or self.Options()

    # -- planning the calls ---------------------------------------------------------------

    def _templates(self, plan: GenerationPlan, pack: TaskPack | None) -> dict[str | None, list[_Template]]:
        opts = self.options
        by_cat: dict[str | None, list[_Template]] = {}
        for t in pack.templates if pack else ():
            if opts.templates and t.id not in opts.templates:
                continue
            by_cat.setdefault(t.category, []).append(self._template(t))
        cats: list[str | None] = list(by_cat)
        for c in plan.category_weights:
            if c not in by_cat:
                cats.append(c)
                by_cat[c] = [_Template(f"openai:{c}", c, opts.instructions.get(c, ""), 1.0)]
        if not cats and pack is not None and pack.labels:
            for c in pack.labels:
                by_cat[c] = [_Template(f"openai:{c}", c, opts.instructions.get(c, ""), 1.0)]
        if not by_cat:
            by_cat[None] = [_Template("openai:default", None, opts.instructions.get("default", ""), 1.0)]
        return by_cat

    def _template(self, t: PromptTemplate) -> _Template:
        instr = self.options.instructions.get(t.id) or self.options.instructions.get(t.category) or t.instruction
        return _Template(t.id, t.category, instr, t.weight if t.weight > 0 else 1.0)

    def _messages(self, t: _Template, n: int, ctx: StageContext, labelled: bool) -> list[dict[str, str]]:
        pack = ctx.pack
        task = (pack.task if pack and pack.task else "") or (ctx.goal.task if ctx.goal else "")
        desc = ""
        if pack and t.category and pack.label_descriptions.get(t.category):
            desc = f" ({pack.label_descriptions[t.category]})"
        hint = '{"input": "..."}' if labelled else '{"input": "...", "output": "..."}'
        if not labelled:
            hint += " where output is the ideal answer to input"
        values = {
            "task": task,
            "category": t.category or "general",
            "description": desc,
            "instruction": t.instruction,
            "n": str(n),
            "format_hint": hint,
        }
        user = self.options.prompt.format_map(values)
        # not the pack's system_prompt: that is the trained model's instruction ("answer with the
        # one queue"), and a teacher given it answers as the model would (SmolLM2: empty lists)
        system = self.options.system_prompt or DEFAULT_SYSTEM_PROMPT
        return [{"role": "system", "content": system}, {"role": "user", "content": user}]

    @staticmethod
    def _schema(labelled: bool, n: int = 0) -> dict[str, Any]:
        """The answer's JSON schema; with ``n``, the list holds 1 to ``n`` items (a grammar-
        constrained small model otherwise closes the list at once: ``{"examples": []}``)."""
        props: dict[str, Any] = {"input": {"type": "string"}}
        if not labelled:
            props["output"] = {"type": "string"}
        item = {"type": "object", "properties": props, "required": list(props), "additionalProperties": False}
        return {
            "type": "object",
            "properties": {"examples": {"type": "array", "items": item,
                                        **({"minItems": 1, "maxItems": n} if n > 0 else {})}},
            "required": ["examples"],
            "additionalProperties": False,
        }

    # -- the generator --------------------------------------------------------------------

    def generate(self, plan: GenerationPlan, ctx: StageContext) -> Iterator[Example]:
        """Yield up to ``plan.count`` examples as calls complete (see the module doc).

        :raises BudgetExceeded: after yielding everything already paid for, when the budget
            stopped generation short of ``plan.count``.
        """
        run = _Run(self, plan, ctx)
        loop = new_event_loop()
        try:
            loop.run_until_complete(run.start())
            while batch := loop.run_until_complete(run.next()):
                yield from batch
        finally:
            loop.run_until_complete(run.aclose())
            loop.close()
        run.finish()


class _Run:
    """One ``generate`` call: schedules calls per category, tops up after rejections."""

    def __init__(self, gen: OpenAIGenerator, plan: GenerationPlan, ctx: StageContext) -> None:
        self.gen = gen
        self.opts = gen.options
        self.plan = plan
        self.ctx = ctx
        self.engine = LLMEngine(self.opts, ctx, what="generate")
        pack = ctx.pack
        self.templates = gen._templates(plan, pack)
        weights = {c: float(plan.category_weights.get(c, 0.0)) if plan.category_weights else 1.0
                   for c in self.templates}
        key_of = {c: (c if c is not None else "") for c in self.templates}
        counts = allocate(plan.count, {key_of[c]: w for c, w in weights.items()})
        self.wanted = {c: counts[key_of[c]] for c in self.templates}
        self.labels = set(pack.labels) if pack else set()
        self.k = max(1, self.opts.examples_per_call)
        self.order: dict[str | None, list[_Template]] = {}
        self.next_call = dict.fromkeys(self.templates, 0)
        self.max_calls: dict[str | None, int] = {}
        for c, n in self.wanted.items():
            calls = math.ceil(n / self.k)
            # replacements for rejected answers, plus room for answers with fewer items than asked
            self.max_calls[c] = math.ceil(calls * self.opts.max_calls_factor) + (n - calls)
            self.order[c] = _weighted_round_robin(self.templates[c], self.max_calls[c])
        self.in_flight = dict.fromkeys(self.templates, 0)
        # calls started ahead of a free concurrency slot: enough to keep every slot busy, few
        # enough that a plan of 100k examples does not hold 100k waiting requests (memory, and
        # the garbage collector walking them: about a tenth of the CPU per call at 2k)
        self.window = 2 * self.engine.concurrency
        self.yielded = 0
        self.rejected = 0
        self.queue: asyncio.Queue[Example | None] = asyncio.Queue()
        self.tasks: set[asyncio.Task[None]] = set()
        self._error: BaseException | None = None
        # the host and port only: a base_url's user:password@ never goes into example metadata
        host = urlparse(self.opts.base_url).netloc.rpartition("@")[2] if self.opts.base_url else "api.openai.com"
        self.provider = host
        self.prompt_sha = content_hash(self.opts.prompt + (self.opts.system_prompt or ""), length=12)
        self.progress = ctx.progress(f"generate {self.opts.label or self.opts.model}", total=plan.count)

    # -- scheduling -----------------------------------------------------------------------

    async def start(self) -> None:
        await self.engine.open()
        for c in self.templates:
            self._schedule(c)
        if not self.tasks:
            self.queue.put_nowait(None)

    def _schedule(self, c: str | None) -> None:
        """Start calls for category ``c`` until the in-flight ones can cover what is missing
        (or :attr:`window` calls are in flight)."""
        while (
            sum(self.in_flight.values()) < self.window  # not len(tasks): a finished task leaves it later
            and not self.engine.budget_exhausted
            and self.wanted[c] > self.in_flight[c] * self.k
            and self.next_call[c] < self.max_calls[c]
        ):
            n = min(self.k, self.wanted[c] - self.in_flight[c] * self.k)
            index = self.next_call[c]
            self.next_call[c] += 1
            self.in_flight[c] += 1
            task = asyncio.ensure_future(self._one(c, self.order[c][index], index, n))
            self.tasks.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self._error = task.exception()  # a bug, not an API failure: surface it through next()
            self.queue.put_nowait(None)
        elif not self.tasks:
            self.queue.put_nowait(None)

    async def next(self) -> list[Example]:
        """The examples made since the last call (waiting for one if there are none); empty
        when generation is over. Taking them in batches keeps the event loop running between
        calls instead of stopping it and starting it again for every example."""
        batch: list[Example] = []
        item = await self.queue.get()
        while item is not None:
            batch.append(item)
            if self.queue.empty():
                return batch
            item = self.queue.get_nowait()
        if self._error is not None:
            raise self._error
        self.queue.put_nowait(None)  # the end stays visible to the next call
        return batch

    async def aclose(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.engine.close()

    # -- one call -------------------------------------------------------------------------

    async def _one(self, c: str | None, t: _Template, index: int, n: int) -> None:
        labelled = c is not None and c in self.labels
        seed = int(content_hash([self.ctx.seed, c, t.id, index, n], length=8), 16)
        body = self.engine.request(
            self._messages(t, n, labelled), schema=OpenAIGenerator._schema(labelled, n),
            schema_name="examples", seed=seed,
        )
        try:
            result = await self.engine.call(body)
            if isinstance(result, Rejection):
                if result.reason != "budget exhausted":
                    self._reject(c, t, result.key, result.reason)
            else:
                self._accept(c, t, seed, result, labelled)
        finally:
            self.in_flight[c] -= 1
        # replace what this call failed to deliver, and refill the window
        for category in self.templates:
            self._schedule(category)

    def _messages(self, t: _Template, n: int, labelled: bool) -> list[dict[str, str]]:
        return self.gen._messages(t, n, self.ctx, labelled)

    def _accept(self, c: str | None, t: _Template, seed: int, result: CallResult, labelled: bool) -> int:
        required: dict[str, Any] = {"examples": list}
        data = parse_json_object(result.content, required)
        if isinstance(data, str):
            self._reject(c, t, result.key, data)
            return 0
        items = data["examples"]
        good: list[tuple[str, str]] = []
        for i, item in enumerate(items):
            text = item.get("input") if isinstance(item, dict) else None
            out = item.get("output") if isinstance(item, dict) else None
            if not isinstance(text, str) or not text.strip():
                self._reject(c, t, result.key, f"item {i} has no non-empty string 'input'")
                continue
            if not labelled and (not isinstance(out, str) or not out.strip()):
                self._reject(c, t, result.key, f"item {i} has no non-empty string 'output'")
                continue
            # a label answer carries a leading space, as the template generator writes it
            good.append((text, f" {c}" if labelled and c is not None else str(out)))
        if not good:
            if items == []:
                self._reject(c, t, result.key, "answer has an empty 'examples' list")
            return 0
        share = len(good)
        pack = self.ctx.pack
        made = 0
        for text, completion in good:
            if self.wanted[c] <= 0:
                break
            # only the literal {input} is replaced: str.format would choke on braces in code
            prompt = pack.prompt_format.replace("{input}", text) if pack is not None else text
            example = Example(
                prompt=prompt,
                completion=completion,
                category=c,
                source=Source(
                    generator=OpenAIGenerator.name,
                    model=result.model,
                    prompt_template=t.id,
                    seed=seed,
                    tokens=round((result.prompt_tokens + result.completion_tokens) / share),
                    cost_usd=result.cost_usd / share,
                ),
                meta={
                    "input": text,
                    "request": result.key,
                    "provider": self.provider,
                    "generator_label": self.opts.label or self.opts.model,
                    "prompt_sha": self.prompt_sha,
                },
            )
            self.wanted[c] -= 1
            made += 1
            self.yielded += 1
            self.queue.put_nowait(example)
            self.progress.advance(
                1, cost_usd=round(self.engine.cost_usd, 6), calls=self.engine.calls,
                cached=self.engine.cache_hits, rejected=self.rejected,
            )
        return made

    def _reject(self, c: str | None, t: _Template, key: str, reason: str) -> None:
        self.rejected += 1
        self.ctx.emit(
            "generation.rejected",
            {"generator": OpenAIGenerator.name, "model": self.opts.model, "category": c,
             "prompt_template": t.id, "request": key, "reason": reason},
        )
        self.ctx.log.info("generation.rejected", model=self.opts.model, category=c, reason=reason)

    # -- the end --------------------------------------------------------------------------

    def finish(self) -> None:
        """Record totals; raise :class:`BudgetExceeded` if the budget cut generation short."""
        e = self.engine
        self.progress.close()
        step = self.ctx.iteration
        for name, value in (
            ("generate.cost_usd", e.cost_usd),
            ("generate.calls", float(e.calls)),
            ("generate.cache_hits", float(e.cache_hits)),
            ("generate.retries", float(e.retries)),
            ("generate.tokens", float(e.prompt_tokens + e.completion_tokens)),
            ("generate.completion_tokens", float(e.completion_tokens)),
            ("generate.rejected", float(self.rejected)),
            ("generate.examples", float(self.yielded)),
        ):
            self.ctx.emit("metric", {"name": name, "value": value, "step": step, "model": self.opts.model})
        if e.budget_exhausted and self.yielded < self.plan.count:
            self.ctx.emit(
                "generation.stopped",
                {"generator": OpenAIGenerator.name, "model": self.opts.model, "reason": "budget",
                 "examples": self.yielded, "wanted": self.plan.count},
            )
            raise BudgetExceeded(
                f"generator openai ({self.opts.model}) stopped at the budget after {self.yielded} "
                f"of {self.plan.count} examples"
            )
