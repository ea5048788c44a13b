"""Metadata helpers shared by the assets: DataFrames, pictures and verdicts for the Dagster UI."""

from __future__ import annotations

from typing import Any

import pandas as pd
from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    MetadataValue,
    TableColumn,
    TableRecord,
    TableSchema,
)

from dataset_pipeline.figures import markdown_image
from dataset_pipeline.store import DatasetStore
from dataset_pipeline.verdicts import Verdict


def table_metadata(frame: pd.DataFrame, max_rows: int = 50) -> MetadataValue:
    """A DataFrame as a Dagster table (first ``max_rows`` rows), column types from its dtypes."""
    frame = frame.head(max_rows)
    kinds = {"i": "int", "u": "int", "f": "float", "b": "bool"}
    schema = TableSchema(
        columns=[
            TableColumn(name=str(c), type=kinds.get(frame[c].dtype.kind, "string")) for c in frame.columns
        ]
    )
    records = [
        TableRecord({str(k): _plain(v) for k, v in row.items()}) for row in frame.to_dict(orient="records")
    ]
    return MetadataValue.table(records=records, schema=schema)


def picture_metadata(store: DatasetStore, key: str, png: bytes, title: str) -> dict[str, MetadataValue]:
    """Write the full-size PNG to the store and return metadata that shows it inline and names its path."""
    store.write_bytes(key, png)
    return {
        title: MetadataValue.md(markdown_image(png, title)),
        f"{title} (full size)": MetadataValue.path(store.url(key)),
    }


def check_result(
    verdict: Verdict, *, resource: str | None = None, warn: bool = False, **kwargs: Any
) -> AssetCheckResult:
    """A domain verdict as Dagster's check result: its figures and tables as metadata; a failure
    names the settings that decide it (fields of ``resource``) and how to change them.

    ``warn`` marks a non-blocking check's failure as a warning (a verdict may say so itself: a
    warning does not stop what follows a blocking check); ``kwargs`` go to :class:`AssetCheckResult`
    (``check_name`` in a multi-check).
    """
    metadata: dict[str, Any] = dict(verdict.figures)
    metadata |= {name: table_metadata(frame, max_rows=len(frame)) for name, frame in verdict.tables.items()}
    description = verdict.summary
    if not verdict.passed and verdict.settings and resource:
        description += "\n" + settings_hint(resource, verdict.settings)
    return AssetCheckResult(
        passed=verdict.passed,
        severity=AssetCheckSeverity.WARN if warn or verdict.warning else AssetCheckSeverity.ERROR,
        description=description,
        metadata=metadata,
        **kwargs,
    )


def settings_hint(resource: str, settings: dict[str, object]) -> str:
    """Which settings decide a check, their values, and where a person changes them (a setting of
    another resource is named ``resource.field``).

    >>> print(settings_hint("capture_rules", {"max_quarantine_share": 0.05}))
    Decided by capture_rules.max_quarantine_share = 0.05. To change it: the launchpad (Resources → capture_rules → max_quarantine_share) or run config `resources: {capture_rules: {config: {max_quarantine_share: ...}}}`.
    """
    named = {(name if "." in name else f"{resource}.{name}"): value for name, value in settings.items()}
    values = ", ".join(f"{name} = {value!r}" for name, value in named.items())
    owner, _, field_name = next(iter(named)).partition(".")
    return (
        f"Decided by {values}. To change {'it' if len(named) == 1 else 'them'}: the launchpad "
        f"(Resources → {owner} → {field_name}) or run config "
        f"`resources: {{{owner}: {{config: {{{field_name}: ...}}}}}}`."
    )


def _plain(value: object) -> str | int | float | bool | None:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return None
    if hasattr(value, "item"):
        return value.item()  # numpy scalar
    if isinstance(value, (int, float, bool, str)):
        return value
    return str(value)
