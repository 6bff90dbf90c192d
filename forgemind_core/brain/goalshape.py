"""Goal files, the middle of the read: the flat backend sections reshaped into the records'
nested form, and the checks cattrs cannot make (declared bounds after a failed structure, backend
names and options against the catalogue, a trainer's declared methods and presets).

The backend sections are *flat* in YAML (every key beside ``backend`` is an option), so
:func:`shape` turns ``{backend: x, share: s, a: 1}`` into ``{"backend": x, "share": s,
"options": {"a": 1}}`` and notes each backend choice as a :class:`ChoiceSite`, which
:func:`check_sites` checks against the installed backends of its pillar (options structured into
the backend's ``Options`` class, values coerced: ``2`` -> ``2.0`` for a float option).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, get_args

import attrs
from cattrs.errors import BaseValidationError
from forgemind_hookspecs.bounds import OneOf
from forgemind_hookspecs.bounds import check as bounds_check
from forgemind_hookspecs.catalogue import BackendInfo
from forgemind_hookspecs.errors import UnknownBackend
from forgemind_hookspecs.records import EvaluateSection, Goal, Limits, PretrainSpec

from forgemind_core.base.convert import describe, goal_converter, is_plain_sequence
from forgemind_core.base.options import BACKEND_NOUN, unknown_backend_message
from forgemind_core.base.servers import SERVER_KEY, client_problem, split_server
from forgemind_core.base.yamlfile import Problems, YamlPath, report_structure_error

__all__ = [
    "Catalogue",
    "ChoiceSite",
    "apply_coerced",
    "check_bounds",
    "check_sites",
    "check_success_metric",
    "check_trainer_choices",
    "default_backend",
    "model_ref_problem",
    "served_models",
    "shape",
    "tier_metric_names",
]

#: ``{pillar: {backend name: BackendInfo}}`` as :meth:`forgemind_core.api.Forge.catalogue` returns.
Catalogue = Mapping[str, Mapping[str, BackendInfo]]


@attrs.frozen
class ChoiceSite:
    """A backend choice found in the file: where it is, its pillar, its name and options."""

    path: YamlPath
    pillar: str
    backend: Any
    options: dict[str, Any]


def default_backend(cls: type, attribute: str) -> str:
    """The backend a section of ``cls`` uses when the file names none (the default of the record)."""
    default = getattr(attrs.fields(cls), attribute).default
    return str(default.backend)


def _shape_choice(
    raw: Any,
    path: YamlPath,
    pillar: str,
    problems: Problems,
    sites: list[ChoiceSite],
    *,
    default_backend: str | None,
    with_share: bool = False,
) -> dict[str, Any] | None:
    """``{backend: x, share: s, a: 1}`` -> ``{"backend": x, "share": s, "options": {"a": 1}}``."""
    if raw is None and default_backend is not None:
        raw = {}
    if not isinstance(raw, dict):
        problems.add(path, f"expected a mapping with a 'backend' key, got {describe(raw)}")
        return None
    options = {k: v for k, v in raw.items() if k != "backend" and not (with_share and k == "share")}
    if "backend" in raw:
        backend = raw["backend"]
    elif default_backend is not None:
        backend = default_backend
    else:
        problems.add((*path, "backend"), f"required: name the {BACKEND_NOUN[pillar]} to use")
        return None
    shaped: dict[str, Any] = {"backend": backend, "options": options}
    if with_share and "share" in raw:
        shaped["share"] = raw["share"]
    sites.append(ChoiceSite(path=path, pillar=pillar, backend=backend, options=options))
    if SERVER_KEY in options:  # a served model (forgemind_core/base/servers.py): its own site
        _shape_server(options[SERVER_KEY], (*path, SERVER_KEY), problems, sites)
    return shaped


def _shape_server(raw: Any, path: YamlPath, problems: Problems, sites: list[ChoiceSite]) -> None:
    """``server: {backend: llamacpp, n_ctx: 2048}`` is checked as a backend of the servers pillar."""
    if not isinstance(raw, dict):
        problems.add(path, f"expected a mapping with a 'backend' key (the server to start), got {describe(raw)}")
    elif "backend" not in raw:
        problems.add((*path, "backend"), f"required: name the {BACKEND_NOUN['servers']} to use")
    else:
        options = {k: v for k, v in raw.items() if k != "backend"}
        sites.append(ChoiceSite(path=path, pillar="servers", backend=raw["backend"], options=options))


def _shape_list(
    raw: Any,
    path: YamlPath,
    pillar: str,
    problems: Problems,
    sites: list[ChoiceSite],
    *,
    with_share: bool = False,
) -> list[dict[str, Any]] | None:
    if not isinstance(raw, list):
        problems.add(path, f"expected a list (write [] for none), got {describe(raw)}")
        return None
    out: list[dict[str, Any]] = []
    for index, item in enumerate(raw):
        shaped = _shape_choice(
            item, (*path, index), pillar, problems, sites, default_backend=None, with_share=with_share
        )
        # A bad item (already reported) becomes a valid placeholder, so the items after it keep
        # their index and are still checked; the goal is discarded anyway.
        out.append(shaped if shaped is not None else {"backend": "", "options": {}})
    return out


def shape(data: dict[str, Any], problems: Problems) -> tuple[dict[str, Any], list[ChoiceSite]]:
    """Reshape the flat sections; a malformed section is reported and left out of ``data``.
    Returns the reshaped data and every backend choice found in it."""
    sites: list[ChoiceSite] = []
    out = dict(data)

    def put(key: str, value: Any) -> None:
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value

    if "generate" in data:
        put(
            "generate",
            _shape_list(data["generate"], ("generate",), "generators", problems, sites, with_share=True),
        )
    if "filter" in data:
        put("filter", _shape_list(data["filter"], ("filter",), "filters", problems, sites))
    for key, pillar in (("train", "trainers"), ("planner", "planners"), ("executor", "executors")):
        if key in data:
            default = default_backend(Goal, key)
            put(key, _shape_choice(data[key], (key,), pillar, problems, sites, default_backend=default))
    if "evaluate" in data:
        section = data["evaluate"]
        if section is None:
            out.pop("evaluate")
        elif not isinstance(section, dict):
            problems.add(("evaluate",), f"expected a mapping, got {describe(section)}")
            out.pop("evaluate")
        else:
            shaped_eval = dict(section)
            for key, pillar in (("runner", "runners"), ("adversary", "adversaries")):
                if key in section:
                    choice = _shape_choice(
                        section[key],
                        ("evaluate", key),
                        pillar,
                        problems,
                        sites,
                        default_backend=default_backend(EvaluateSection, key),
                    )
                    if choice is None:
                        shaped_eval.pop(key)
                    else:
                        shaped_eval[key] = choice
            if "scorers" in section:
                scorers = _shape_list(section["scorers"], ("evaluate", "scorers"), "scorers", problems, sites)
                if scorers is None:
                    shaped_eval.pop("scorers")
                else:
                    shaped_eval["scorers"] = scorers
            out["evaluate"] = shaped_eval
    if "review" in data:
        section = data["review"]
        if section is None:
            out.pop("review")
        elif not isinstance(section, dict):
            problems.add(("review",), f"expected a mapping, got {describe(section)}")
            out.pop("review")
        else:
            options = {k: v for k, v in section.items() if k not in ("backend", "policy")}
            review: dict[str, Any] = {"options": options}
            for key in ("backend", "policy"):
                if key in section:
                    review[key] = section[key]
            if section.get("backend") is not None:
                sites.append(ChoiceSite(("review",), "reviewers", section["backend"], options))
            out["review"] = review
    if "pretrain" in data:
        section = data["pretrain"]
        if section is None:
            out.pop("pretrain")
        elif not isinstance(section, dict):
            problems.add(("pretrain",), f"expected a mapping, got {describe(section)}")
            out.pop("pretrain")
        else:
            pretrain: dict[str, Any] = {
                "options": {k: v for k, v in section.items() if k not in ("corpus", "preset")}
            }
            for key in ("corpus", "preset"):
                if key in section:
                    pretrain[key] = section[key]
            out["pretrain"] = pretrain
    return out, sites


def check_bounds(cls: Any, raw: Any, path: YamlPath, problems: Problems) -> None:
    """Every field of ``cls`` (and of the records inside it) whose value in ``raw`` breaks the
    field's declared bound (:mod:`forgemind_hookspecs.bounds`). attrs stops at a class's first
    failing validator and cattrs never builds the outer record when an inner one fails, so after a
    failed structure this pass finds the others: the user fixes the file in one go."""
    if not (isinstance(cls, type) and attrs.has(cls)) or not isinstance(raw, Mapping):
        return
    try:
        fields = attrs.fields(attrs.resolve_types(cls))
    except (NameError, TypeError):  # an Options class whose annotations do not resolve
        fields = attrs.fields(cls)
    conv = goal_converter()
    for f in fields:
        if f.name not in raw:
            continue
        value, tp, here = raw[f.name], f.type, (*path, f.name)
        args = get_args(tp)
        if isinstance(tp, type) and attrs.has(tp):
            check_bounds(tp, value, here, problems)
        elif is_plain_sequence(tp) and args and attrs.has(args[0]) and isinstance(value, list):
            for index, item in enumerate(value):
                check_bounds(args[0], item, (*here, index), problems)
        elif f.validator is not None:
            try:
                built = conv.structure(value, tp)
            except Exception:  # a wrong type is the structure pass's to report
                continue
            problem = bounds_check(f, built)
            if problem:
                problems.add(here, problem)


# ------------------------------------------------------------------------------------------
# Catalogue checks.
# ------------------------------------------------------------------------------------------


def check_sites(
    sites: list[ChoiceSite], catalogue: Catalogue, problems: Problems
) -> dict[YamlPath, dict[str, Any]]:
    """Check backend names and options; return the coerced options of each valid site."""
    conv = goal_converter()
    coerced: dict[YamlPath, dict[str, Any]] = {}
    for site in sites:
        if not isinstance(site.backend, str):
            continue  # cattrs reports "expected text" for it
        installed = catalogue.get(site.pillar, {})
        kind = BACKEND_NOUN[site.pillar]
        if site.backend not in installed:
            problems.add((*site.path, "backend"), unknown_backend_message(site.pillar, site.backend, installed),
                         UnknownBackend)
            continue
        options_cls: type = getattr(installed[site.backend].cls, "Options")  # noqa: B009
        owner = f"{kind} {site.backend!r}"
        own, server = split_server(site.options)
        if server is not None and (problem := client_problem(options_cls, own)):
            problems.add((*site.path, SERVER_KEY), problem)
            continue
        if server is not None and (problem := model_ref_problem(own.get("model"))):
            problems.add((*site.path, "model"), problem)
            continue
        nested = [(k, v) for k, v in own.items() if isinstance(v, Mapping) and v.get(SERVER_KEY) is not None]
        bad = next(((k, p) for k, v in nested if (p := model_ref_problem(v.get("model")))), None)
        if bad is not None:  # e.g. the files generator's labeller: {model: stable:GOAL@oops, server: ...}
            problems.add((*site.path, bad[0], "model"), bad[1])
            continue
        try:
            built: Any = conv.structure(own, options_cls)
        except BaseValidationError as error:
            report_structure_error(
                error,
                site.path,
                options_cls,
                site.options,
                problems,
                data_path=_strip_prefix(len(site.path)),
                noun="option",
                owner=owner,
            )
            check_bounds(options_cls, own, site.path, problems)
            continue
        except (TypeError, ValueError) as error:  # an Options class validating in __init__
            problems.add(site.path, f"bad options for {owner}: {error}")
            continue
        plain = conv.unstructure(built)
        coerced[site.path] = (
            {k: plain.get(k, v) for k, v in site.options.items()} if isinstance(plain, dict) else {}
        )
    return coerced


#: ``CHANNEL:GOAL`` or ``CHANNEL:GOAL@VERSION`` (a model reference, docs/servers.md).
_CHANNEL_REF = re.compile(r"^[A-Za-z][\w-]*:[^@:]+(@\d+)?$")


def model_ref_problem(model: Any) -> str | None:
    """Why ``model`` (beside ``server:``) is a malformed channel reference, or ``None``. Whether
    the goal has a promoted model is the registry's to say, when the run starts
    (:meth:`~forgemind_core.base.servers.ServerPool.check`)."""
    text = str(model).strip() if isinstance(model, str) else ""
    head = text.split(":", 1)[0]
    if ":" not in text or not re.fullmatch(r"[A-Za-z][\w-]*", head) or len(head) == 1:  # C:\ is a path
        return None
    if _CHANNEL_REF.match(text):
        return None
    return (f"{text!r} is not a model reference: write {head}:GOAL for the newest model of goal GOAL "
            f"promoted to {head!r}, or {head}:GOAL@VERSION (VERSION a whole number), e.g. stable:tickets@2")


def served_models(goal: Goal) -> list[tuple[str, str]]:
    """``(field, model)`` of every backend choice of ``goal`` that asks for a served model."""
    choices: list[tuple[str, Mapping[str, Any]]] = [
        *((f"generate[{i}]", g.options) for i, g in enumerate(goal.generate)),
        *((f"filter[{i}]", f.options) for i, f in enumerate(goal.filter)),
        ("evaluate.runner", goal.evaluate.runner.options),
        ("evaluate.adversary", goal.evaluate.adversary.options),
        ("planner", goal.planner.options),  # the default planner's advisor
    ]
    nested = [(f"{field}.{key}", value) for field, options in choices for key, value in options.items()
              if isinstance(value, Mapping)]  # an option served on its own: the files generator's labeller
    return [(f"{field}.model", str(options["model"])) for field, options in [*choices, *nested]
            if options.get(SERVER_KEY) is not None and options.get("model")]


def _strip_prefix(n: int) -> Callable[[YamlPath], YamlPath]:
    """Options are flat: ``train.epochs`` lives at ``options["epochs"]``."""

    def strip(path: YamlPath) -> YamlPath:
        return path[n:]

    return strip


def apply_coerced(goal: Goal, coerced: Mapping[YamlPath, dict[str, Any]]) -> Goal:
    """``goal`` with each backend choice's options replaced by their coerced values (from
    :func:`check_sites`), so ``epochs: "3"`` reaches the backend as the ``3`` it means."""
    def choice(path: YamlPath, value: Any) -> Any:
        if path in coerced:
            return attrs.evolve(value, options=coerced[path])
        return value

    evaluate = goal.evaluate
    evaluate = attrs.evolve(
        evaluate,
        runner=choice(("evaluate", "runner"), evaluate.runner),
        scorers=tuple(choice(("evaluate", "scorers", i), s) for i, s in enumerate(evaluate.scorers)),
    )
    return attrs.evolve(
        goal,
        generate=tuple(choice(("generate", i), g) for i, g in enumerate(goal.generate)),
        filter=tuple(choice(("filter", i), f) for i, f in enumerate(goal.filter)),
        train=choice(("train",), goal.train),
        planner=choice(("planner",), goal.planner),
        executor=choice(("executor",), goal.executor),
        evaluate=evaluate,
        review=choice(("review",), goal.review),
    )


def check_trainer_choices(shaped: Mapping[str, Any], catalogue: Catalogue, problems: Problems) -> None:
    """``limits.method`` and ``pretrain.preset`` against what the goal's trainer declares
    (class attributes ``methods`` and ``presets``: the kernel asks the backend, it never imports
    a plugin). A trainer that declares nothing accepts any text."""
    train = shaped.get("train")
    name = train.get("backend") if isinstance(train, Mapping) else default_backend(Goal, "train")
    info = catalogue.get("trainers", {}).get(name) if isinstance(name, str) else None
    if info is None:
        return
    for section, key, attribute, default in (
        ("limits", "method", "methods", attrs.fields(Limits).method.default),
        ("pretrain", "preset", "presets", attrs.fields(PretrainSpec).preset.default),
    ):
        choices = getattr(info.cls, attribute, None)
        raw = shaped.get(section)
        value = raw.get(key, default) if isinstance(raw, Mapping) else default
        if not choices or not isinstance(value, str):
            continue
        problem = OneOf(tuple(choices)).problem(value)
        if problem:
            problems.add((section, key), f"{problem} (the {attribute} of trainer {name!r})")


def tier_metric_names() -> tuple[str, ...]:
    """The metrics every tier's report carries that a success criterion can test: the scalar
    scores of the Trial Grounds' aggregate (:func:`forgemind_core.trials.tiers.aggregate`:
    ``accuracy``, ``pass_rate``, ``distinct_1``, ``distinct_2``), read from the aggregate itself
    so the two cannot drift apart. Scorers judge cases (score, passed); the tier turns their
    results into these numbers, so no scorer adds a name of its own."""
    from forgemind_core.trials.tiers import aggregate

    return tuple(sorted(k for k, v in aggregate([]).items() if isinstance(v, float)))


def check_success_metric(goal: Goal, problems: Problems) -> None:
    """``success.metric`` is one of :func:`tier_metric_names` (a typo such as ``acuracy`` would
    otherwise score every tier 0 and never promote)."""
    import difflib

    names = tier_metric_names()
    metric = goal.success.metric
    if metric in names:
        return
    close = difflib.get_close_matches(metric, names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    problems.add(("success", "metric"),
                 f"{metric!r} is not a metric the evaluation tiers report; expected one of "
                 f"{', '.join(repr(n) for n in names)}{hint}")
