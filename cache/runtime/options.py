"""Command-line options declared once, beside the config field each one sets.

A config field that the command line sets is declared with `setting(...)`: its default, and what
click needs to parse it (a type, a flag name, a callback). Its help is the field's docstring, the
string literal under it, so a setting is documented once, where it is defined. `options(Config)`
gives a command every such option of a config (and of the configs it nests), and
`from_flags(Config, flags)` builds the config from what click parsed. A field holding a config
of its own (`nested`) gives its settings too, all of them or some.

Only click is imported here: the command line checks its flags before torch or transformers load.
"""

import ast
import inspect
import json
import math
from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar, get_type_hints

import click

from cache.runtime.paths import as_target, is_url

OPTION, NESTED = "option", "nested"
"""Keys of a field's metadata: its `Option`, or the settings it takes from the config it holds."""
ANY = object()
"""An `Option.typed_default` that keeps the field's own."""
C = TypeVar("C")


@dataclass(frozen=True)
class Option:
    """How a config field is given on the command line."""

    type: Any = None
    """A click type (default: from the field's default value, as click infers it)."""
    flag: str | None = None
    """The flag (default: --field-name)."""
    required: bool = False
    is_flag: bool = False
    metavar: str | None = None
    callback: Callable | None = None
    """Turns the parsed text into the field's value (click's callback signature)."""
    typed_default: Any = ANY
    """The flag's default as typed, where it is not the field's (the callback parses it)."""


def setting(default: Any = MISSING, **option: Any) -> Any:
    """A config field the command line sets (`Option`'s keywords); no default: a required option."""
    if default is MISSING:
        option.setdefault("required", True)
    return field(default=default, metadata={OPTION: Option(**option)})


def nested(config: type, only: tuple[str, ...] | None = None) -> Any:
    """A field holding a config of its own, whose settings (or the settings `only`) the command
    line gives; the others keep their defaults."""
    return field(default_factory=config, metadata={NESTED: only})


@dataclass(frozen=True)
class Declared:
    """One option of a command: the click parameter `name` sets the field `path` of the config."""

    name: str
    path: tuple[str, ...]
    option: Option
    help: str
    default: Any


def options(config: type) -> Callable:
    """A decorator adding the options of `config`'s settings to a click command, in field order."""
    declared = list(settings(config))

    def decorate(command: Callable) -> Callable:
        for item in reversed(declared):
            option = item.option
            flag = option.flag or f"--{item.path[-1].replace('_', '-')}"
            default = item.default.value if isinstance(item.default, Enum) else item.default
            command = click.option(
                flag, item.name, required=option.required, is_flag=option.is_flag, metavar=option.metavar,
                callback=option.callback, help=item.help, **({} if option.required else {"default": default}),
                **({} if option.is_flag else {"type": option.type}))(command)
        return command

    return decorate


def from_flags(config: type[C], flags: dict[str, Any], path: tuple[str, ...] = ()) -> C:
    """The config (and the configs it holds) from the values click parsed; a field no option set
    keeps its default."""
    hints, values = get_type_hints(config), {}
    for item in fields(config):  # type: ignore[arg-type]
        name = "_".join((*path, item.name))
        if OPTION in item.metadata and name in flags:
            values[item.name] = flags[name]
        elif NESTED in item.metadata:
            values[item.name] = from_flags(hints[item.name], flags, (*path, item.name))
    return config(**values)


def settings(config: type, path: tuple[str, ...] = (), only: tuple[str, ...] | None = None):
    """Every `Declared` option of `config`, those of the configs it holds in their place."""
    hints, docs = get_type_hints(config), field_docs(config)
    for item in fields(config):
        if OPTION in item.metadata and (only is None or item.name in only):
            option: Option = item.metadata[OPTION]
            if item.name not in docs:
                raise TypeError(f"{config.__name__}.{item.name}: a setting needs a docstring, its --help")
            default = item.default if option.typed_default is ANY else option.typed_default
            yield Declared("_".join((*path, item.name)), (*path, item.name), option, docs[item.name],
                           None if default is MISSING else default)
        elif NESTED in item.metadata:
            yield from settings(hints[item.name], (*path, item.name), item.metadata[NESTED])


def field_docs(config: type) -> dict[str, str]:
    """The docstring of each field of a dataclass: the string literal right under it."""
    body = ast.parse(inspect.cleandoc(inspect.getsource(config))).body[0].body  # type: ignore[attr-defined]
    docs = {}
    for node, after in zip(body, body[1:], strict=False):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr) \
                and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
            docs[node.target.id] = " ".join(inspect.cleandoc(after.value.value).split())
    return docs


class FiniteFloat(click.FloatRange):
    """A float range that also refuses NaN and infinity (which compare false with every bound)."""

    name = "finite float"

    def convert(self, value, param, ctx):
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


POSITIVE = FiniteFloat(min=0, min_open=True)


class CacheLocation(click.ParamType):
    """A cache folder, or an fsspec URL (s3://bucket/prefix), kept as a string: a Path would fold its //."""

    name = "FOLDER|URL"

    def convert(self, value, param, ctx):
        return value if isinstance(value, Path) else as_target(value)


CACHE = CacheLocation()


class LocalPath(click.Path):
    """A local folder or file to write. A URL is refused: these commands write here (copy the
    result to a store afterwards); `suffixes`, where given, are the file types it may have."""

    def __init__(self, suffixes: tuple[str, ...] = ()):
        super().__init__(path_type=Path)
        self.suffixes = suffixes

    def convert(self, value, param, ctx):
        if isinstance(value, str) and is_url(value):
            self.fail(f"{value} is a URL; this command writes to a local path (copy the result to the store "
                      "afterwards)", param, ctx)
        path = super().convert(value, param, ctx)
        if self.suffixes and path.suffix.lower() not in self.suffixes:
            self.fail(f"{value}: the picture's type comes from its extension; use {', '.join(self.suffixes)}",
                      param, ctx)
        return path


LOCAL = LocalPath()
INPUT = click.Path(path_type=Path)


def parse_storage_options(ctx, param, value: str | None) -> dict | None:
    if value is None:
        return None
    try:
        options = json.loads(value)
    except json.JSONDecodeError as e:
        raise click.BadParameter(f"not JSON ({e})") from None
    if not isinstance(options, dict):
        raise click.BadParameter('a JSON object, e.g. \'{"anon": true}\'')
    return options


def parse_weights(ctx, param, value: str | None) -> tuple[float, ...] | None:
    if value is None:
        return None
    try:
        weights = tuple(float(part) for part in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not comma-separated numbers, e.g. 1,1,1,1,1,1") from None
    if not all(math.isfinite(w) and w >= 0 for w in weights):
        raise click.BadParameter(f"{value!r}: each weight is a finite number >= 0")
    return weights


def parse_layers(ctx, param, value: str) -> tuple[int, ...] | None:
    if value == "all":
        return None
    try:
        layers = tuple(int(part) for part in value.split(","))
    except ValueError:
        raise click.BadParameter("expected 'all' or comma-separated layer numbers, e.g. 0,2,4,6") from None
    if not layers or min(layers) < 0:
        raise click.BadParameter("layer numbers are >= 0 (0 = embedding output)")
    return layers


def parse_names(ctx, param, value: str | None) -> tuple[str, ...] | None:
    """Comma-separated names, in order."""
    return tuple(value.split(",")) if value else None


def choice_of(enum: type[Enum]) -> click.Choice:
    return click.Choice([member.value for member in enum])


def as_member(enum: type[Enum]) -> Callable:
    """A callback turning a choice back into the member of `enum` (None stays None)."""
    return lambda ctx, param, value: enum(value) if value is not None else None
