"""Options declared once beside their config fields (`cache.runtime.options`): the command line
gives exactly the configs' settings, with their docstrings as help and their defaults as its own."""

from dataclasses import dataclass, fields
from enum import StrEnum
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from cache.runtime.options import OPTION, as_member, choice_of, field_docs, from_flags, nested, options, setting
from cache.teacher.config import AugmentConfig, DumpConfig, FinetuneConfig, InitConfig
from cli import cli
from student.config import TrainConfig

COMMANDS = {"dump-teacher": (DumpConfig, ["--task", "sst2", "--data", "d", "--out", "c"]),
            "augment": (AugmentConfig, ["--task", "sst2", "--data", "d", "--out", "o"]),
            "init-student": (InitConfig, ["--teacher", "t", "--out", "o"]),
            "finetune-teacher": (FinetuneConfig, ["--task", "sst2", "--data", "d", "--out", "o"]),
            "train-student": (TrainConfig, ["--cache", "c", "--out", "o"])}


class Colour(StrEnum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True)
class Inner:
    first: str = setting("a", flag="--first-name")
    """The first."""
    second: int = setting(2, type=int)
    """The second."""
    third: bool = setting(False, is_flag=True)
    """The third, never a flag where `only` leaves it out."""


@dataclass(frozen=True)
class Outer:
    """A config as the commands' are."""

    path: Path = setting(type=click.Path(path_type=Path))
    """Where it goes,
    on two lines."""
    colour: Colour = setting(Colour.RED, type=choice_of(Colour), callback=as_member(Colour))
    """Which colour."""
    words: tuple[str, ...] | None = setting(None, typed_default="x,y", callback=lambda c, p, v: tuple(v.split(",")))
    """Comma-separated words."""
    inner: Inner = nested(Inner, only=("first", "second"))
    internal: float = 0.5


@click.command(context_settings={"show_default": True})
@options(Outer)
def command(**flags):
    click.echo(repr(from_flags(Outer, flags)))


def test_a_fields_docstring_is_the_string_under_it():
    assert field_docs(Outer) == {"path": "Where it goes, on two lines.", "colour": "Which colour.",
                                 "words": "Comma-separated words."}


def test_flags_build_the_config_they_declare():
    result = CliRunner().invoke(command, ["--path", "p", "--colour", "blue", "--first-name", "z", "--second", "5"])
    assert result.exit_code == 0, result.output
    expected = Outer(Path("p"), Colour.BLUE, ("x", "y"), Inner("z", 5, False))
    assert result.output.strip() == repr(expected)  # the colour a member of Colour: <Colour.BLUE: 'blue'>


def test_help_is_the_docstring_and_nothing_is_exposed_twice_or_uninvited():
    result = CliRunner().invoke(command, ["--help"])
    assert "Where it goes, on two lines." in result.output and "[default: x,y]" in result.output
    assert "--third" not in result.output and "--internal" not in result.output
    missing = CliRunner().invoke(command, [])
    assert missing.exit_code == 2 and "Missing option '--path'" in missing.output


def test_a_setting_without_a_docstring_is_refused_at_once():
    @dataclass(frozen=True)
    class Undocumented:
        size: int = setting(1, type=int)

    with pytest.raises(TypeError, match="Undocumented.size: a setting needs a docstring"):
        options(Undocumented)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_command_defaults_to_its_configs_defaults(name, tmp_path):
    """Every option of a command is a setting of its config, and the command line's defaults are
    the config's own: only the required flags given, the config equals one built in Python."""
    config_class, required = COMMANDS[name]
    command = cli.commands[name]
    context = command.make_context(name, list(required))
    built = from_flags(config_class, context.params)
    values = dict(zip(required[::2], required[1::2], strict=True))
    expected = config_class(**{f.name: _typed(f, values[f"--{f.name.replace('_', '-')}"]) for f in fields(config_class)
                               if OPTION in f.metadata and f.metadata[OPTION].required})
    assert built == expected
    declared = {option.name for option in command.params if isinstance(option, click.Option)} - {"help"}
    assert declared == {name for name in context.params}


def _typed(item, text):
    return item.metadata[OPTION].type.convert(text, None, None) if item.metadata[OPTION].type else text
