"""The Lorekeeper: what was recorded, read back — run folders, the run tree, diffs, exports.

- :mod:`.runs`: read-only views of a run's folder (its goal, how far it got, the goal that
  reproduces it: ``forge show RUN --config``).
- :mod:`.tree`: the tree of forks (``forge runs --tree``) and the difference of two runs (``forge diff``).
- :mod:`.checkpoints`: what a checkpoint reference names (a folder, a recorded id, a runner's model).
- :mod:`.exports`: ``forge export-data`` and ``forge export``.

It reads the registry only through the :class:`~forgemind_hookspecs.backends.Registry` contract
and imports nothing of the kernel but the base layer.
"""
