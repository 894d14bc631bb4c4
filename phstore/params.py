"""Parameters are frozen dataclasses whose fields say what they are.

A field made with :func:`param` carries its help text, unit, choices and the values it may take
(``low``/``high``, inclusive, or ``positive``); the command line and pipeline files offer exactly
those fields as options, with their defaults (:mod:`phstore.commands.options`). A field made
without it (e.g. a model's input features) is set by the code that builds the dataclass. The
metadata never enters a provenance key (:func:`dataclasses.asdict` ignores it).

Values are checked where they enter: a dataclass deriving from :class:`Parameters` checks its
fields when it is made, and an option checks its value when the command line is parsed
(:func:`checked`), so a bad value is one line naming it, never a broken store or a traceback
later. This module imports nothing heavy, so ``phstore --help`` builds its parser without
importing Dask, xarray or torch.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from typing import Any, Callable, Mapping, Sequence

from phstore.errors import PhstoreError

#: The longest time limit a setting takes, s (about 12 days; longer ones overflow timers).
MAX_SECONDS = 1e6

#: The rule keywords of :func:`param` and :func:`checked`.
RULES = ("low", "high", "positive", "increasing", "choices")


class ParameterError(PhstoreError, ValueError):
    """A parameter outside the values it may take."""


def param(
    default: Any,
    help: str,
    unit: str | None = None,
    choices: Sequence[Any] | None = None,
    *,
    low: float | None = None,
    high: float | None = None,
    positive: bool = False,
    increasing: bool = False,
) -> Any:
    """A dataclass field offered as an option: ``help`` says what it is, ``unit`` its unit
    (shown as "Å", "Å²", "s", ...), ``choices`` its allowed values. A number (or each number
    of a tuple) must be finite and within ``low``..``high`` (inclusive), above 0 when
    ``positive``; a pair marked ``increasing`` is a range whose first value is below its second."""
    rule = {"low": low, "high": high, "positive": positive, "increasing": increasing}
    return dataclasses.field(
        default=default,
        metadata={"help": help, "unit": unit, "choices": tuple(choices) if choices else None, **rule},
    )


def problem(value: Any, rule: Mapping[str, Any], unit: str | None = None) -> str | None:
    """What is wrong with ``value`` under ``rule`` (the keywords :data:`RULES`), or None when
    nothing is: "must be > 0 s, not 1e+308"."""
    if value is None:  # an optional value left out: its default applies
        return None
    if isinstance(value, (tuple, list)):
        for v in value:
            if (wrong := problem(v, {**rule, "increasing": False}, unit)) is not None:
                return wrong
        if rule.get("increasing") and any(a >= b for a, b in zip(value, value[1:])):
            return f"must be a range LOW HIGH with LOW < HIGH, not {' '.join(map(str, value))}"
        return None
    choices = rule.get("choices")
    if choices and value not in choices:
        return f"must be one of {', '.join(map(str, choices))}, not {value!r}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    low, high, positive = rule.get("low"), rule.get("high"), rule.get("positive")
    bounds = ["> 0"] if positive else []
    bounds += [f"≥ {low:g}"] if low is not None else []
    bounds += [f"≤ {high:g}"] if high is not None else []
    said = f"{' and '.join(bounds)}{' ' + unit if unit else ''}" if bounds else "a finite number"
    if (
        not math.isfinite(value)
        or (positive and value <= 0)
        or (low is not None and value < low)
        or (high is not None and value > high)
    ):
        return f"must be {said}, not {value!r}"
    return None


class Parameters:
    """The base of the parameter dataclasses: each field made with :func:`param` is checked
    when an instance is made, and a bad one raises :class:`ParameterError` naming it."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if "help" in f.metadata:
                require(f.name, getattr(self, f.name), f.metadata, f.metadata.get("unit"))


def require(name: str, value: Any, rule: Mapping[str, Any], unit: str | None = None) -> Any:
    """``value``, or :class:`ParameterError` ("time_limit must be > 0 s, not nan")."""
    wrong = problem(value, rule, unit)
    if wrong is not None:
        raise ParameterError(f"{name} {wrong}")
    return value


def checked(kind: Callable[[str], Any], **rule: Any) -> Callable[[str], Any]:
    """An argument parser's ``type``: the text converted by ``kind`` and checked against
    ``rule`` (the keywords of :func:`param`), so the parser names the option and says why."""

    def convert(text: str) -> Any:
        value = kind(text)  # a ValueError here: the parser's own "invalid int value"
        wrong = problem(value, rule)
        if wrong is not None:
            raise argparse.ArgumentTypeError(wrong)
        return value

    convert.__name__ = getattr(kind, "__name__", "value")
    return convert


def from_dict(cls: type, values: dict[str, Any]) -> Any:
    """The parameter dataclass ``cls`` from its :func:`dataclasses.asdict` (as JSON keeps it:
    lists where the fields hold tuples)."""

    def frozen(v: Any) -> Any:
        return tuple(frozen(x) for x in v) if isinstance(v, list) else v

    return cls(**{k: frozen(v) for k, v in values.items()})


#: A stored feature: (descriptor name, variable), e.g. ("ph", "histogram") or ("soap", "mean").
Feature = tuple[str, str]
