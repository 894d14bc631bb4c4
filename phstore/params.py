"""Parameters are frozen dataclasses whose fields say what they are.

A field made with :func:`param` carries its help text, unit and choices; the command line and
pipeline files offer exactly those fields as options, with their defaults
(:mod:`phstore.commands.options`). A field made without it (e.g. a model's input features) is
set by the code that builds the dataclass. The metadata never enters a provenance key
(:func:`dataclasses.asdict` ignores it). This module imports nothing heavy, so ``phstore
--help`` builds its parser without importing Dask, xarray or torch.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence


def param(default: Any, help: str, unit: str | None = None, choices: Sequence[Any] | None = None) -> Any:
    """A dataclass field offered as an option: ``help`` says what it is, ``unit`` its unit
    (shown as "Å", "Å²", "s", ...), ``choices`` its allowed values."""
    return dataclasses.field(
        default=default, metadata={"help": help, "unit": unit, "choices": tuple(choices) if choices else None}
    )


def from_dict(cls: type, values: dict[str, Any]) -> Any:
    """The parameter dataclass ``cls`` from its :func:`dataclasses.asdict` (as JSON keeps it:
    lists where the fields hold tuples)."""

    def frozen(v: Any) -> Any:
        return tuple(frozen(x) for x in v) if isinstance(v, list) else v

    return cls(**{k: frozen(v) for k, v in values.items()})


#: A stored feature: (descriptor name, variable), e.g. ("ph", "histogram") or ("soap", "mean").
Feature = tuple[str, str]
