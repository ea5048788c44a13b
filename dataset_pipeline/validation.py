"""Table validation with Great Expectations, run in memory: statistics → report → summary.

A suite is a list of :class:`Expectation` (plain data: the GE expectation's class name
and its keyword arguments), written by the stage it gates (``raw_captures.captures_suite``).
:func:`validate_table` runs it on a DataFrame in an
ephemeral GE context and returns a :class:`ValidationReport` that names, for each
failed expectation, the offending ids (``id_column``) and values, so a gating check
can say exactly which rows are wrong.

Great Expectations takes ~5 s to import; it is imported inside :func:`validate_table`
only, never when the code location loads.
"""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass, field
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class Expectation:
    """One expectation: a Great Expectations class name and its arguments."""

    type: str
    kwargs: dict[str, Any]

    def describe(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.kwargs.items())
        return f"{self.type}({args})"


@dataclass(frozen=True)
class ExpectationOutcome:
    """The result of one expectation on one table."""

    expectation: Expectation
    success: bool
    unexpected_count: int = 0
    offending_ids: list[str] = field(default_factory=list)
    offending_values: list[Any] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class ValidationReport:
    """All outcomes of a suite on one table."""

    suite: str
    rows: int
    outcomes: list[ExpectationOutcome]

    @property
    def success(self) -> bool:
        return all(o.success for o in self.outcomes)

    @property
    def failed(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    def summary(self, max_ids: int = 10) -> str:
        """One line per failed expectation with the offending ids, or a pass line."""
        if self.success:
            return f"{self.suite}: all {len(self.outcomes)} expectations pass on {self.rows} rows"
        lines = [
            f"{self.suite}: {len(self.failed)} of {len(self.outcomes)} expectations fail on {self.rows} rows"
        ]
        for outcome in self.failed:
            detail = outcome.error or (
                f"{outcome.unexpected_count} row(s), e.g. ids {outcome.offending_ids[:max_ids]}"
                f" values {outcome.offending_values[:max_ids]}"
            )
            lines.append(f"- {outcome.expectation.describe()}: {detail}")
        return "\n".join(lines)

    def as_rows(self) -> list[dict[str, Any]]:
        """One dict per expectation, for a UI table."""
        return [
            {
                "expectation": o.expectation.type,
                "column": str(o.expectation.kwargs.get("column", "")),
                "passed": o.success,
                "unexpected": o.unexpected_count,
                "examples": ", ".join(map(str, o.offending_ids[:3])),
            }
            for o in self.outcomes
        ]


def validate_table(
    frame: pd.DataFrame, suite: list[Expectation], *, name: str, id_column: str | None = None
) -> ValidationReport:
    """Run ``suite`` on ``frame`` in an in-memory Great Expectations context."""
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    table = frame.reset_index(drop=True)
    # get_context() hands back one shared context per process: a unique source name keeps
    # each validation on its own DataFrame.
    source = f"{name}-{uuid.uuid4().hex}"
    batch = (
        context.data_sources.add_pandas(source)
        .add_dataframe_asset(f"{name}_table")
        .add_batch_definition_whole_dataframe("whole_table")
        .get_batch(batch_parameters={"dataframe": table})
    )
    gx_suite = gx.ExpectationSuite(name=name)
    keys = []
    for expectation in suite:
        gx_expectation = getattr(gx.expectations, expectation.type)(**expectation.kwargs)
        keys.append(_config_key(gx_expectation.configuration))
        gx_suite.add_expectation(gx_expectation)
    try:
        result = batch.validate(gx_suite, result_format="COMPLETE")
    finally:
        context.data_sources.delete(source)
    by_key = {_config_key(res.expectation_config): res for res in result.results}  # GE reorders

    outcomes = []
    for expectation, key in zip(suite, keys, strict=True):
        res = by_key[key]
        details = res.result or {}
        indices = details.get("unexpected_index_list") or []
        ids = (
            [str(table.at[i, id_column]) for i in indices if isinstance(i, int)]
            if id_column and id_column in table.columns
            else [str(i) for i in indices]
        )
        error = _exception_message(res.exception_info)
        column = expectation.kwargs.get("column")
        if not res.success and column is not None and column not in table.columns:
            error = f"column {column!r} is missing"
        outcomes.append(
            ExpectationOutcome(
                expectation=expectation,
                success=bool(res.success),
                unexpected_count=int(details.get("unexpected_count") or 0),
                offending_ids=ids,
                offending_values=list(details.get("partial_unexpected_list") or [])[:20],
                error=error,
            )
        )
    return ValidationReport(suite=name, rows=len(table), outcomes=outcomes)


def _exception_message(info: Any) -> str | None:
    """The message of an exception GE caught while computing a metric (its info may be nested)."""
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    for value in info.values():
        message = _exception_message(value)
        if message:
            return message
    return None


def _config_key(config: Any) -> tuple[str, str]:
    """Identify an expectation by its type and arguments (GE adds batch_id to results' kwargs)."""
    kwargs = {k: v for k, v in dict(config.kwargs).items() if k != "batch_id" and v is not None}
    return str(config.type), repr(sorted(kwargs.items()))
