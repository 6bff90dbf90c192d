"""The call engine every backend of this plugin shares: cache, limits, retries, budget, cost.

One :class:`LLMEngine` is built per stage run and lives inside one asyncio event loop that the
(synchronous) backend method drives. Running the loop in the *calling* thread, not a worker
thread, keeps every ``ctx.emit``, ``ctx.budget`` and progress call in the kernel's thread, so the
kernel never has to be thread-safe for us.

For each call the engine:

1. looks the request up in the persistent cache (``ctx.cache_dir/llm``), keyed by a hash of the
   full request (base URL, model, messages, parameters; never the API key): a hit costs nothing;
2. reserves the worst case (prompt-token upper estimate + ``max_tokens`` at the model's prices)
   on ``ctx.budget`` — if that does not fit, no call is made and the run stops at the budget;
3. waits for the client-side rate limits (requests/min and tokens/min) and a concurrency slot;
4. calls Chat Completions (or Completions, for a body with a ``prompt``), retrying 408/409/429/5xx, timeouts, broken and non-JSON bodies with
   exponential backoff and full jitter, honouring ``Retry-After``;
5. appends the response to the cache (see :class:`ResponseCache`) before the call counts as
   done, and settles the budget with the real cost.

Failures that survive the retries come back as :class:`Rejection` values, never exceptions.

The server's *dialect* (``ClientOptions.dialect``) is found on the first call that is not a cache
hit: a local ``base_url`` is asked ``GET /models`` once, and llama-cpp-python's server (every
model ``owned_by: "me"``) is treated as what it is: it answers one request at a time (so
``concurrency`` left unset means 1 there, not 8) and it returns HTTP 500 for OpenAI's
``json_schema`` response format (so a schema goes as llama.cpp's grammar-constrained
``{"type": "json_object", "schema": ...}``). The cache key is the request as written, before
that translation, so a cached run needs no probe and makes no request at all.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from attrs import Factory, field, frozen
from forgemind_hookspecs import BudgetExceeded, ConfigError, StageContext, content_hash

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_PRICES",
    "CallResult",
    "ClientOptions",
    "LLMEngine",
    "RateLimiter",
    "Rejection",
    "ResponseCache",
    "estimate_prompt_tokens",
    "new_event_loop",
    "parse_json_object",
    "price_of",
    "run_calls",
]

#: USD per million tokens (input, output). Extend or override per goal with ``prices:``.
DEFAULT_PRICES: Mapping[str, Mapping[str, float]] = {
    "gpt-4o-mini": {"input": 0.15, "output": 0.60},
    "gpt-4o": {"input": 2.50, "output": 10.00},
    "gpt-4.1": {"input": 2.00, "output": 8.00},
    "gpt-4.1-mini": {"input": 0.40, "output": 1.60},
    "gpt-4.1-nano": {"input": 0.10, "output": 0.40},
}

RETRY_STATUS = frozenset({408, 409, 429})

#: Calls in flight when ``concurrency`` is not set: 8 for an API or a batching server (vLLM,
#: Ollama), 1 for a server known to answer one request at a time (llama-cpp-python's).
DEFAULT_CONCURRENCY = 8
SERIAL_DIALECTS = frozenset({"llamacpp"})


def _prices_factory() -> dict[str, dict[str, float]]:
    return {}


def _check_base_url(options: Any, attribute: Any, url: str | None) -> None:
    """A base_url that cannot work fails at validation, not as 7 retried 'malformed' calls."""
    from urllib.parse import urlsplit

    parts = urlsplit(url or "http://h")
    try:
        parts.port  # noqa: B018 - raises on a port that is not a number (never quote it: it may be a password)
    except ValueError:
        raise ValueError("base_url has an invalid host or port") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("base_url must be an http:// or https:// URL with a host")
    if parts.username is not None and options.http_client == "aiohttp":
        raise ValueError("base_url carries credentials (user:password@), which the aiohttp transport refuses to "
                         "send with the API key: set http_client: httpx, or put the key in api_key_env")


@frozen
class ClientOptions:
    """Connection, limits, retries and prices shared by every backend of this plugin.

    :ivar model: the model name sent to the server.
    :ivar base_url: any OpenAI-compatible server (vLLM, Ollama ``http://localhost:11434/v1``,
        llama.cpp server, LM Studio); ``None`` = api.openai.com.
    :ivar api_key_env: the environment variable holding the API key (the key itself is never
        an option, so it cannot leak into goal files, records, logs or cache keys).
    :ivar prices: ``{model: {input: usd_per_1M_tokens, output: usd_per_1M_tokens}}``, merged
        over :data:`DEFAULT_PRICES`; a model with no price costs 0 (local servers).
    :ivar http_client: the ``openai`` client's HTTP transport: ``aiohttp`` (its
        ``DefaultAioHttpClient``, about half the CPU per call of the default) or ``httpx``.
        Either way one pool holds ``concurrency`` keep-alive connections.
    :ivar concurrency: calls in flight at most; ``None`` = :data:`DEFAULT_CONCURRENCY` (8), or 1
        on a server that answers one request at a time (the ``llamacpp`` dialect).
    :ivar dialect: ``openai`` (the API as documented), ``llamacpp`` (llama-cpp-python's server:
        serial, schemas as grammar-constrained ``json_object``), or ``auto`` (default: ``openai``
        for api.openai.com, else asked of the server's ``GET /models`` on the first uncached call).
    """

    model: str = "gpt-4o-mini"
    base_url: str | None = field(default=None, validator=_check_base_url)
    api_key_env: str = "OPENAI_API_KEY"
    temperature: float = 1.0
    max_tokens: int = 1024
    concurrency: int | None = None
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    max_retries: int = 6
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    max_retry_after_s: float = 120.0
    timeout_s: float = 60.0
    structured: bool = True
    cache: bool = True
    prices: Mapping[str, Mapping[str, float]] = Factory(_prices_factory)
    http_client: Literal["aiohttp", "httpx"] = "aiohttp"
    dialect: Literal["auto", "openai", "llamacpp"] = "auto"


def dialect_of(models: Any) -> str:
    """The dialect a ``GET /models`` answer shows: ``llamacpp`` when every model is
    ``owned_by: "me"`` (llama-cpp-python's server says exactly that), else ``openai``."""
    data = models.get("data") if isinstance(models, dict) else None
    if isinstance(data, list) and data and all(isinstance(m, dict) and m.get("owned_by") == "me" for m in data):
        return "llamacpp"
    return "openai"


@frozen
class CallResult:
    """A successful call (from the server or the cache)."""

    key: str
    content: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    cached: bool
    model: str


@frozen
class Rejection:
    """A call that produced nothing usable, and why (recorded as ``generation.rejected``)."""

    key: str
    reason: str
    attempts: int = 0


def price_of(options: ClientOptions, model: str) -> tuple[float, float]:
    """(input, output) USD per token for ``model``: goal prices first, then the defaults."""
    table = {**DEFAULT_PRICES, **{k: dict(v) for k, v in options.prices.items()}}
    entry = table.get(model)
    if entry is None:
        return 0.0, 0.0
    return float(entry.get("input", 0.0)) / 1e6, float(entry.get("output", 0.0)) / 1e6


def estimate_prompt_tokens(messages: Sequence[Mapping[str, str]], extra: str = "") -> int:
    """An upper estimate of the prompt's tokens: 1 token per 2 UTF-8 bytes (real tokenisers
    average about 4 bytes per token on English and code) plus chat framing per message."""
    size = sum(len(str(m.get("content", "")).encode("utf-8")) + 8 for m in messages) + len(extra.encode())
    return math.ceil(size / 2) + 16


class RateLimiter:
    """Token buckets for requests/min and tokens/min (``None`` = unlimited).

    Each bucket holds one second's worth (at least one request's worth) and may go into debt by
    one oversized request, so a request bigger than a second's allowance still goes through,
    and the average rate never exceeds the limit.
    """

    def __init__(self, requests_per_minute: float | None, tokens_per_minute: float | None) -> None:
        self._buckets: list[list[float]] = []  # [rate_per_s, capacity, level, last_time]
        self._req = self._bucket(requests_per_minute)
        self._tok = self._bucket(tokens_per_minute)
        self._lock = asyncio.Lock()

    def _bucket(self, per_minute: float | None) -> list[float] | None:
        if not per_minute:
            return None
        rate = per_minute / 60.0
        capacity = max(rate, 1.0)
        return [rate, capacity, capacity, time.monotonic()]

    @staticmethod
    def _refill(b: list[float]) -> None:
        now = time.monotonic()
        b[2] = min(b[1], b[2] + (now - b[3]) * b[0])
        b[3] = now

    async def acquire(self, tokens: int) -> None:
        async with self._lock:
            for bucket, need in ((self._req, 1.0), (self._tok, float(tokens))):
                if bucket is None:
                    continue
                target = min(need, bucket[1])
                self._refill(bucket)
                while bucket[2] < target:
                    await asyncio.sleep((target - bucket[2]) / bucket[0])
                    self._refill(bucket)
                bucket[2] -= need


class ResponseCache:
    """Responses under ``root``, appended as lines ``<key>\t<json>\n`` to a journal file of this
    cache's own (``responses-<pid>-<random>.jsonl``), one ``os.write`` per response before the call
    counts as done. A killed process leaves every finished response in its journal (at worst a
    torn last line, which is skipped), so a resumed or repeated run never pays again for a call
    that completed; appending costs microseconds where a file per response cost about a
    millisecond of CPU (create, write, rename).

    The journals are indexed (key -> file, offset, length) once, on first use: responses that
    another process writes later are not seen by this cache. Responses of the older layout, one
    file per response under ``<key[:2]>/<key>.json``, are still read.
    """

    JOURNAL_GLOB = "responses-*.jsonl"

    def __init__(self, root: Path) -> None:
        self.root = root
        self._index: dict[str, tuple[Path, int, int]] | None = None
        self._legacy = False
        self._fd: int | None = None
        self._journal: Path | None = None
        self._size = 0

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def _load(self) -> dict[str, tuple[Path, int, int]]:
        if self._index is not None:
            return self._index
        index: dict[str, tuple[Path, int, int]] = {}
        if self.root.is_dir():
            self._legacy = any(p.is_dir() for p in self.root.iterdir())
            for path in sorted(self.root.glob(self.JOURNAL_GLOB)):
                data = path.read_bytes()
                start = 0
                while (end := data.find(b"\n", start)) >= 0:  # a torn last line has no newline
                    tab = data.find(b"\t", start, end)
                    if tab > start:
                        index[data[start:tab].decode("ascii", "replace")] = (path, tab + 1, end - tab - 1)
                    start = end + 1
        self._index = index
        return index

    def get(self, key: str) -> dict[str, Any] | None:
        entry = self._load().get(key)
        try:
            if entry is not None:
                path, offset, length = entry
                with path.open("rb") as f:
                    f.seek(offset)
                    return json.loads(f.read(length))  # type: ignore[no-any-return]
            if self._legacy:
                return json.loads(self._path(key).read_text(encoding="utf-8"))  # type: ignore[no-any-return]
        except (FileNotFoundError, ValueError):
            pass
        return None

    def put(self, key: str, value: Mapping[str, Any]) -> None:
        """Append ``value`` under ``key``; it is in the operating system's hands on return."""
        index = self._load()
        data = json.dumps(value, sort_keys=True, ensure_ascii=False).encode("utf-8")
        line = b"%s\t%s\n" % (key.encode("ascii"), data)
        if self._fd is None:
            self.root.mkdir(parents=True, exist_ok=True)
            self._journal = self.root / f"responses-{os.getpid()}-{random.getrandbits(32):08x}.jsonl"
            self._fd = os.open(self._journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            self._size = 0
        view = memoryview(line)
        while view:
            view = view[os.write(self._fd, view) :]
        assert self._journal is not None
        index[key] = (self._journal, self._size + len(key) + 1, len(data))
        self._size += len(line)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _retry_after(headers: Any) -> float | None:
    if headers is None:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            return max(0.0, float(value) / divisor)
        except ValueError:
            import email.utils

            parsed = email.utils.parsedate_to_datetime(value) if value else None
            if parsed is not None:
                return max(0.0, parsed.timestamp() - time.time())
    return None


class LLMEngine:
    """Makes cached, rate-limited, retried, budgeted Chat Completions calls (see module doc).

    Build it inside the running event loop (:meth:`open`), use :meth:`call`, then :meth:`close`.
    """

    def __init__(self, options: ClientOptions, ctx: StageContext, *, what: str) -> None:
        self.options = options
        self.ctx = ctx
        self.what = what
        self.cache = ResponseCache(Path(ctx.cache_dir) / "llm") if options.cache else None
        self.budget_exhausted = False
        self.calls = 0
        self.cache_hits = 0
        self.retries = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost_usd = 0.0
        self._client: Any = None
        self._completion_type: Any = None
        self._text_type: Any = None
        self._sem: asyncio.Semaphore | None = None
        self._limiter: RateLimiter | None = None
        self._outstanding = 0  # calls of ours holding a budget reservation
        self._settled: asyncio.Event | None = None
        self._in, self._out = price_of(options, options.model)
        self.dialect: str | None = options.dialect if options.dialect != "auto" else (
            "openai" if options.base_url is None else None)  # None: asked on the first uncached call
        self.served_models: tuple[str, ...] = ()
        self.concurrency = self._concurrency()
        self._probe_lock: asyncio.Lock | None = None
        self._probed = False

    def _concurrency(self) -> int:
        if self.options.concurrency is not None:
            return max(1, self.options.concurrency)
        return 1 if self.dialect in SERIAL_DIALECTS else DEFAULT_CONCURRENCY

    # -- lifecycle ------------------------------------------------------------------------

    def _api_key(self) -> str:
        name = self.options.api_key_env
        key = os.environ.get(name)
        if key:
            return key
        if self.options.base_url is None:
            raise ConfigError(
                f"no API key: set the environment variable {name} (or point base_url at a local server)",
                field="api_key_env",
            )
        return "not-needed"  # local OpenAI-compatible servers accept any key

    async def open(self) -> None:
        import httpx2
        import openai
        from openai.types import Completion
        from openai.types.chat import ChatCompletion

        slots = self.concurrency
        make_http = openai.DefaultAioHttpClient if self.options.http_client == "aiohttp" else openai.DefaultAsyncHttpxClient
        self._client = openai.AsyncOpenAI(
            api_key=self._api_key(),
            base_url=self.options.base_url,
            max_retries=0,  # retries are ours: they must see budget, cache and Retry-After together
            timeout=self.options.timeout_s,
            http_client=make_http(limits=httpx2.Limits(max_connections=slots, max_keepalive_connections=slots)),
        )
        self._completion_type = ChatCompletion
        self._text_type = Completion
        self._sem = asyncio.Semaphore(self.concurrency)
        self._limiter = RateLimiter(self.options.requests_per_minute, self.options.tokens_per_minute)
        self._settled = asyncio.Event()
        self._probe_lock = asyncio.Lock()

    async def models(self) -> tuple[str, ...]:
        """The ids the server's ``GET /models`` lists (empty when it does not answer); the
        dialect, when ``auto``, is settled from the same answer."""
        await self._probe()
        return self.served_models

    async def _probe(self) -> None:
        assert self._probe_lock is not None, "engine not opened"
        async with self._probe_lock:
            if self._probed:
                return
            import openai

            try:
                answer = await self._client.get("/models", cast_to=object)
            except (openai.OpenAIError, ValueError) as error:
                self.ctx.log.debug("llm.models_unavailable", what=self.what, reason=_short(str(error)))
                answer = None
            self._probed = True
            data = answer.get("data") if isinstance(answer, dict) else None
            self.served_models = tuple(str(m["id"]) for m in data or () if isinstance(m, dict) and "id" in m)
            if self.dialect is None:
                self.dialect = dialect_of(answer)
                before = self.concurrency
                self.concurrency = self._concurrency()
                if self.concurrency != before:
                    self._sem = asyncio.Semaphore(self.concurrency)
                self.ctx.log.info("llm.dialect", what=self.what, base_url=self.options.base_url,
                                  dialect=self.dialect, concurrency=self.concurrency)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None
        if self.cache is not None:
            self.cache.close()

    # -- requests -------------------------------------------------------------------------

    def request(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        schema: Mapping[str, Any] | None,
        schema_name: str,
        seed: int | None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        stop: Sequence[str] = (),
        model: str | None = None,
    ) -> dict[str, Any]:
        """The Chat Completions request body (without the API key, which is a header)."""
        body = self._common(seed, temperature, max_tokens, stop, model)
        body["messages"] = [dict(m) for m in messages]
        if schema is not None:
            if self.options.structured:
                body["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": schema_name, "schema": dict(schema), "strict": True},
                }
            else:
                body["response_format"] = {"type": "json_object"}
        return body

    def completion_request(self, prompt: str, *, seed: int | None, temperature: float | None = None,
                           max_tokens: int | None = None, stop: Sequence[str] = (),
                           model: str | None = None) -> dict[str, Any]:
        """A (legacy) Completions request body: the raw ``prompt`` continued, no chat template."""
        body = self._common(seed, temperature, max_tokens, stop, model)
        body["prompt"] = prompt
        return body

    def _common(self, seed: int | None, temperature: float | None, max_tokens: int | None,
                stop: Sequence[str], model: str | None) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model or self.options.model,
            "temperature": self.options.temperature if temperature is None else temperature,
            "max_tokens": self.options.max_tokens if max_tokens is None else max_tokens,
        }
        if seed is not None:
            body["seed"] = seed
        if stop:
            body["stop"] = list(stop)
        return body

    def wire(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``body`` as this server's dialect wants it sent (see the module doc)."""
        out = dict(body)
        fmt = out.get("response_format")
        if self.dialect == "llamacpp" and isinstance(fmt, Mapping) and fmt.get("type") == "json_schema":
            out["response_format"] = {"type": "json_object", "schema": dict(fmt["json_schema"]["schema"])}
        return out

    def key(self, body: Mapping[str, Any]) -> str:
        """The cache key: a hash of the full request and the server it goes to."""
        return content_hash({"base_url": (self.options.base_url or "openai").rstrip("/"), "body": body}, length=40)

    def worst_case_usd(self, body: Mapping[str, Any]) -> tuple[int, float]:
        messages = body.get("messages") or [{"content": body.get("prompt", "")}]
        tokens = estimate_prompt_tokens(messages, json.dumps(body.get("response_format", "")))
        return tokens + int(body["max_tokens"]), tokens * self._in + int(body["max_tokens"]) * self._out

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return prompt_tokens * self._in + completion_tokens * self._out

    async def call(self, body: Mapping[str, Any]) -> CallResult | Rejection:
        """One call, through cache, budget, limits and retries; never raises for API trouble."""
        key = self.key(body)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                self.cache_hits += 1
                return CallResult(
                    key=key,
                    content=hit["content"],
                    prompt_tokens=int(hit["prompt_tokens"]),
                    completion_tokens=int(hit["completion_tokens"]),
                    cost_usd=float(hit["cost_usd"]),
                    cached=True,
                    model=str(hit.get("model") or self.options.model),
                )
        if self.budget_exhausted:
            return Rejection(key, "budget exhausted")
        if self.dialect is None:
            await self._probe()
        tokens, worst = self.worst_case_usd(body)
        assert self._sem is not None and self._limiter is not None and self._settled is not None, "engine not opened"
        async with self._sem:
            if self.budget_exhausted:
                return Rejection(key, "budget exhausted")
            while True:
                try:
                    self.ctx.budget.reserve(worst, f"{self.what} call to {self.options.model}")
                    break
                except BudgetExceeded:
                    # Our own in-flight calls hold reservations that usually settle far below
                    # their worst case: wait for them before declaring the budget spent.
                    if self._outstanding == 0:
                        self.budget_exhausted = True
                    if self.budget_exhausted:
                        return Rejection(key, "budget exhausted")
                    self._settled.clear()
                    await self._settled.wait()
            self._outstanding += 1
            actual = 0.0
            try:
                await self._limiter.acquire(tokens)
                result = await self._call_with_retries(key, body)
                if isinstance(result, CallResult):
                    actual = result.cost_usd
                return result
            finally:
                self.ctx.budget.settle(worst, actual)
                self._outstanding -= 1
                self._settled.set()
                if actual:
                    self.ctx.emit(
                        "cost",
                        {"usd": actual, "what": f"{self.what} {self.options.model}",
                         "total_usd": self.ctx.budget.spent_usd},
                    )

    async def _call_with_retries(self, key: str, body: Mapping[str, Any]) -> CallResult | Rejection:
        import openai

        last = ""
        attempts = 0
        chat = "prompt" not in body
        path, cast_to = ("/chat/completions", self._completion_type) if chat else ("/completions", self._text_type)
        sent = self.wire(body)
        for attempt in range(self.options.max_retries + 1):
            attempts = attempt + 1
            wait: float | None = None
            try:
                self.calls += 1
                # the client's generic POST: the same request, errors and parsed ChatCompletion
                # as chat.completions.create, without its per-call walk of the typed parameters
                # (a millisecond of CPU per call on a JSON-schema body we built as plain JSON)
                response = await self._client.post(path, body=sent, cast_to=cast_to)
                if isinstance(response, str) or not getattr(response, "choices", None):
                    raise ValueError("response has no choices")
            except openai.APIStatusError as error:
                status = error.status_code
                last = f"HTTP {status}"
                if status not in RETRY_STATUS and status < 500:
                    return Rejection(key, f"HTTP {status}: {_short(error.message)}", attempts)
                wait = _retry_after(error.response.headers)
            except openai.APITimeoutError:
                last = f"timeout after {self.options.timeout_s}s"
            except openai.APIConnectionError as error:
                last = f"connection error: {_short(str(error.__cause__ or error))}"
            except (openai.APIResponseValidationError, ValueError) as error:
                last = f"malformed response body: {_short(str(error))}"
            else:
                choice = response.choices[0]
                content = (choice.message.content if chat else choice.text) or ""
                usage = response.usage
                pt = int(getattr(usage, "prompt_tokens", 0) or 0)
                ct = int(getattr(usage, "completion_tokens", 0) or 0)
                cost = self.cost(pt, ct)
                self.prompt_tokens += pt
                self.completion_tokens += ct
                self.cost_usd += cost
                record = {
                    "content": content,
                    "prompt_tokens": pt,
                    "completion_tokens": ct,
                    "cost_usd": cost,
                    "model": response.model or self.options.model,
                    "finish_reason": choice.finish_reason,
                    "time": time.time(),
                }
                if self.cache is not None:
                    self.cache.put(key, record)
                return CallResult(key, content, pt, ct, cost, False, record["model"])
            if attempt >= self.options.max_retries:
                break
            self.retries += 1
            backoff = random.uniform(0, min(self.options.backoff_max_s, self.options.backoff_base_s * 2**attempt))
            if wait is not None:
                backoff = min(max(wait, 0.0), self.options.max_retry_after_s) + random.uniform(0, 0.05)
            self.ctx.log.debug("llm.retry", what=self.what, reason=last, attempt=attempts, wait_s=round(backoff, 3))
            await asyncio.sleep(backoff)
        return Rejection(key, f"gave up after {attempts} attempts: {last}", attempts)


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_json_object(content: str, required: Mapping[str, type | tuple[type, ...]]) -> dict[str, Any] | str:
    """Parse ``content`` as a JSON object holding ``required`` keys of the given types.

    :returns: the object, or a one-line reason why it is rejected.
    """
    text = content.strip()
    if text.startswith("```"):
        text = text.strip("`")
        text = text[text.find("\n") + 1 :] if "\n" in text else text
    try:
        data = json.loads(text)
    except ValueError:
        return f"answer is not JSON: {_short(content, 80)!r}"
    if not isinstance(data, dict):
        return f"answer is JSON {type(data).__name__}, not an object"
    for name, kind in required.items():
        if name not in data:
            return f"answer lacks required field {name!r}"
        if not isinstance(data[name], kind) or (isinstance(data[name], bool) and kind is not bool):
            return f"answer field {name!r} is {type(data[name]).__name__}, not {getattr(kind, '__name__', kind)}"
    return data


def new_event_loop() -> asyncio.AbstractEventLoop:
    """A new event loop for the calling thread: uvloop's where it is installed (a dependency
    except on Windows; it takes about a sixth less CPU per call with aiohttp), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def run_calls(
    engine: LLMEngine,
    bodies: Sequence[Mapping[str, Any]] | Callable[[], Awaitable[Sequence[Mapping[str, Any]]]],
) -> list[CallResult | Rejection]:
    """Make ``bodies`` concurrently (bounded by the engine) from synchronous code, in order.

    ``bodies`` may be a coroutine function, awaited once the engine is open (to ask the server
    something first, e.g. :meth:`LLMEngine.models`). The event loop runs in the calling thread
    for the reason given in the module doc.
    """

    async def _all() -> list[CallResult | Rejection]:
        await engine.open()
        try:
            made = await bodies() if callable(bodies) else bodies
            return list(await asyncio.gather(*(engine.call(b) for b in made)))
        finally:
            await engine.close()

    loop = new_event_loop()
    try:
        return loop.run_until_complete(_all())
    finally:
        loop.close()
