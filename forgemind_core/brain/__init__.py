"""The Brain: goals in, the loop that sequences every pillar's stages, plans, decisions, branches.

- :mod:`.goals`: goal files (read, validated, written back).
- :mod:`.loop`: one run: iterations of stages, each boundary recorded, resumable.
- :mod:`.planners`, :mod:`.replay`: the built-in planners and the local executor.
- :mod:`.candidates`, :mod:`.forks`: K candidate plans per iteration; forks of a run.
- :mod:`.jobs`: background jobs (a run, a training) that outlive their caller.
"""
