"""The ``replay`` planner: plays back plans recorded by an earlier run, one per iteration.

``forge show RUN --iteration N --config`` (and the ``forge.yaml`` of an export bundle) pin the
plans that produced an iteration with it, so the goal file it prints runs again as is and makes
the same data and the same training, whatever the default planner would decide today.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from attrs import frozen
from forgemind_hookspecs import Decision, Goal, IterationSummary, Plan, StageContext, from_dict, hookimpl

__all__ = ["ReplayPlanner", "forgemind_register_planners"]


class ReplayPlanner:
    """Replays recorded plans in order (iteration 1 gets the first); stops when none is left."""

    name: ClassVar[str] = "replay"

    @frozen
    class Options:
        plans: tuple[Mapping[str, Any], ...] = ()

    def __init__(self, options: ReplayPlanner.Options) -> None:
        self.options = options

    def plan(self, goal: Goal, history: Sequence[IterationSummary], ctx: StageContext) -> Decision:
        n = len(history)
        if n >= len(self.options.plans):
            return Decision("stop", reasons=(f"replayed all {len(self.options.plans)} recorded plans",))
        plan = from_dict(Plan, dict(self.options.plans[n]))
        reasons = (f"replaying the recorded plan of iteration {n + 1}", *plan.reasons)
        return Decision("iterate", reasons=reasons, next_plan=plan)


@hookimpl
def forgemind_register_planners(register: Callable[[type], None]) -> None:
    register(ReplayPlanner)
