"""The building blocks of the config sections: the strict base model (a misspelt key is an
error), the typed fields the sections share, and `ConfigError` with the turning of pydantic's
errors into lines that name the dotted key.

Every config mistake reaches the user as a `ConfigError` whose message names the file or override
and the key, with a did-you-mean for misspelt keys.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from unilearn.catalogue import (
    CLASSIFIER_ARCHS,
    DFER_DATASETS,
    FINETUNE_DATASETS,
    PRETRAIN_MODES,
    TASKS,
)

DatasetName = Literal[FINETUNE_DATASETS]
DferDataset = Literal[DFER_DATASETS]
PretrainMode = Literal[tuple(PRETRAIN_MODES)]
Arch = Literal[CLASSIFIER_ARCHS]
Task = Literal[TASKS]
Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]
PositiveInt = Annotated[int, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0.0)]
UnitFloat = Annotated[float, Field(gt=0.0, le=1.0)]


class Strict(BaseModel):
    # extra="forbid": a misspelt key is an error, never silently ignored.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


def expand_path(v: str | None) -> str | None:
    """`~` and `$VARS` in paths are expanded, so one local.yaml serves every user of a cluster."""
    return None if v is None else os.path.expandvars(os.path.expanduser(v))


# -- errors ----------------------------------------------------------------------------------
Model = TypeVar("Model", bound=BaseModel)


class ConfigError(ValueError):
    """A config file or override is invalid; the message names the file and the dotted key."""


def did_you_mean(word: str, options: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for a close option, else the list of options."""
    close = difflib.get_close_matches(word, list(options), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else f" (expected one of {sorted(options)})"


def validated(raw: Mapping[str, Any], schema: type[Model]) -> Model:
    """`schema.model_validate(raw)`, its errors as one `ConfigError`."""
    try:
        return schema.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_errors(e)) from None


def format_errors(e: ValidationError) -> str:
    return "; ".join(error_lines(e))


def error_lines(e: ValidationError, skip_unknown: bool = False) -> list[str]:
    """One line per pydantic error; `skip_unknown` leaves out the unknown keys (reported already)."""
    lines = []
    for err in e.errors(include_url=False):
        if skip_unknown and err["type"] == "extra_forbidden":
            continue
        loc = ".".join(str(p) for p in err["loc"] if not str(p).startswith("function-"))
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        got = err.get("input")
        shown = (
            ""
            if isinstance(got, (dict, list)) or err["type"] == "extra_forbidden"
            else f" (got {got!r})"
        )
        lines.append(f"{loc}: {msg}{shown}" if loc else msg)
    return lines
