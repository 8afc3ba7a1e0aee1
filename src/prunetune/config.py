"""Typed argument groups, and the CLI flags and YAML recipes derived from them.

A command is a plain function whose parameters are dataclasses ("argument groups"),
e.g. ``prune(model: ModelArgs, prune: PruneArgs, output: OutputArgs)``. Each field of a
group becomes a dashed flag (``keep_encoder`` -> ``--keep-encoder``) whose help text is
the field's ``help`` metadata, and a top-level key of a YAML recipe (``prune:
{ratio: 0.33}``). Validation lives in each dataclass's ``__post_init__`` and raises
:class:`~prunetune.errors.UsageError`, so the CLI, recipes and the Python API share it.

Precedence: dataclass defaults < recipe values < flags given on the command line.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import types
import typing
from pathlib import Path
from typing import Any, Callable, Literal

import yaml

from prunetune.errors import UsageError


def arg(default: Any = dataclasses.MISSING, help: str = "", *, positional: bool = False,
        default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with CLI metadata (``help`` text, optional positional)."""
    meta = {"help": help, "positional": positional}
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _split_list(text: str) -> list[str]:
    return [p.strip() for p in text.split(",") if p.strip()]


def coerce(value: Any, tp: Any, name: str) -> Any:
    """Convert a CLI string or YAML value to the field type ``tp``.

    Raises:
        UsageError: naming the field when the value does not fit.
    """
    tp, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise UsageError(f"{name}: a value is required")
    origin = typing.get_origin(tp)
    try:
        if origin is Literal:
            choices = typing.get_args(tp)
            if value not in choices:
                raise UsageError(f"{name}: {value!r} is not one of {', '.join(map(str, choices))}")
            return value
        if origin in (list, tuple):
            (item_tp, *_) = typing.get_args(tp) or (str,)
            items = _split_list(value) if isinstance(value, str) else list(value)
            return [coerce(v, item_tp, name) for v in items]
        if origin is dict or tp is dict:
            if not isinstance(value, dict):
                raise UsageError(f"{name}: expected a mapping")
            return value
        if tp is bool:
            if isinstance(value, bool):
                return value
            low = str(value).lower()
            if low in ("1", "true", "yes", "on"):
                return True
            if low in ("0", "false", "no", "off"):
                return False
            raise UsageError(f"{name}: {value!r} is not a boolean")
        if tp is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if tp is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if tp is Path:
            return Path(str(value)).expanduser()
        if tp is str:
            return str(value)
    except (TypeError, ValueError):
        raise UsageError(f"{name}: {value!r} is not a valid {getattr(tp, '__name__', tp)}") from None
    return value


def command_groups(fn: Callable) -> dict[str, type]:
    """The dataclass argument groups of a command, in signature order."""
    hints = typing.get_type_hints(fn)
    groups = {}
    for pname in inspect.signature(fn).parameters:
        tp = hints.get(pname)
        if not (isinstance(tp, type) and dataclasses.is_dataclass(tp)):
            raise TypeError(f"command {fn.__name__}: parameter {pname} must be a dataclass group")
        groups[pname] = tp
    return groups


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_command_arguments(parser: argparse.ArgumentParser, fn: Callable) -> None:
    """Add one argparse group per dataclass parameter of ``fn``.

    Defaults are suppressed so that only flags the user typed reach
    :func:`build_command_kwargs` and can override recipe values.
    """
    seen: dict[str, str] = {}
    for gname, cls in command_groups(fn).items():
        doc = (inspect.getdoc(cls) or gname).splitlines()[0]
        group = parser.add_argument_group(gname, doc)
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in seen:
                raise TypeError(f"flag --{f.name} defined by both {seen[f.name]} and {gname}")
            seen[f.name] = gname
            tp, _ = _unwrap_optional(hints[f.name])
            default = f.default if f.default is not dataclasses.MISSING else (
                f.default_factory() if f.default_factory is not dataclasses.MISSING else None)
            help_text = f.metadata.get("help", "")
            if default not in (None, "", []) and not f.metadata.get("positional"):
                shown = ",".join(map(str, default)) if isinstance(default, list) else default
                help_text = f"{help_text} (default: {shown})"
            kwargs: dict[str, Any] = {"help": help_text.replace("%", "%%"), "default": argparse.SUPPRESS,
                                      "dest": f"{gname}.{f.name}"}
            if typing.get_origin(tp) is Literal:
                kwargs["choices"] = typing.get_args(tp)
            if f.metadata.get("positional"):
                kwargs.pop("dest")
                parser_target = group
                parser_target.add_argument(f"{gname}.{f.name}", metavar=f.name.upper(),
                                           nargs="?", **kwargs)
                continue
            if tp is bool:
                kwargs["action"] = argparse.BooleanOptionalAction
            else:
                kwargs["metavar"] = f.name.upper() if typing.get_origin(tp) is not Literal else None
                if kwargs["metavar"] is None:
                    kwargs.pop("metavar")
            group.add_argument(_flag(f.name), **kwargs)


def load_recipe(path: str | Path) -> dict[str, Any]:
    """Read a YAML recipe into a nested dict (``{group: {field: value}}``)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"recipe {path} not found")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise UsageError(f"recipe {path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UsageError(f"recipe {path} must be a mapping of argument groups")
    return data


def build_command_kwargs(fn: Callable, recipe: dict[str, Any] | None = None,
                         cli: dict[str, Any] | None = None) -> dict[str, Any]:
    """Instantiate the argument groups of ``fn`` from a recipe and CLI values.

    Args:
        fn: the command function.
        recipe: nested ``{group: {field: value}}`` values, e.g. from :func:`load_recipe`.
        cli: flat ``{"group.field": value}`` values from argparse (strings or lists).

    Raises:
        UsageError: for unknown recipe keys or values that do not fit their fields.
    """
    groups = command_groups(fn)
    recipe = dict(recipe or {})
    cli = dict(cli or {})
    unknown = [k for k in recipe if k not in groups]
    if unknown:
        raise UsageError(f"unknown recipe key '{unknown[0]}' (known groups: {', '.join(groups)})")
    kwargs = {}
    for gname, cls in groups.items():
        section = recipe.get(gname) or {}
        if not isinstance(section, dict):
            raise UsageError(f"recipe key '{gname}' must be a mapping")
        hints = typing.get_type_hints(cls)
        names = {f.name for f in dataclasses.fields(cls)}
        bad = [k for k in section if k not in names]
        if bad:
            raise UsageError(f"unknown recipe key '{gname}.{bad[0]}' (known: {', '.join(sorted(names))})")
        values = {k: coerce(v, hints[k], f"{gname}.{k}") for k, v in section.items()}
        for key, v in cli.items():
            g, _, fname = key.partition(".")
            if g == gname and v is not None:
                values[fname] = coerce(v, hints[fname], _flag(fname))
        try:
            kwargs[gname] = cls(**values)
        except TypeError as exc:
            raise UsageError(f"{gname}: {exc}") from None
    return kwargs


def to_recipe(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The inverse of :func:`build_command_kwargs`: groups -> plain nested dict (for YAML/JSON)."""
    def plain(v: Any) -> Any:
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v
    return {g: {k: plain(v) for k, v in dataclasses.asdict(obj).items()} for g, obj in kwargs.items()}
