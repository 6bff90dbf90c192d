"""The ``files`` generator: real data (JSONL, CSV, Parquet, Arrow, ``save_to_disk`` folders, a
Hub dataset) mixed into the generated data.

Rows are loaded through the Hugging Face ``datasets`` library (its packaged ``json``, ``csv``,
``parquet`` and ``arrow`` builders and ``load_from_disk``, with a cache under the ForgeMind home;
only ``hub: NAME`` reaches the Hub) and become :class:`~forgemind_hookspecs.Example` records like
any generator's:

- ``preset`` (``auto``: detected from the columns when ``columns`` is not given) reads rows of the
  field's formats through :mod:`forgemind_hookspecs.presets`: ``alpaca`` (instruction + input ->
  prompt, output -> completion, system/history -> chat messages), ``sharegpt`` (``conversations``
  of from/value) and ``messages`` (``{role, content}`` lists, also Parquet/Arrow list columns);

- ``columns`` maps example fields to column names (``prompt``, ``completion``, ``category``,
  ``input``); a field not mapped reads the column of its own name when there is one
  (``category`` also a ``label`` column);
- ``text_format: true`` builds the prompt from the ``input`` column (or the prompt column)
  through the task pack's ``prompt_format``, as the ``template`` generator does, so real rows and
  template rows share one format;
- a completion gets the template generator's leading space (``" warm"``); a row with a category
  and no completion column gets ``" <category>"``;
- ``plan.count`` rows are taken in a seeded shuffled order (``count <= 0``: every row), spread
  over categories by ``plan.category_weights`` when the rows have categories and the plan gives
  weights (largest remainder, as the template generator splits); rows kept in an earlier
  iteration of the run are not yielded again;
- every example carries ``Source(generator="files", model=None, prompt_template=<file name>,
  seed=<stage seed>)`` and ``meta = {"input", "file", "line"}``;
- with ``labeller: {model: stable:GOAL, server: {...}, min_confidence: 0.6}`` the rows are inputs
  only: a served model writes each completion (``source.model`` = its checkpoint id, ``meta.confidence``)
  and rows below ``min_confidence`` go to the Warden's review queue (:mod:`.labeller`).

A bad row (not JSON, not an object, a wrong number of CSV fields, an empty prompt) is a
:class:`~forgemind_hookspecs.errors.DataError` naming the file and its line (for Parquet, the
1-based row number). Heavy imports (``datasets``) happen inside :meth:`FilesGenerator.generate`.
"""

from __future__ import annotations

import csv
import glob
import random
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from attrs import Factory, frozen
from forgemind_hookspecs import hookimpl
from forgemind_hookspecs.backends import StageContext
from forgemind_hookspecs.dataformats import first_bad_utf8_line, open_text
from forgemind_hookspecs.errors import ConfigError, DataError
from forgemind_hookspecs.presets import (
    HUB_PREFIX,
    PRESETS,
    detect_preset,
    example_from_row,
    json_rows,
    load_rows,
)
from forgemind_hookspecs.records import Example, GenerationPlan, Source, content_hash

from forgemind_core.foundry.labeller import Labeller, parse_labeller

__all__ = ["FORMATS", "FilesGenerator", "forgemind_register_generators", "resolve_paths"]

#: Format name -> the ``datasets`` builder that reads it.
FORMATS: Mapping[str, str] = {"jsonl": "json", "json": "json", "csv": "csv", "parquet": "parquet",
                              "arrow": "arrow", "disk": "disk"}
_SUFFIXES: Mapping[str, str] = {".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl", ".csv": "csv",
                                ".parquet": "parquet", ".pq": "parquet", ".arrow": "arrow"}
#: Formats read as tables by :func:`forgemind_hookspecs.presets.load_rows` (rows numbered from 1).
_TABLES = ("arrow", "disk")
_FIELDS: tuple[str, ...] = ("prompt", "completion", "category", "input")
#: The columns a field reads when ``columns`` does not map it (the first one present).
_DEFAULT_COLUMNS: Mapping[str, tuple[str, ...]] = {
    "prompt": ("prompt",), "completion": ("completion",), "category": ("category", "label"), "input": ("input",),
}


def _str_map() -> dict[str, str]:
    return {}


def resolve_paths(paths: Sequence[str], root: str | None) -> list[Path]:
    """Expand ``paths`` (files, ``save_to_disk`` folders or globs; relative ones against ``root``)
    into existing files and dataset folders.

    :raises ConfigError: a path or glob that matches no file.
    """
    base = Path(root) if root else Path.cwd()
    out: list[Path] = []
    for index, raw in enumerate(paths):
        path = Path(raw).expanduser()
        if not path.is_absolute():
            path = base / path
        if any(c in raw for c in "*?["):
            matches = sorted(Path(p) for p in glob.glob(str(path), recursive=True)
                             if Path(p).is_file() or _is_dataset_dir(Path(p)))
        else:
            matches = [path] if path.is_file() or path.is_dir() else []
        if not matches:
            raise ConfigError(f"no data file matches {raw!r} (looked in {base})", field=f"generate.paths[{index}]")
        out.extend(m for m in matches if m not in out)
    return out


def _is_dataset_dir(path: Path) -> bool:
    """A folder written by ``save_to_disk`` (a Dataset or a DatasetDict)."""
    return path.is_dir() and any((path / name).is_file() for name in ("state.json", "dataset_dict.json"))


class _Row:
    __slots__ = ("data", "file", "line")

    def __init__(self, data: Mapping[str, Any], file: Path, line: int) -> None:
        self.data = data
        self.file = file
        self.line = line


class FilesGenerator:
    """Real data from JSONL, CSV, Parquet or Arrow files, dataset folders or a Hub dataset
    (loaded with ``datasets``), as examples."""

    name: ClassVar[str] = "files"

    @frozen
    class Options:
        """Options of the ``files`` generator.

        :ivar paths: files, ``save_to_disk`` folders or globs; relative ones are resolved against
            the task pack's folder. Empty: the pack's ``data`` files (or only ``hub``).
        :ivar format: ``auto`` (by suffix: ``.jsonl``/``.json``/``.ndjson``, ``.csv``,
            ``.parquet``/``.pq``, ``.arrow``; a folder is ``disk``), ``jsonl``, ``csv``,
            ``parquet``, ``arrow`` or ``disk``.
        :ivar preset: ``auto`` (detected from the columns when ``columns`` is empty), ``none``,
            ``alpaca``, ``sharegpt`` or ``messages`` (see :mod:`forgemind_hookspecs.presets`).
        :ivar hub: a Hub dataset id read with ``datasets.load_dataset(hub, subset, split=split)``
            (needs a network, unless it is a local dataset folder); added to ``paths``.
        :ivar split: the split of ``hub`` (and of a ``save_to_disk`` DatasetDict folder).
        :ivar subset: the configuration (subset) of ``hub``.
        :ivar columns: ``{example field: column}`` for ``prompt``, ``completion``, ``category``
            and ``input`` (e.g. ``{prompt: question, completion: answer, category: label}``).
        :ivar text_format: build the prompt from the ``input`` column (or the prompt column)
            through the pack's ``prompt_format``.
        :ivar labeller: ``{model, server, min_confidence, max_tokens, temperature, stop,
            timeout_s}``: a served model labels the rows (inputs only), see :mod:`.labeller`.
        """

        paths: tuple[str, ...] = ()
        format: str = "auto"
        preset: str = "auto"
        hub: str | None = None
        split: str | None = None
        subset: str | None = None
        columns: Mapping[str, str] = Factory(_str_map)
        text_format: bool = False
        labeller: Mapping[str, Any] | None = None

    def __init__(self, options: FilesGenerator.Options | None = None) -> None:
        self.options = options or FilesGenerator.Options()
        if self.options.format != "auto" and self.options.format not in FORMATS:
            raise ConfigError(f"unknown format {self.options.format!r}; expected auto, {', '.join(FORMATS)}",
                              field="generate.format")
        if self.options.preset not in ("auto", "none", *PRESETS):
            raise ConfigError(f"unknown preset {self.options.preset!r}; expected auto, none, {', '.join(PRESETS)}",
                              field="generate.preset")
        unknown = sorted(set(self.options.columns) - set(_FIELDS))
        if unknown:
            raise ConfigError(f"unknown example field(s) {', '.join(unknown)}; map only {', '.join(_FIELDS)}",
                              field="generate.columns")
        self.labeller: Labeller | None = parse_labeller(self.options.labeller)

    # -- reading ------------------------------------------------------------------------------

    def _format(self, path: Path) -> str:
        if self.options.format != "auto":
            return self.options.format
        if path.is_dir():
            return "disk"
        fmt = _SUFFIXES.get(path.suffix.lower())
        if fmt is None:
            raise DataError(f"cannot tell the format from the suffix {path.suffix!r}; set `format:`", file=str(path))
        return fmt

    def _rows(self, path: Path, ctx: StageContext) -> list[_Row]:
        if str(path).startswith(HUB_PREFIX) or self._format(path) in _TABLES:
            label, records = load_rows(path if not str(path).startswith(HUB_PREFIX) else str(path),
                                       split=self.options.split, subset=self.options.subset,
                                       cache_dir=Path(ctx.cache_dir) / "datasets")
            return [_Row(rec, Path(label), i + 1) for i, rec in enumerate(records)]
        fmt = self._format(path)
        lines = _line_numbers(path, fmt)
        records = _load(path, fmt, ctx)
        if lines is not None and len(lines) != len(records):
            raise DataError(f"read {len(records)} rows but the file has {len(lines)}", file=str(path))
        return [_Row(rec, path, lines[i] if lines is not None else i + 1) for i, rec in enumerate(records)]

    def _preset(self, data: Mapping[str, Any]) -> str | None:
        if self.options.preset == "none":
            return None
        if self.options.preset != "auto":
            return self.options.preset
        return None if self.options.columns else detect_preset(list(data))

    def _preset_example(self, row: _Row, preset: str, ctx: StageContext) -> Example:
        if self.labeller is not None:
            raise ConfigError(f"the labeller labels rows of inputs, not {preset} rows (which carry their answers): "
                              "set `preset: none` and map the input column", field="generate.preset")
        source = Source(generator=self.name, model=None, prompt_template=row.file.name, seed=ctx.seed)
        example = example_from_row(row.data, preset, file=str(row.file), line=row.line, source=source)
        meta = {**dict(example.meta), "file": str(row.file), "line": row.line}
        if example.messages:
            return Example(messages=example.messages, category=example.category, source=source,
                           meta={**meta, "input": example.messages[-2].content if len(example.messages) > 1 else ""})
        prompt = example.prompt
        if self.options.text_format:
            if ctx.pack is None:
                raise ConfigError("text_format needs a task pack: set `pack:` in the goal", field="generate.text_format")
            from forgemind_core.foundry.packs import format_prompt

            prompt = format_prompt(ctx.pack, example.prompt)
        completion = example.completion
        if completion[:1] not in (" ", "\n", "\t"):
            completion = " " + completion  # as the column rows: the answer is its own token
        return Example(prompt=prompt, completion=completion, category=example.category, source=source,
                       meta={**meta, "input": example.prompt})

    def _example(self, row: _Row, ctx: StageContext) -> Example:
        preset = self._preset(row.data)
        if preset is not None:
            return self._preset_example(row, preset, ctx)
        cols = dict(self.options.columns)
        data = row.data
        file, line = str(row.file), row.line

        def column(field: str) -> str | None:
            return cols.get(field) or next((c for c in _DEFAULT_COLUMNS[field] if c in data), None)

        def text(field: str, *, required: bool) -> str | None:
            name = column(field)
            if name is None:
                if required:
                    raise DataError(f"no column for the example's {field}; map it under `columns:`", field=field, file=file, line=line)
                return None
            if name not in data:
                raise DataError(f"no column {name!r} (columns: {', '.join(data)})", field=name, file=file, line=line)
            value = data[name]
            if value is None or (isinstance(value, float) and value != value):  # None or NaN
                if required:
                    raise DataError("is empty", field=name, file=file, line=line)
                return None
            if isinstance(value, (dict, list)):
                raise DataError(f"must be text, not {type(value).__name__}", field=name, file=file, line=line)
            value = str(value)
            if required and not value.strip():
                raise DataError("is empty", field=name, file=file, line=line)
            return value

        pack = ctx.pack
        if self.labeller is not None and column("input") is None and column("prompt") is None:
            raise DataError(f"has no {cols.get('input', 'input')!r} column (columns: {', '.join(data)}): the labeller "
                            "labels each row's input; map the column under `columns: {input: NAME}`",
                            field="input", file=file, line=line)
        if self.options.text_format:
            if pack is None:
                raise ConfigError("text_format needs a task pack: set `pack:` in the goal", field="generate.text_format")
            raw = text("input", required=False) if column("input") else None
            raw = raw if raw is not None else text("prompt", required=True)
            assert raw is not None
            from forgemind_core.foundry.packs import format_prompt

            prompt = format_prompt(pack, raw)
        else:
            raw = text("prompt", required=column("input") is None)
            raw = raw if raw is not None else text("input", required=True)  # the raw input as the prompt
            assert raw is not None
            prompt = raw
        category = text("category", required=False)
        if self.labeller is not None:  # inputs only: the labeller writes the completion
            return Example(prompt=prompt, completion="", category=category,
                           source=Source(generator=self.name, model=None, prompt_template=row.file.name, seed=ctx.seed),
                           meta={"input": raw, "file": str(row.file), "line": row.line})
        completion = text("completion", required=column("category") is None)
        labels = set(pack.labels) if pack is not None else set()
        if completion is None:
            completion = f" {category}"
        elif completion[:1] not in (" ", "\n", "\t"):
            completion = " " + completion  # the label is its own token after the prompt's last word
        if category is None and completion.strip() in labels:
            category = completion.strip()
        return Example(
            prompt=prompt,
            completion=completion,
            category=category,
            source=Source(generator=self.name, model=None, prompt_template=row.file.name, seed=ctx.seed),
            meta={"input": raw, "file": str(row.file), "line": row.line},
        )

    # -- the generator ------------------------------------------------------------------------

    def generate(self, plan: GenerationPlan, ctx: StageContext) -> Iterator[Example]:
        """Yield ``plan.count`` examples (every row when ``count <= 0``) in a seeded order."""
        pack = ctx.pack
        paths = self.options.paths or (pack.data_files if pack is not None and not self.options.hub else ())
        if not paths and not self.options.hub:
            raise ConfigError("the files generator needs `paths:` or `hub:` (or a task pack with `data:` files)",
                              field="generate.paths")
        files = resolve_paths(paths, pack.root if pack is not None else None) if paths else []
        if self.options.hub:
            files.append(Path(HUB_PREFIX + self.options.hub))
        examples: list[Example] = []
        for path in files:
            examples.extend(self._example(row, ctx) for row in self._rows(path, ctx))
        kept = list(ctx.history.kept_examples())
        # a labelled row's id depends on its label: rows are told apart by their prompt then
        kept_before = {e.prompt for e in kept} if self.labeller is not None else {e.id for e in kept}
        unique: dict[str, Example] = {}
        for example in examples:
            key = example.prompt if self.labeller is not None else example.id
            if key not in kept_before:
                unique.setdefault(key, example)
        pool = list(unique.values())
        rng = random.Random(int(content_hash(
            [ctx.seed, [str(p) for p in files], plan.count, sorted(plan.category_weights.items())]), 16))
        rng.shuffle(pool)
        if self.labeller is not None:
            yield from self._labelled(pool if plan.count <= 0 else pool[: plan.count], ctx)
            return
        if plan.count <= 0:
            yield from pool
            return
        if plan.category_weights and any(e.category is not None for e in pool):
            from forgemind_core.foundry.template import allocate

            order = list(dict.fromkeys(e.category or "" for e in pool))
            counts = allocate(plan.count, order, plan.category_weights)
            taken = dict.fromkeys(order, 0)
            for example in pool:
                c = example.category or ""
                if taken[c] < counts[c]:
                    taken[c] += 1
                    yield example
            short = {c: counts[c] - taken[c] for c in order if taken[c] < counts[c]}
            if short:
                _warn(ctx, "data files ran out of rows for some categories", missing=short)
            return
        yield from pool[: plan.count]
        if len(pool) < plan.count:
            _warn(ctx, "data files have fewer rows than asked for", rows=len(pool), wanted=plan.count)


    def _labelled(self, rows: Sequence[Example], ctx: StageContext) -> Iterator[Example]:
        """Each input row with the labeller's answer as its completion (see :mod:`.labeller`)."""
        labeller = self.labeller
        assert labeller is not None
        if labeller.min_confidence > 0 and ctx.policy is None:
            raise ConfigError("rows below labeller.min_confidence go to the Warden's review queue: give the goal "
                              "review.policy (an empty policy file will do), or set min_confidence: 0",
                              field="generate.labeller.min_confidence")
        labels = set(ctx.pack.labels) if ctx.pack is not None else set()
        for row in rows:
            answer = labeller.ask(row.prompt)
            text = answer.text.strip()
            first = text.split()[0] if text.split() else ""
            confidence = round(answer.confidence, 6) if answer.confidence is not None else None
            meta: dict[str, Any] = {**dict(row.meta), "confidence": confidence, "labelled_by": labeller.model,
                                    "label_tokens": answer.tokens}
            if labeller.below(confidence):
                shown = f"{confidence:.3f}" if confidence is not None else "unknown (no log-probs)"
                meta["review"] = f"labeller: confidence {shown} < min_confidence {labeller.min_confidence:g}"
            elif not text:  # no label to train on, however sure the model was of stopping
                meta["review"] = "labeller: the model answered nothing"
            yield Example(
                prompt=row.prompt, completion=f" {text}" if text else "",
                category=row.category or (first if first in labels else None),
                source=Source(generator=self.name, model=labeller.model, prompt_template=row.source.prompt_template,
                              seed=ctx.seed),
                meta=meta,
            )


def _warn(ctx: StageContext, message: str, **fields: Any) -> None:
    try:
        ctx.log.warning(message, **fields)
    except TypeError:
        ctx.log.warning("%s %s", message, fields)


def _line_numbers(path: Path, fmt: str) -> list[int] | None:
    """The 1-based line of each row (JSONL and CSV), checking every row's syntax on the way
    (strict UTF-8, JSON we can parse, CSV with as many fields as the header).

    ``None`` for Parquet (rows are numbered from 1 instead).
    """
    if fmt == "parquet":
        open_text(path, what="data file").close()  # a fifo or a device must not reach pyarrow
        return None
    if fmt == "csv":
        return _csv_lines(path)
    lines: list[int] = []
    for lineno, obj in json_rows(path):
        if not isinstance(obj, dict):
            raise DataError(f"must be a JSON object, not {type(obj).__name__}", file=str(path), line=lineno)
        lines.append(lineno)
    return lines


def _csv_lines(path: Path) -> list[int]:
    lines: list[int] = []
    with open_text(path, what="data file", newline="") as fh:
        reader = csv.reader(fh)
        header: list[str] | None = None
        try:
            for record in reader:
                if not record or (len(record) == 1 and not record[0].strip()):
                    continue
                if header is None:
                    header = record
                    continue
                if len(record) != len(header):
                    raise DataError(f"has {len(record)} fields but the header has {len(header)}",
                                    file=str(path), line=reader.line_num)
                lines.append(reader.line_num)
        except UnicodeDecodeError:
            raise DataError("is not valid UTF-8", file=str(path), line=first_bad_utf8_line(path)) from None
        except csv.Error as error:
            raise DataError(f"is not valid CSV ({error})", file=str(path), line=max(reader.line_num, 1)) from None
    return lines


def _load(path: Path, fmt: str, ctx: StageContext) -> list[dict[str, Any]]:
    """Read one file with ``datasets`` (offline: a packaged builder and a local cache)."""
    try:
        import datasets
    except ModuleNotFoundError:
        raise ConfigError(
            "the 'files' generator reads data through the datasets library: pip install 'forgemind[data]'",
            field="generate.files",
        ) from None

    kwargs: dict[str, Any] = {}
    if fmt == "csv":
        kwargs["keep_default_na"] = False  # an empty cell is "", not NaN, and "NA" stays text
    quiet = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()  # the loop's own progress bar counts the examples
    try:
        data = datasets.load_dataset(FORMATS[fmt], data_files=[str(path)], split="train",
                                     cache_dir=str(Path(ctx.cache_dir) / "datasets"), **kwargs)
    except Exception as error:  # pyarrow/pandas errors: mixed types, broken Parquet footers...
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise DataError(f"cannot be read as {fmt}: {message}", file=str(path)) from None
    finally:
        if not quiet:
            datasets.enable_progress_bars()
    return list(data.to_list())


@hookimpl
def forgemind_register_generators(register: Any) -> None:
    """Offer the ``files`` generator (real data files)."""
    register(FilesGenerator)
