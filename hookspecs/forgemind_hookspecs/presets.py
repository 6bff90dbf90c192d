"""The field's dataset conventions: format presets and table sources, for every data reader.

One module, used by the Foundry's ``files`` generator, by ``forge train --data`` (the hf plugin's
command and :meth:`Forge.train`) and by ``forge export-data --format alpaca|sharegpt|messages``,
so a file ForgeMind writes reads back through the same code.

Presets (one row -> one :class:`~forgemind_hookspecs.records.Example`):

============ ==================================================================================
preset       row
============ ==================================================================================
``alpaca``   ``instruction`` (text), ``input`` (optional text, appended after a blank line),
             ``output`` (the completion), optional ``system`` and ``history`` (a list of
             ``[instruction, output]`` pairs, LLaMA-Factory's). Without system and history the
             example is ``prompt``/``completion``; with either, chat ``messages``.
``sharegpt`` ``conversations``: a list of ``{"from", "value"}`` (``human``/``user``,
             ``gpt``/``assistant``/``model``, ``system``), optional ``system`` column.
``messages`` ``messages``: a list of ``{"role", "content"}`` (``system``, ``user``, ``assistant``).
============ ==================================================================================

Chat rows must end with the assistant's turn (the part that is learnt). Every preset also reads
an optional ``category`` (text) and ``meta`` (an object, or JSON text of one). List columns come
as real lists (Parquet/Arrow list columns, JSON arrays) or as JSON text of a list.

Table sources (:func:`load_rows`): a folder written by ``datasets``' ``save_to_disk``
(``load_from_disk``), a Parquet (``.parquet``/``.pq``) or Arrow (``.arrow``) file, and a Hub
dataset id (``hub:NAME`` or ``hub:NAME:SPLIT``, an optional subset; needs a network unless ``NAME`` is a local
dataset folder ``datasets.load_dataset`` understands). ``datasets`` is imported inside
:func:`load_rows` only. Every bad row is one :class:`~forgemind_hookspecs.errors.DataError`
naming the file (or ``hub:NAME[split]``), the 1-based line (for tables: the row) and the field.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .dataformats import text_problem
from .errors import ConfigError, DataError
from .records import Example, Message, Source

__all__ = [
    "HUB_PREFIX",
    "PRESETS",
    "TABLE_SUFFIXES",
    "as_messages",
    "detect_preset",
    "example_from_row",
    "example_of_columns",
    "is_table_source",
    "json_rows",
    "load_rows",
    "read_data",
    "read_preset_file",
    "read_table_examples",
    "row_of",
    "validate_source",
]

#: The format presets a reader accepts and ``forge export-data`` writes.
PRESETS: tuple[str, ...] = ("alpaca", "sharegpt", "messages")
#: File suffixes read as tables through ``datasets`` (name -> its packaged builder).
TABLE_SUFFIXES: Mapping[str, str] = {".parquet": "parquet", ".pq": "parquet", ".arrow": "arrow"}
#: ``--data hub:NAME`` names a Hub dataset.
HUB_PREFIX = "hub:"

_SHAREGPT_ROLES: Mapping[str, str] = {
    "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "model": "assistant",
    "chatgpt": "assistant", "bard": "assistant", "system": "system",
}
_ROLES = ("system", "user", "assistant")


def detect_preset(columns: Sequence[str]) -> str | None:
    """The preset a row's columns follow (``messages``, ``sharegpt``, ``alpaca``), or None."""
    names = set(columns)
    if "messages" in names:
        return "messages"
    if "conversations" in names:
        return "sharegpt"
    if "instruction" in names and "output" in names:
        return "alpaca"
    return None


def _where(file: str, line: int) -> dict[str, Any]:
    return {"file": file, "line": line}


def _text(row: Mapping[str, Any], key: str, where: dict[str, Any], *, required: bool, field: str | None = None) -> str:
    value = row.get(key)
    field = field or key
    if value is None:
        if required:
            raise DataError(f"the row has no {key!r} text (columns: {', '.join(map(str, row))})", field=field, **where)
        return ""
    if not isinstance(value, str):
        raise DataError(f"must be text, not {type(value).__name__}", field=field, **where)
    problem = text_problem(value)
    if problem:
        raise DataError(problem, field=field, **where)
    return value


def _list(row: Mapping[str, Any], key: str, where: dict[str, Any], *, required: bool) -> list[Any]:
    value = row.get(key)
    if value is None:
        if required:
            raise DataError(f"the row has no {key!r} list (columns: {', '.join(map(str, row))})", field=key, **where)
        return []
    if isinstance(value, str):  # a list stored as JSON text (a CSV cell, an older export)
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise DataError(f"is text that is not a JSON list ({exc.msg})", field=key, **where) from None
    if hasattr(value, "tolist"):  # a numpy array from a pandas-backed reader
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        raise DataError(f"must be a list, not {type(value).__name__}", field=key, **where)
    return list(value)


def _extras(row: Mapping[str, Any], where: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
    category = _text(row, "category", where, required=False) or None
    meta = row.get("meta")
    if isinstance(meta, str) and meta.strip():
        try:
            meta = json.loads(meta)
        except json.JSONDecodeError:
            raise DataError("is text that is not a JSON object", field="meta", **where) from None
    if meta in (None, ""):
        meta = {}
    if not isinstance(meta, dict):
        raise DataError(f"must be an object, not {type(meta).__name__}", field="meta", **where)
    return category, meta


def _chat(messages: list[Message], field: str, where: dict[str, Any]) -> tuple[Message, ...]:
    if not messages:
        raise DataError("must hold at least one turn", field=field, **where)
    if messages[-1].role != "assistant":
        raise DataError("the last turn must be the assistant's answer (the part that is learnt)",
                        field=f"{field}[{len(messages) - 1}]", **where)
    return tuple(messages)


def _turns(items: list[Any], field: str, role_key: str, text_key: str, roles: Mapping[str, str],
           where: dict[str, Any]) -> list[Message]:
    out: list[Message] = []
    for i, item in enumerate(items):
        at = f"{field}[{i}]"
        if not isinstance(item, Mapping):
            raise DataError(f"must be an object with {role_key!r} and {text_key!r}", field=at, **where)
        role = item.get(role_key)
        if not isinstance(role, str) or role.lower() not in roles:
            raise DataError(f"must be one of {', '.join(sorted(set(roles)))}, not {role!r}",
                            field=f"{at}.{role_key}", **where)
        if item.get(text_key) is None:
            raise DataError(f"the turn has no {text_key!r} text", field=f"{at}.{text_key}", **where)
        content = _text(item, text_key, where, required=True, field=f"{at}.{text_key}")
        out.append(Message(role=roles[role.lower()], content=content))
    return out


def example_from_row(row: Mapping[str, Any], preset: str, *, file: str, line: int,
                     source: Source | None = None) -> Example:
    """One row of ``preset`` as an Example (``source`` defaults to ``file`` as the template).

    :raises DataError: naming ``file``, ``line`` and the field at fault.
    """
    where = _where(file, line)
    source = source or Source(generator="file", prompt_template=file)
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}", field="preset")
    category, meta = _extras(row, where)
    if preset == "alpaca":
        instruction = _text(row, "instruction", where, required=True)
        extra = _text(row, "input", where, required=False)
        output = _text(row, "output", where, required=True)
        if not instruction.strip() and not extra.strip():
            raise DataError("is empty (and so is input): there is no prompt", field="instruction", **where)
        if not output.strip():
            raise DataError("is empty: there is nothing to learn", field="output", **where)
        prompt = f"{instruction}\n\n{extra}" if instruction and extra else instruction or extra
        system = _text(row, "system", where, required=False)
        history = _list(row, "history", where, required=False)
        if not system and not history:
            return Example(prompt=prompt, completion=output, category=category, source=source, meta=meta)
        turns = [Message(role="system", content=system)] if system else []
        for i, pair in enumerate(history):
            if hasattr(pair, "tolist"):
                pair = pair.tolist()
            if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                    or not all(isinstance(p, str) for p in pair)):
                raise DataError("must be a pair [instruction, output] of texts", field=f"history[{i}]", **where)
            turns += [Message(role="user", content=pair[0]), Message(role="assistant", content=pair[1])]
        turns += [Message(role="user", content=prompt), Message(role="assistant", content=output)]
        return Example(messages=tuple(turns), category=category, source=source, meta=meta)
    if preset == "sharegpt":
        items = _list(row, "conversations", where, required=True)
        turns = _turns(items, "conversations", "from", "value", _SHAREGPT_ROLES, where)
        system = _text(row, "system", where, required=False)
        if system and not (turns and turns[0].role == "system"):
            turns.insert(0, Message(role="system", content=system))
        return Example(messages=_chat(turns, "conversations", where), category=category, source=source, meta=meta)
    items = _list(row, "messages", where, required=True)
    turns = _turns(items, "messages", "role", "content", {r: r for r in _ROLES}, where)
    return Example(messages=_chat(turns, "messages", where), category=category, source=source, meta=meta)


def as_messages(example: Example) -> list[dict[str, str]]:
    """The chat view of any example: its messages, or ``prompt`` as the user's turn and
    ``completion`` as the assistant's."""
    if example.messages:
        return [{"role": m.role, "content": m.content} for m in example.messages]
    return [{"role": "user", "content": example.prompt}, {"role": "assistant", "content": example.completion}]


def row_of(example: Example, preset: str) -> dict[str, Any]:
    """``example`` as one row of ``preset`` (lists as lists, ``meta`` as an object), which
    :func:`example_from_row` reads back to the same content."""
    extras: dict[str, Any] = {"category": example.category, "meta": dict(example.meta)}
    if preset == "messages":
        return {"messages": as_messages(example), **extras}
    turns = as_messages(example)
    if preset == "sharegpt":
        back = {"user": "human", "assistant": "gpt", "system": "system"}
        return {"conversations": [{"from": back[t["role"]], "value": t["content"]} for t in turns], **extras}
    if preset != "alpaca":
        raise ConfigError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}", field="format")
    if not example.messages:
        return {"instruction": example.prompt, "input": "", "output": example.completion, **extras}
    system = turns[0]["content"] if turns[0]["role"] == "system" else ""
    rest = turns[1:] if system else turns
    pairs: list[list[str]] = []
    for i in range(0, len(rest) - 1, 2):
        user, answer = rest[i], rest[i + 1]
        if user["role"] != "user" or answer["role"] != "assistant":
            raise DataError(f"example {example.id} does not alternate user and assistant turns: alpaca cannot "
                            "hold it; export it as sharegpt or messages", field="format")
        pairs.append([user["content"], answer["content"]])
    if len(rest) % 2:
        raise DataError(f"example {example.id} has an odd number of user/assistant turns: alpaca cannot hold it; "
                        "export it as sharegpt or messages", field="format")
    *history, last = pairs
    row: dict[str, Any] = {"instruction": last[0], "input": "", "output": last[1]}
    if system:
        row["system"] = system
    if history:
        row["history"] = history
    return {**row, **extras}


# --------------------------------------------------------------------------------------------
# Table sources, through the datasets library
# --------------------------------------------------------------------------------------------


def is_table_source(data: str | os.PathLike[str]) -> bool:
    """Whether ``data`` is read by :func:`load_rows`: ``hub:NAME``, a ``save_to_disk`` folder,
    or a Parquet/Arrow file."""
    text = str(data)
    if text.startswith(HUB_PREFIX):
        return True
    path = Path(text).expanduser()
    return path.is_dir() or path.suffix.lower() in TABLE_SUFFIXES


def _datasets() -> Any:
    try:
        import datasets
    except ModuleNotFoundError:
        raise ConfigError("reading dataset folders, Parquet/Arrow files and Hub datasets needs the datasets "
                          "library: pip install 'forgemind[data]'", field="data") from None
    return datasets


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def load_rows(data: str | os.PathLike[str], *, split: str | None = None, subset: str | None = None,
              cache_dir: str | os.PathLike[str] | None = None) -> tuple[str, list[dict[str, Any]]]:
    """``(label, rows)`` of a table source (see :func:`is_table_source`); ``label`` names it in
    errors (the file, or ``hub:NAME[split]``).

    :raises DataError: the source cannot be read (a missing split names the splits there are).
    """
    datasets = _datasets()
    text = str(data)
    cache = str(cache_dir) if cache_dir is not None else None
    quiet = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        if text.startswith(HUB_PREFIX):
            name = text[len(HUB_PREFIX):]
            if ":" in name:  # hub:NAME:SPLIT
                name, _, named = name.partition(":")
                split = split or named or None
            label = f"{HUB_PREFIX}{name}[{split or 'train'}]"
            if not name:
                raise DataError("names no dataset: write hub:OWNER/NAME", file=text)
            hub_log = logging.getLogger("huggingface_hub")
            level = hub_log.level
            hub_log.setLevel(logging.ERROR)  # its per-retry warnings would bury the one sentence below
            try:
                table = datasets.load_dataset(name, subset, split=split or "train", cache_dir=cache)
            except ValueError as error:  # an unknown split lists the ones there are
                raise DataError(_first_line(error), file=label, field="split") from None
            except Exception as error:  # no network, no such dataset, a gated one
                raise DataError(f"cannot be loaded from the Hub: {_first_line(error)}", file=label) from None
            finally:
                hub_log.setLevel(level)
            return label, list(table.to_list())
        path = Path(text).expanduser()
        if path.is_dir():
            return str(path), _from_disk(datasets, path, split)
        builder = TABLE_SUFFIXES.get(path.suffix.lower())
        if builder is None or not path.is_file():
            raise DataError("is not a dataset folder, a Parquet or an Arrow file", file=str(path))
        try:
            table = datasets.load_dataset(builder, data_files=[str(path)], split="train", cache_dir=cache)
        except Exception as error:  # a broken footer, a file of another format
            raise DataError(f"cannot be read as {builder}: {_first_line(error)}", file=str(path)) from None
        return str(path), list(table.to_list())
    finally:
        if not quiet:
            datasets.enable_progress_bars()


def _from_disk(datasets: Any, path: Path, split: str | None) -> list[dict[str, Any]]:
    try:
        loaded = datasets.load_from_disk(str(path))
    except Exception as error:  # not written by save_to_disk
        raise DataError(f"is not a folder written by datasets' save_to_disk ({_first_line(error)})",
                        file=str(path)) from None
    if isinstance(loaded, datasets.DatasetDict):
        names = list(loaded)
        chosen = split or ("train" if "train" in names else names[0] if len(names) == 1 else None)
        if chosen not in loaded:
            raise DataError(f"has splits {', '.join(names)}; choose one with split", file=str(path), field="split")
        loaded = loaded[chosen]
    return list(loaded.to_list())


def read_table_examples(data: str | os.PathLike[str], *, preset: str | None = None, split: str | None = None,
                        subset: str | None = None, cache_dir: str | os.PathLike[str] | None = None
                        ) -> Iterator[Example]:
    """The examples of a table source: rows of ``preset`` (detected from the columns when None),
    or ``prompt``/``completion`` rows, or ``text`` rows for pre-training.

    :raises DataError: at the first bad row, naming the source, the 1-based row and the field.
    """
    label, rows = load_rows(data, split=split, subset=subset, cache_dir=cache_dir)
    source = Source(generator="file", prompt_template=label)
    for number, row in enumerate(rows, start=1):
        yield example_of_columns(row, preset, file=label, line=number, source=source)


def example_of_columns(row: Mapping[str, Any], preset: str | None, *, file: str, line: int,
                       source: Source) -> Example:
    """One row by its preset, or as ``prompt``/``completion`` or ``text`` columns."""
    chosen = preset or detect_preset(list(row))
    if chosen is not None:
        return example_from_row(row, chosen, file=file, line=line, source=source)
    where = _where(file, line)
    category, meta = _extras(row, where)
    if "prompt" in row or "completion" in row:
        prompt = _text(row, "prompt", where, required=True)
        completion = _text(row, "completion", where, required=True)
        if not completion.strip():
            raise DataError("is empty: there is nothing to learn", field="completion", **where)
        return Example(prompt=prompt, completion=completion, category=category, source=source, meta=meta)
    if "text" in row:
        text = _text(row, "text", where, required=True)
        if not text.strip():
            raise DataError("is empty", field="text", **where)
        return Example(completion=text, source=source, meta={"format": "text"})
    raise DataError(f"cannot tell the format from the columns {', '.join(map(str, row))}: expected "
                    "messages, conversations, instruction/output, prompt/completion or text (or give a preset)",
                    **where)


# --------------------------------------------------------------------------------------------
# JSON Lines / JSON array files of a preset, and the one entry point of ``forge train --data``
# --------------------------------------------------------------------------------------------

#: The largest JSON-array file (``alpaca_data.json``) read whole.
MAX_JSON_BYTES = 512 * 2**20


def json_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """``(line, value)`` of each non-blank line of a JSONL file, or ``(index + 1, value)`` of a
    JSON array file.

    :raises DataError: a line (or the array) that is not JSON, naming the file and line.
    """
    from .dataformats import jsonl_lines, parse_json_line, read_user_bytes

    if _is_array(path):
        raw = read_user_bytes(path, limit=MAX_JSON_BYTES, what="data file")
        value, problem = parse_json_line(raw.decode("utf-8", errors="strict"))
        if problem:
            raise DataError(problem, file=str(path))
        yield from enumerate(value, start=1)
        return
    for lineno, line in jsonl_lines(path, what="data file"):
        if not line.strip():
            continue
        value, problem = parse_json_line(line)
        if problem:
            raise DataError(problem, file=str(path), line=lineno)
        yield lineno, value


def read_preset_file(path: str | os.PathLike[str], preset: str | None = None) -> Iterator[Example]:
    """The examples of a JSONL (or JSON array) file of ``preset`` (detected from the first row
    when None).

    :raises DataError: at the first bad row, naming the file, the line (for an array: the
        1-based row) and the field.
    """
    p = Path(path)
    source = Source(generator="file", prompt_template=str(p))
    try:
        for line, value in json_rows(p):
            if not isinstance(value, dict):
                raise DataError(f"must be a JSON object, not {type(value).__name__}", file=str(p), line=line)
            yield example_of_columns(value, preset, file=str(p), line=line, source=source)
    except UnicodeDecodeError:
        raise DataError("is not valid UTF-8", file=str(p)) from None


def _is_array(path: Path) -> bool:
    """Whether a JSON file holds one array (checked to be a regular file first: a fifo must not hang)."""
    from .dataformats import open_text

    with open_text(path, what="data file") as handle:
        try:
            head: str = handle.read(4096)
        except UnicodeDecodeError:
            return False  # the line reader names the line that is not UTF-8
    return head.lstrip().startswith("[")


def _first_row_preset(path: Path) -> str | None:
    if path.suffix.lower() not in (".jsonl", ".json", ".ndjson"):
        return None
    try:
        for _, value in json_rows(path):
            return detect_preset(list(value)) if isinstance(value, dict) else None
    except (DataError, OSError, UnicodeDecodeError):
        return None  # the classic reader names the problem
    return None


def _route(data: str | os.PathLike[str], format: str | None) -> tuple[str, str | None]:
    """``("table", preset)``, ``("preset", preset)`` or ``("classic", None)``: which reader takes ``data``."""
    if is_table_source(data):
        if format not in (None, "chat", *PRESETS):
            raise DataError(f"format {format!r} does not apply to a dataset folder, Parquet/Arrow file or Hub "
                            f"dataset; choose {', '.join(PRESETS)} or leave it out", file=str(data), field="format")
        return "table", "messages" if format == "chat" else format
    path = Path(data)
    if not path.is_file():  # missing, a fifo, a device: the classic reader says which, at once
        return "classic", None
    detected = _first_row_preset(path) if format in (None, "chat", "messages") else None
    preset = format if format in ("alpaca", "sharegpt") else detected
    if preset in ("alpaca", "sharegpt") or (preset == "messages" and _is_array(path)):
        return "preset", preset
    return "classic", None


def read_data(data: str | os.PathLike[str], *, format: str | None = None,
              columns: Mapping[str, str] | None = None, split: str | None = None,
              cache_dir: str | os.PathLike[str] | None = None) -> Iterator[Example]:
    """The examples of what ``forge train --data`` names: a table source (:func:`is_table_source`),
    a JSONL/JSON file of a preset (``format`` alpaca/sharegpt, or detected from its first row),
    or a file of :data:`forgemind_hookspecs.dataformats.FORMATS`.

    :raises DataError: at the first bad row, naming its file, line (or row) and field.
    """
    from .dataformats import read_examples

    kind, preset = _route(data, format)
    if kind == "table":
        yield from read_table_examples(data, preset=preset, split=split, cache_dir=cache_dir)
    elif kind == "preset":
        yield from read_preset_file(data, preset)
    else:
        yield from read_examples(data, format=format, columns=columns)


def validate_source(data: str | os.PathLike[str], *, format: str | None = None,
                    columns: Mapping[str, str] | None = None, split: str | None = None,
                    cache_dir: str | os.PathLike[str] | None = None) -> list[DataError]:
    """Every bad row of what :func:`read_data` reads, one :class:`DataError` each (empty = valid),
    for ``forge validate --data``."""
    from .dataformats import validate_file

    try:
        kind, preset = _route(data, format)
        if kind == "classic":
            return validate_file(data, format=format, columns=columns)
        if kind == "table":
            label, table = load_rows(data, split=split, cache_dir=cache_dir)
            rows: list[tuple[int, Any]] = list(enumerate(table, start=1))
        else:
            label, rows = str(data), list(json_rows(Path(data)))
    except DataError as error:  # the source cannot be opened or routed
        return [error]
    problems: list[DataError] = []
    source = Source(generator="file", prompt_template=label)
    for line, value in rows:
        try:
            if not isinstance(value, dict):
                raise DataError(f"must be a JSON object, not {type(value).__name__}", file=label, line=line)
            example_of_columns(value, preset, file=label, line=line, source=source)
        except DataError as error:
            problems.append(error)
    return problems
