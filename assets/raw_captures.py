"""raw_captures: an upload batch → the captures and quarantine tables, gated by checks."""

import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    Backoff,
    Failure,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    asset,
    asset_check,
)

from assets.partitions import capture_batches
from assets.reporting import picture_metadata, table_metadata
from assets.tags import CPU_TAGS
from dataset_pipeline.captures import (
    ManifestError,
    captures_key,
    ingest_batch,
    quarantine_key,
    summarize_captures,
)
from dataset_pipeline.figures import contact_sheet, png_bytes
from dataset_pipeline.store import StoreError, join_key
from dataset_pipeline.validation import captures_suite, validate_table
from resources import CaptureRules, DatasetStoreResource

STORE_RETRY = RetryPolicy(max_retries=3, delay=2, backoff=Backoff.EXPONENTIAL)


@asset(
    op_tags=CPU_TAGS,
    partitions_def=capture_batches,
    group_name="ingestion",
    kinds={"parquet"},
    retry_policy=STORE_RETRY,
    description="Every image of an upload batch decoded and checksummed, with the manifest's provenance; "
    "unusable images go to the quarantine table with the reason.",
)
def raw_captures(
    context: AssetExecutionContext, dataset_store: DatasetStoreResource, capture_rules: CaptureRules
) -> MaterializeResult:
    store = dataset_store.get_store()
    batch = context.partition_key
    try:
        result = ingest_batch(store, batch, max_pixels=capture_rules.max_pixels)
    except ManifestError as exc:
        # Nothing was written: the batch is refused whole, with the file, row and column named.
        raise Failure(description=str(exc), allow_retries=False) from None
    except StoreError as exc:
        raise Failure(description=f"batch {batch!r}: {exc}") from exc
    store.write_parquet(captures_key(batch), result.captures)
    store.write_parquet(quarantine_key(batch), result.quarantine)

    captions = list(result.thumbnails)
    sheet = png_bytes(contact_sheet(list(result.thumbnails.values()), [c.split("/")[-1] for c in captions]))
    n_images = len(result.captures)
    metadata = {
        "images": n_images,
        "quarantined": len(result.quarantine),
        "quarantine_share": round(result.quarantine_share, 4),
        "unlisted_files": len(result.unlisted_files),
        "seconds": round(result.seconds, 2),
        "images_per_second": round(n_images / result.seconds, 1) if result.seconds else 0.0,
        "scenes": int(result.captures["scene_id"].nunique()) if n_images else 0,
        "captures_table": MetadataValue.path(store.url(captures_key(batch))),
        "quarantine_table": MetadataValue.path(store.url(quarantine_key(batch))),
        "images per scene and lighting": MetadataValue.md(
            summarize_captures(result.captures).to_markdown() if n_images else "_no images_"
        ),
        "quarantine": table_metadata(result.quarantine),
    }
    metadata |= picture_metadata(
        store, join_key("previews", "raw_captures", batch, "contact_sheet.png"), sheet, "contact sheet"
    )
    context.log.info(
        f"batch {batch}: {n_images} images ingested, {len(result.quarantine)} quarantined "
        f"in {result.seconds:.1f} s"
    )
    return MaterializeResult(metadata=metadata)


@asset_check(
    asset=raw_captures,
    blocking=True,
    partitions_def=capture_batches,
    description="Great Expectations suite on the captures table: required columns present and not null, "
    "sizes in range, lighting in the configured set, image_id and sha256 unique.",
)
def captures_table_expectations(
    context: AssetCheckExecutionContext, dataset_store: DatasetStoreResource, capture_rules: CaptureRules
) -> AssetCheckResult:
    store = dataset_store.get_store()
    captures = store.read_parquet(captures_key(context.partition_key))
    suite = captures_suite(
        capture_rules.allowed_lighting, capture_rules.min_side_px, capture_rules.max_side_px
    )
    report = validate_table(captures, suite, name="captures", id_column="image_id")
    return AssetCheckResult(
        passed=report.success and len(captures) > 0,
        description=report.summary() if len(captures) else "the batch has no usable image",
        metadata={
            "rows": report.rows,
            "expectations_failed": len(report.failed),
            "expectations": table_metadata(pd.DataFrame(report.as_rows()), max_rows=len(report.outcomes)),
        },
    )


@asset_check(
    asset=raw_captures,
    blocking=True,
    partitions_def=capture_batches,
    description="The share of the batch's images that were quarantined is under the configured limit.",
)
def quarantine_share_under_limit(
    context: AssetCheckExecutionContext, dataset_store: DatasetStoreResource, capture_rules: CaptureRules
) -> AssetCheckResult:
    store = dataset_store.get_store()
    batch = context.partition_key
    captures = store.read_parquet(captures_key(batch))
    quarantine = store.read_parquet(quarantine_key(batch))
    total = len(captures) + len(quarantine)
    share = len(quarantine) / total if total else 1.0
    limit = capture_rules.max_quarantine_share
    reasons = quarantine["reason"].str.split(":").str[0].value_counts().to_dict() if len(quarantine) else {}
    return AssetCheckResult(
        passed=share <= limit,
        severity=AssetCheckSeverity.ERROR,
        description=(
            f"{len(quarantine)} of {total} images quarantined ({share:.1%}, limit {limit:.1%})"
            + (
                f"; reasons: {reasons}; files: {quarantine['image_file'].head(10).tolist()}"
                if reasons
                else ""
            )
        ),
        metadata={"quarantined": len(quarantine), "images": total, "share": round(share, 4), "limit": limit},
    )
