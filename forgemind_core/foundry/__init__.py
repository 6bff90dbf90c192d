"""The Foundry: task packs and the data they make (generate, filter, dataset).

- :mod:`.packs` (with :mod:`.prompts`, :mod:`.suites`): the task-pack folder format, read into
  :class:`forgemind_hookspecs.TaskPack`.
- :mod:`.stages`: the generate, filter and dataset stages of an iteration.
- :mod:`.template`, :mod:`.files`: the built-in generators (templates offline, real data files).
- :mod:`.filters`: the built-in filters (dedupe, decontaminate, rules).
"""
