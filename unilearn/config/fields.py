"""The building blocks of the config sections: the strict base model (a misspelt key is an
error) and the typed fields the sections share."""

from __future__ import annotations

import os
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
)

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
