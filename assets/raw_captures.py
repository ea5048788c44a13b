"""raw_captures: an upload batch → the captures and quarantine tables, gated by checks."""

from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetExecutionContext,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from assets.execution import CPU_TAGS, retried_on_store_outage
from assets.partitions import batch_check, capture_batches
from assets.reporting import check_result, picture_metadata, table_metadata
from dataset_pipeline import layout
from dataset_pipeline.formats.robot_dataset import RobotDatasetError
from dataset_pipeline.raw_captures import (
    ManifestError,
    captures_verdict,
    contact_sheet_png,
    ingest_batch,
    quarantine_verdict,
    summarize_captures,
    write_ingest,
)
from dataset_pipeline.robot_datasets import ensure_sampled, is_dataset_batch
from dataset_pipeline.store import StoreError
from resources import CaptureRules, DatasetStoreResource, RobotEnvironments


@asset(
    op_tags=CPU_TAGS,
    partitions_def=capture_batches,
    group_name="ingestion",
    kinds={"parquet"},
    description="Every image of an upload batch decoded and checksummed, with the manifest's provenance; "
    "unusable images go to the quarantine table with the reason. A robot dataset's upload (LeRobot, RLDS, "
    "episode HDF5) is first sampled into frames (RLDS through tensorflow-datasets, via Dagster Pipes).",
)
@retried_on_store_outage
def raw_captures(
    context: AssetExecutionContext,
    dataset_store: DatasetStoreResource,
    capture_rules: CaptureRules,
    robot_environments: RobotEnvironments,
) -> MaterializeResult:
    store = dataset_store.get_store()
    batch = context.partition_key
    source: dict[str, Any] | None = None
    try:
        if is_dataset_batch(store, batch):
            sampled, source = ensure_sampled(store, batch, launcher=robot_environments.launcher(context))
            context.log.info(
                f"batch {batch}: {source['kind']} {source['version']} dataset, "
                + (
                    f"{sampled.frames} frames sampled from {len(sampled.source.episodes)} episodes, "
                    f"{len(sampled.quarantined)} quarantined"
                    if sampled is not None
                    else "already sampled with the marker's settings"
                )
            )
        result = ingest_batch(store, batch, max_pixels=capture_rules.max_pixels)
    except RobotDatasetError as exc:
        raise Failure(description=f"batch {batch!r}: {exc}", allow_retries=False) from None
    except ManifestError as exc:
        # Nothing was written: the batch is refused whole, with the file, row and column named.
        raise Failure(description=str(exc), allow_retries=False) from None
    except StoreError as exc:
        raise Failure(description=f"batch {batch!r}: {exc}") from exc
    write_ingest(store, result)
    n_images = len(result.captures)
    metadata: dict[str, Any] = {
        "images": n_images,
        "quarantined": len(result.quarantine),
        "quarantine_share": round(result.quarantine_share, 4),
        "unlisted_files": len(result.unlisted_files),
        "seconds": round(result.seconds, 2),
        "images_per_second": round(n_images / result.seconds, 1) if result.seconds else 0.0,
        "scenes": int(result.captures["scene_id"].nunique()) if n_images else 0,
        "captures_table": MetadataValue.path(store.url(layout.captures_key(batch))),
        "quarantine_table": MetadataValue.path(store.url(layout.quarantine_key(batch))),
        "images per scene and lighting": MetadataValue.md(
            summarize_captures(result.captures).to_markdown() if n_images else "_no images_"
        ),
        "quarantine": table_metadata(result.quarantine),
    }
    if source is not None:
        metadata["robot dataset"] = MetadataValue.json(
            {
                k: source[k]
                for k in (
                    "kind",
                    "version",
                    "robot_type",
                    "fps",
                    "cameras",
                    "episodes",
                    "frames",
                    "tasks",
                    "settings",
                    "quarantined_episodes",
                )
                if k in source
            }
        )
    metadata |= picture_metadata(
        store, layout.contact_sheet_preview(batch), contact_sheet_png(result), "contact sheet"
    )
    context.log.info(
        f"batch {batch}: {n_images} images ingested, {len(result.quarantine)} quarantined "
        f"in {result.seconds:.1f} s"
    )
    return MaterializeResult(metadata=metadata)


@batch_check(
    asset=raw_captures,
    blocking=True,
    description="Great Expectations suite on the captures table: required columns present and not null, "
    "sizes in range, lighting in the configured set, image_id and sha256 unique.",
)
def captures_table_expectations(
    context: AssetCheckExecutionContext, dataset_store: DatasetStoreResource, capture_rules: CaptureRules
) -> AssetCheckResult:
    captures = dataset_store.get_store().read_parquet(layout.captures_key(context.partition_key))
    return check_result(
        captures_verdict(
            captures, capture_rules.allowed_lighting, capture_rules.min_side_px, capture_rules.max_side_px
        ),
        resource="capture_rules",
    )


@batch_check(
    asset=raw_captures,
    blocking=True,
    description="The share of the batch's images that were quarantined is under the configured limit "
    "(or fewer images than `min_quarantined_to_block` were).",
)
def quarantine_share_under_limit(
    context: AssetCheckExecutionContext, dataset_store: DatasetStoreResource, capture_rules: CaptureRules
) -> AssetCheckResult:
    store = dataset_store.get_store()
    batch = context.partition_key
    return check_result(
        quarantine_verdict(
            store.read_parquet(layout.captures_key(batch)),
            store.read_parquet(layout.quarantine_key(batch)),
            capture_rules.max_quarantine_share,
            capture_rules.min_quarantined_to_block,
        ),
        resource="capture_rules",
    )


RAW_CAPTURES_CHECKS = [captures_table_expectations, quarantine_share_under_limit]
