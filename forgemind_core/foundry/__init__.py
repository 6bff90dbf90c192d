"""The Foundry: task packs and the data they make (generate, filter, dataset).

- :mod:`.packs`: the task-pack folder format, read into :class:`forgemind_hookspecs.TaskPack`.
- :mod:`.template`, :mod:`.files`: the built-in generators (templates offline, real data files).
- :mod:`.filters`: the built-in filters (dedupe, decontaminate, rules).
"""
