"""ForgeMind's ``ray`` executor: work items (an iteration's candidate plans) as Ray tasks.

Each item runs as one Ray task with the resource request of the options (``num_cpus``,
``num_gpus``, ``memory_gb``), placed by Ray on the cluster at ``address`` (``auto``, a head's
``host:port`` or a ``ray://`` client address) or on a local instance started for the call when no
Ray is running and no address is given. A task whose worker process or node dies is retried up to
``max_retries`` times (Ray's task retries; an exception raised by the item itself is not retried:
the kernel records it). The function and items the kernel hands over are pickled by Ray; the
function is sent by reference, so every node needs the same packages as the driver.

This plugin imports ``forgemind_hookspecs`` and ``ray`` only (ray lazily, so ``forge --help``
stays light).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar, TypeVar

from attrs import frozen
from forgemind_hookspecs import ForgeError, StageContext, hookimpl

__all__ = ["RayExecutor", "forgemind_register_executors"]

T = TypeVar("T")
R = TypeVar("R")


class RayExecutor:
    """Runs candidates as Ray tasks on a Ray cluster (or a local instance), retrying dead workers."""

    name: ClassVar[str] = "ray"

    @frozen
    class Options:
        address: str | None = None  # None: the running Ray, or a local instance started here
        num_cpus: float = 1.0  # per item
        num_gpus: float = 0.0  # per item
        memory_gb: float = 0.0  # per item; 0 = no memory request
        max_retries: int = 2  # retries of an item whose worker died
        local_cpus: int = 0  # CPUs of a local instance started here; 0 = all
        shutdown: bool = True  # stop a Ray instance this executor started once the items are done

    def __init__(self, options: RayExecutor.Options | None = None) -> None:
        self.options = options or RayExecutor.Options()

    def _init(self) -> bool:
        """Connect to (or start) Ray; ``True`` when this call started it."""
        import ray

        if ray.is_initialized():
            return False
        o = self.options
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        if o.address:
            kwargs["address"] = o.address
        elif o.local_cpus:
            kwargs["num_cpus"] = o.local_cpus
        ray.init(**kwargs)
        return True

    def remote_options(self) -> dict[str, Any]:
        """The options each task is submitted with (``ray.remote(...).options(**these)``)."""
        o = self.options
        out: dict[str, Any] = {"num_cpus": o.num_cpus, "num_gpus": o.num_gpus, "max_retries": o.max_retries,
                               "retry_exceptions": False}
        if o.memory_gb > 0:
            out["memory"] = int(o.memory_gb * 1024**3)
        return out

    def map(self, fn: Callable[[T], R], items: Sequence[T], ctx: StageContext) -> list[R]:
        """Submit every item at once, collect them as they finish; raise :class:`ForgeError`
        naming the items that failed after their retries, once all the others have finished."""
        if not items:
            return []
        import ray

        started = self._init()
        try:
            task = ray.remote(fn).options(**self.remote_options())
            refs = [task.remote(item) for item in items]
            index = {ref: i for i, ref in enumerate(refs)}
            results: list[Any] = [None] * len(items)
            failures: list[str] = []
            pending = list(refs)
            while pending:
                ready, pending = ray.wait(pending, num_returns=1)
                for ref in ready:
                    try:
                        results[index[ref]] = ray.get(ref)
                    except Exception as error:  # retries used up (or the item raised)
                        failures.append(f"item {index[ref]}: {type(error).__name__}: {error}".splitlines()[0])
                        ctx.log.warning("ray.item_failed", item=index[ref], error=str(error).splitlines()[0])
            if failures:
                raise ForgeError(f"{len(failures)} of {len(items)} items failed on Ray: " + "; ".join(failures))
            return results
        finally:
            if started and self.options.shutdown:
                ray.shutdown()


@hookimpl
def forgemind_register_executors(register: Callable[[type], None]) -> None:
    register(RayExecutor)
