"""The `report:` section: how the tables, figures and pooled metrics state their uncertainty.
Read by `unilearn aggregate` and `unilearn tables` only: not in the pre-training or fine-tuning
config hash (changing it re-runs no training)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from unilearn.config.fields import Fraction, PositiveInt, Strict


class BootstrapConfig(Strict):
    # resamples of the test clips (within each fold, then pooled) behind every 95% interval and
    # paired comparison (unilearn.report.bootstrap)
    resamples: PositiveInt = 10_000
    confidence: Fraction = 0.95  # of the percentile intervals
    seed: Annotated[int, Field(ge=0)] = 0  # fixed: a table's intervals are reproducible


class ReportConfig(Strict):
    bootstrap: BootstrapConfig = BootstrapConfig()
