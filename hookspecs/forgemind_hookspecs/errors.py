"""The errors every ForgeMind component raises and the CLI turns into one sentence.

A user mistake (a bad goal file, a bad data row, an unknown backend) is a :class:`ForgeError`
carrying where it happened: ``file``, ``line`` and ``field`` (a dotted path such as
``train.learning_rate``). ``str(error)`` is the one sentence the CLI prints, and the CLI exits
with code 2 for a :class:`UserError` (usage and input), 1 for any other :class:`ForgeError`.
"""

from __future__ import annotations

__all__ = [
    "BudgetExceeded",
    "ConfigError",
    "DataError",
    "ForgeError",
    "PluginError",
    "RegistryBusy",
    "UnknownBackend",
    "UserError",
]


class ForgeError(Exception):
    """Base of every error ForgeMind raises on purpose.

    :param message: what went wrong, as one sentence without the location prefix.
    :param file: the file at fault, if any.
    :param line: the 1-based line in ``file``, if known.
    :param field: the dotted field path at fault (``train.learning_rate``), if any.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.field = field

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = f"{self.file}:{self.line}: " if self.line is not None else f"{self.file}: "
        field = f"{self.field}: " if self.field else ""
        return f"{where}{field}{self.message}"

    def __reduce__(self) -> tuple[object, ...]:  # keep file/line/field across pickling (worker processes)
        return (_rebuild, (type(self), self.message, self.file, self.line, self.field))


def _rebuild(cls, message, file, line, field):  # type: ignore[no-untyped-def]
    return cls(message, file=file, line=line, field=field)


class UserError(ForgeError):
    """Something the user wrote or asked for is wrong; the CLI exits with code 2."""


class ConfigError(UserError):
    """A goal, policy or task-pack file is malformed or has a field of the wrong type."""


class DataError(UserError):
    """A data file has a bad row (``line`` names it)."""


class UnknownBackend(ConfigError):
    """A goal names a backend no installed plugin offers; the message lists the installed ones."""


class PluginError(ForgeError):
    """A plugin failed to load or broke the contract (e.g. a hookimpl with no matching spec)."""


class BudgetExceeded(ForgeError):
    """The next step would spend more than the goal's remaining budget; nothing was spent."""


class RegistryBusy(ForgeError):
    """The lineage store stayed locked by another process for longer than the bounded wait."""
