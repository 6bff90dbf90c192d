"""The Brain: goals in, the loop that sequences every pillar's stages, plans, decisions, branches.

- :mod:`.goals` (with :mod:`.goalshape`, :mod:`.goalyaml`): goal files (read, validated, written back).
- :mod:`.loop`: one run: iterations of stages, each boundary recorded, resumable; it only
  sequences — each stage's body is in its pillar's room (docs/architecture.md).
- :mod:`.decide`: the plan and decide stages, the one success test and the one ranking of tries.
- :mod:`.summary`, :mod:`.state`: a run's history and summary; ``state.json`` as typed records.
- :mod:`.planners`, :mod:`.replay`: the built-in planners and the local executor.
- :mod:`.candidates`, :mod:`.search`, :mod:`.forks`: K candidate plans per iteration; forks of a run.
- :mod:`.jobs`: background jobs (a run, a training) that outlive their caller.
"""
