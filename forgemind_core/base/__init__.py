"""The kernel's base layer: what every room stands on, importing nothing else of the kernel.

- :mod:`.plugins`: the plugin manager of one Forge, the built-in backends' list, the block-list.
- :mod:`.logs`: structured logging and the secrets' redactor.
- :mod:`.options`: structuring a backend's options with the goal files' rules.
- :mod:`.servers`: the model servers a run starts for its client backends.
- :mod:`.fsio`: the one atomic write (fsync + rename), tolerant reads, JSONL append and repair.
- :mod:`.runfolder`: the run folder's layout (every path and stage-file name), the stage names.
- :mod:`.events`: the one event-id scheme and the one branch slug.
- :mod:`.yamlfile`, :mod:`.convert`: YAML with line numbers and the strict converter (goal and
  policy files).
- :mod:`.protocols`: what the rooms need from each other (a running loop, the kernel).
"""

__all__ = ["VERSION"]

#: The kernel's version (``forgemind_core.__version__``), recorded with every run.
VERSION = "0.1.0"
