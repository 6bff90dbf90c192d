"""The kernel's base layer: what every room stands on, importing nothing else of the kernel.

- :mod:`.plugins`: the plugin manager of one Forge, the built-in backends' list, the block-list.
- :mod:`.logs`: structured logging and the secrets' redactor.
- :mod:`.options`: structuring a backend's options with the goal files' rules.
- :mod:`.servers`: the model servers a run starts for its client backends.
"""

__all__ = ["VERSION"]

#: The kernel's version (``forgemind_core.__version__``), recorded with every run.
VERSION = "0.1.0"
