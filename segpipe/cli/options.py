"""Command-line options made from the stages' parameter models, so each option is declared once.

A command names the fields it offers and the option each becomes::

    @params(train=(TrainParams, {"network": "--network", "max_minutes": "--minutes"}))
    def train(dataset: str, train: TrainParams): ...

Each option's type and help come from the model's field (its docstring); an option left out
is not set, so the catalog or the model card keeps its say (see ``model_fields_set``). Two
groups may share an option name (``--device`` sets both training and prediction). Values
are validated by the model; a bad one is reported as ``--option: problem``.
"""

from __future__ import annotations

import functools
import inspect
import re
import types
import typing
from collections.abc import Mapping
from typing import Annotated, Any, Optional

import typer
from pydantic import BaseModel, ValidationError

from segpipe.errors import InputError

Group = tuple[type[BaseModel], Mapping[str, str]]

#: How a default reads where something else comes first (a field path prefix -> wording).
DEFAULT_WORDING = {
    "TrainParams": "the catalog's, else {}",
    "PredictParams.inference": "the model card's",
}


def params(**groups: Group):
    """Decorate a command: one option per named field; the command receives the built models."""

    def decorate(func):
        signature = inspect.signature(func, eval_str=True)
        kept = [p for p in signature.parameters.values() if p.name not in groups]
        routes: dict[str, list[tuple[str, str]]] = {}
        options: list[inspect.Parameter] = []
        flags: dict[str, str] = {}
        for group, (model, fields) in groups.items():
            for dotted, flag in fields.items():
                keyword = flag.lstrip("-").replace("-", "_")
                routes.setdefault(keyword, []).append((group, dotted))
                flags[f"{group}.{dotted}"] = flag
                if len(routes[keyword]) == 1:
                    options.append(_option(keyword, flag, model, dotted))

        @functools.wraps(func)
        def command(**kwargs):
            values: dict[str, dict] = {group: {} for group in groups}
            for keyword, targets in routes.items():
                value = kwargs.pop(keyword)
                if value is None:
                    continue
                if isinstance(value, list | tuple):  # repeatable, and each may be comma-separated
                    given, value = value, [part.strip() for item in value for part in str(item).split(",")]
                    if "" in value:  # `2,,0.5`: a value left out (it was dropped, and the others shifted)
                        flag = flags[f"{targets[0][0]}.{targets[0][1]}"]
                        raise InputError(f"{flag}: an empty value in {','.join(map(str, given))!r}; "
                                         "give every value, separated by commas")
                for group, dotted in targets:
                    _set(values[group], dotted, value)
            built = {group: _build(model, values[group], group, flags) for group, (model, _) in groups.items()}
            return func(**kwargs, **built)

        command.__signature__ = signature.replace(parameters=kept + options)
        return command

    return decorate


def _option(keyword: str, flag: str, model: type[BaseModel], dotted: str) -> inspect.Parameter:
    info = _field(model, dotted)
    kind = _cli_type(info.annotation)
    help_text = plain(" ".join((info.description or "").split()))
    default = info.get_default(call_default_factory=True)
    parent = ".".join([model.__name__, *dotted.split(".")[:-1]])
    wording = DEFAULT_WORDING.get(parent, "{}")
    if default is not None or "{}" not in wording:
        help_text += f" (default: {wording.format(_shown(default))})"
    if kind == list[str]:
        help_text += " Comma-separated, or the option repeated."
    decl = f"{flag}/--no-{flag.lstrip('-')}" if kind is bool else flag
    option = typer.Option(decl, help=help_text, show_default=False)
    annotation = Annotated[Optional[kind], option]  # noqa: UP007 (typer needs Optional here)
    return inspect.Parameter(keyword, inspect.Parameter.KEYWORD_ONLY, default=None, annotation=annotation)


#: A Sphinx cross-reference in a field's docstring (``:mod:`segpipe.x```, ``:func:`~a.b```).
_ROLE = re.compile(r":(?:mod|func|class|meth|attr|data):`~?([^`]+)`")


def plain(text: str) -> str:
    """A field's docstring as a terminal shows it: cross-references as their names, ````code```` as `code`."""
    return _ROLE.sub(r"\1", text).replace("``", "`")


def _field(model: type[BaseModel], dotted: str):
    *parents, last = dotted.split(".")
    for name in parents:
        model = model.model_fields[name].annotation
    return model.model_fields[last]


def _cli_type(annotation) -> type:
    """The plain type typer can parse for a field (pydantic then checks the value)."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType) and len(args) == 1:
        return _cli_type(args[0])
    if origin in (tuple, list):
        return list[str]
    if origin is typing.Literal:
        return type(args[0])
    return annotation if annotation in (int, float, str, bool) else str


def _shown(value: Any) -> str:
    if isinstance(value, tuple | list):
        return ", ".join(map(str, value))
    return str(value).lower() if isinstance(value, bool) else str(value)


def _set(values: dict, dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for name in parents:
        values = values.setdefault(name, {})
    values[last] = value


def _build(model: type[BaseModel], values: dict, group: str, flags: dict[str, str]) -> BaseModel:
    try:
        return model.model_validate(values)
    except ValidationError as err:
        problems = []
        for item in err.errors():
            dotted = ".".join(str(p) for p in item["loc"] if not re.match(r"^\d+$", str(p)))
            flag = flags.get(f"{group}.{dotted}", dotted)
            message = item["msg"].removeprefix("Value error, ")
            if item["type"] in ("literal_error", "enum") and isinstance(item.get("input"), str | int | float):
                message += f" (got {item['input']!r})"
            problems.append(f"{flag}: {message}" if flag else message)  # a check of the options together names them
        raise InputError("; ".join(problems)) from None
