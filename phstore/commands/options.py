"""Command-line options: one description that the argument parser and pipeline files both read.

An :class:`Option` says how it is written on the command line (:meth:`Option.add_to`) and how a
pipeline file's value becomes command-line words (:meth:`Option.argv`), so a pipeline can say
exactly what a command line can. :func:`options_of` makes the options of a frozen parameter
dataclass from its fields' metadata (:func:`phstore.params.param`) and :func:`params_from`
makes the dataclass back from the parsed arguments.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from phstore.params import checked

#: How an option is written: ``store`` (``--x V``; ``nargs`` values), ``flag`` (``--x``: true),
#: ``switch`` (``--x`` / ``--no-x``), ``append`` (``--x V`` repeated), ``positional``.
ACTIONS = ("store", "flag", "switch", "append", "positional")


@dataclass(frozen=True)
class Option:
    """One option of a command; ``name`` is its Python name (``chunk_size`` → ``--chunk-size``)."""

    name: str
    help: str = ""
    type: Callable[[str], Any] = str
    default: Any = None
    nargs: int | str | None = None
    action: str = "store"
    choices: tuple[Any, ...] | None = None
    required: bool = False
    metavar: str | tuple[str, ...] | None = None
    group: str | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def add_to(self, parser: Any) -> None:
        """Add this option to an argument parser or one of its argument groups."""
        if self.action == "positional":
            parser.add_argument(self.name, nargs=self.nargs, help=self.help, metavar=self.metavar)
        elif self.action == "flag":
            parser.add_argument(self.flag, dest=self.name, action="store_true", help=self.help)
        elif self.action == "switch":
            parser.add_argument(
                self.flag, dest=self.name, action=argparse.BooleanOptionalAction, default=self.default, help=self.help
            )
        else:
            parser.add_argument(
                self.flag,
                dest=self.name,
                type=self.type,
                default=self.default,
                nargs=self.nargs,
                choices=self.choices,
                required=self.required,
                metavar=self.metavar,
                action="append" if self.action == "append" else "store",
                help=self.help,
            )

    def argv(self, value: Any) -> list[str]:
        """The command-line words that give this option ``value`` (a pipeline file's value:
        None leaves it out; a list gives several values or repeats an ``append`` option)."""
        if value is None:
            return []
        if self.action in ("flag", "switch"):
            if isinstance(value, str) and value.lower() in ("true", "false"):  # from a pipeline's vars
                value = value.lower() == "true"
            if not isinstance(value, bool):
                raise ValueError(f"{self.flag} takes true or false, not {value!r}")
            if self.action == "flag":
                return [self.flag] if value else []
            return [self.flag if value else "--no-" + self.flag[2:]]
        values = [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]
        if self.action == "positional":
            return values
        if self.action == "append":
            return [word for v in values for word in (self.flag, v)]
        return [self.flag, *values]


def _shown(value: Any) -> str:
    """A default as it would be typed: ``(0.0, 8.0)`` → ``0.0 8.0``."""
    return " ".join(map(str, value)) if isinstance(value, tuple) else str(value)


def _conversion(hint: Any) -> tuple[Callable[[str], Any], int | str | None, str]:
    """``(type, nargs, action)`` of a field's type hint: scalars, ``tuple[X, X]`` (a pair),
    ``tuple[X, ...]`` (one or more), ``bool`` (a switch), ``X | None``."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        return _conversion(args[0])
    if hint is bool:
        return bool, None, "switch"
    if typing.get_origin(hint) is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return args[0], "+", "store"
        return args[0], len(args), "store"
    return hint, None, "store"


def _fields(params: Any) -> list[tuple[dataclasses.Field, Any]]:
    """The described fields (made with :func:`~phstore.params.param`) and their type hints."""
    cls = params if isinstance(params, type) else type(params)
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls) if "help" in f.metadata]


def options_of(
    params: Any,
    prefix: str = "",
    group: str | None = None,
    rename: dict[str, str] | None = None,
    presets: dict[str, Any] | None = None,
) -> list[Option]:
    """An option for each described field of the parameter dataclass ``params`` (a class, or an
    instance whose values are the defaults); a nested parameter dataclass gives options named
    ``<field>_<its field>``. ``rename`` maps field names to option names. With ``presets``
    (name → instance) options default to None, "the chosen preset's", and their help shows each
    preset's value."""
    out: list[Option] = []
    for f, hint in _fields(params):
        default = getattr(params, f.name) if not isinstance(params, type) else f.default
        name = prefix + (rename or {}).get(f.name, f.name)
        if dataclasses.is_dataclass(hint):
            out += options_of(default, f"{name}_", f"{f.metadata['help']} (--{name}-* options)")
            continue
        type_, nargs, action = _conversion(hint)
        if action == "store":  # the value checked as it is parsed, with the option's name
            type_ = checked(type_, **{k: f.metadata[k] for k in ("low", "high", "positive") if k in f.metadata})
        unit = f.metadata["unit"]
        if presets:
            shown = "default: " + ", ".join(f"{k} {_shown(getattr(p, f.name))}" for k, p in presets.items())
        elif default is None:  # the help says what happens when it is not given
            shown = ""
        elif action == "switch":
            shown = f"default: {'on' if default else 'off'}"
        else:
            shown = f"default {_shown(default)}"
        said = "; ".join(s for s in (unit, shown) if s)
        text = f"{f.metadata['help']} ({said})" if said else f.metadata["help"]
        metavar = ("LOW", "HIGH") if nargs == 2 else None
        out.append(
            Option(
                name,
                text,
                type_,
                None if presets else default,
                nargs,
                action,
                f.metadata["choices"],
                metavar=metavar,
                group=group,
            )
        )
    return out


def params_from(params: Any, args: argparse.Namespace, prefix: str = "", rename: dict[str, str] | None = None) -> Any:
    """The parameter dataclass ``params`` (class or instance: the base) with the values of the
    options :func:`options_of` made for it; an option left at None keeps the base's value."""
    base = params() if isinstance(params, type) else params
    values = {}
    for f, hint in _fields(base):
        name = prefix + (rename or {}).get(f.name, f.name)
        if dataclasses.is_dataclass(hint):
            values[f.name] = params_from(getattr(base, f.name), args, f"{name}_")
            continue
        value = getattr(args, name)
        if value is not None:
            values[f.name] = tuple(value) if isinstance(value, list) else value
    return dataclasses.replace(base, **values)


def add_options(parser: argparse.ArgumentParser, options: Sequence[Option]) -> None:
    """Add ``options`` to ``parser``, each in its argument group (made once per title)."""
    groups: dict[str, Any] = {}
    for option in options:
        target = (
            parser if option.group is None else groups.setdefault(option.group, parser.add_argument_group(option.group))
        )
        option.add_to(target)
