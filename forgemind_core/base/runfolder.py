"""The run folder's layout, written once: every path and stage-file name of a run lives here.

A run's folder is ``<home>/runs/<run>/``::

    goal.json  state.json  base.json  log.jsonl  .lock  progress.json
    iter-<n>/<stage>.json              one per finished stage (STAGES, plus review)
    iter-<n>/examples.jsonl            the generate stage's examples, appended as they come
    iter-<n>/verdicts.jsonl            the filter stage's verdicts

The folder, not the registry, is what resume reads: a plain set of JSON files any process can
read while the run writes. Nothing here writes; :mod:`forgemind_core.base.fsio` does.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from attrs import frozen

from forgemind_core.base.fsio import link_or_copy, read_json

__all__ = ["RECORDED_STAGES", "RUNS", "STAGES", "STAGE_FILES", "RunFolder", "run_dir"]

#: The stages of one iteration, in order.
STAGES: tuple[str, ...] = ("plan", "generate", "filter", "dataset", "estimate", "train", "evaluate", "decide")
#: The stages an iteration may record, in order, for status and summaries: STAGES plus the
#: Warden's ``review``, which runs only for a goal with a policy (so it stays out of STAGES, the
#: stages every iteration has).
RECORDED_STAGES: tuple[str, ...] = (*STAGES[:3], "review", *STAGES[3:])
#: The folder under the home that holds the runs.
RUNS = "runs"
#: The files a stage writes beside its ``<stage>.json``.
STAGE_FILES: dict[str, tuple[str, ...]] = {"generate": ("examples.jsonl",), "filter": ("verdicts.jsonl",)}


def run_dir(home: Path, run_id: str) -> Path:
    """``<home>/runs/<run_id>``."""
    return Path(home) / RUNS / run_id


@frozen
class RunFolder:
    """The paths of one run. ``RunFolder(home, run_id)``; ``.path`` is the folder itself."""

    home: Path
    run_id: str

    @property
    def path(self) -> Path:
        return run_dir(self.home, self.run_id)

    @property
    def goal_file(self) -> Path:
        return self.path / "goal.json"

    @property
    def state_file(self) -> Path:
        return self.path / "state.json"

    @property
    def base_file(self) -> Path:
        return self.path / "base.json"

    @property
    def lock_file(self) -> Path:
        return self.path / ".lock"

    def exists(self) -> bool:
        return self.path.is_dir()

    def iter_dir(self, iteration: int) -> Path:
        return self.path / f"iter-{iteration}"

    def stage_file(self, iteration: int, stage: str) -> Path:
        return self.iter_dir(iteration) / f"{stage}.json"

    def examples_file(self, iteration: int) -> Path:
        return self.iter_dir(iteration) / "examples.jsonl"

    def verdicts_file(self, iteration: int) -> Path:
        return self.iter_dir(iteration) / "verdicts.jsonl"

    def has_stage(self, iteration: int, stage: str) -> bool:
        return self.stage_file(iteration, stage).is_file()

    def eval_reports(self, iteration: int) -> Mapping[str, Any] | None:
        """The tier reports (``{tier: report dict}``) of ``iteration``'s evaluate stage, or
        ``None`` when it was not evaluated or its file cannot be read."""
        path = self.stage_file(iteration, "evaluate")
        data = read_json(path, tolerant=True) if path.exists() else None
        reports = data.get("reports") if isinstance(data, Mapping) else None
        return reports if isinstance(reports, Mapping) else None

    def finished_stages(self, iteration: int) -> list[str]:
        """The recorded stages of ``iteration`` that have their file, in order."""
        return [s for s in RECORDED_STAGES if self.has_stage(iteration, s)]

    def iterations(self) -> Iterator[int]:
        """1, 2, ... while ``iter-<n>`` exists."""
        n = 1
        while self.iter_dir(n).is_dir():
            yield n
            n += 1

    @staticmethod
    def stage_file_names(stage: str) -> tuple[str, ...]:
        """Every file ``stage`` writes: ``<stage>.json`` and its companions."""
        return (f"{stage}.json", *STAGE_FILES.get(stage, ()))

    def copy_stage(self, iteration: int, stage: str, to: RunFolder, *, overwrite: bool = True) -> None:
        """Copy ``stage``'s files of ``iteration`` into the same place of another run's folder."""
        for name in self.stage_file_names(stage):
            src = self.iter_dir(iteration) / name
            dst = to.iter_dir(iteration) / name
            if src.is_file() and (overwrite or not dst.exists()):
                link_or_copy(src, dst)
