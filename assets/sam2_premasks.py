"""sam2_premasks: pre-masks for every image of a batch, on the GPU pool, gated by checks."""

import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from assets.partitions import capture_batches
from assets.raw_captures import STORE_RETRY, raw_captures
from assets.reporting import picture_metadata, table_metadata
from assets.tags import GPU_TAGS
from dataset_pipeline.captures import captures_key
from dataset_pipeline.figures import contact_sheet, distinct_colour, overlay, png_bytes
from dataset_pipeline.masks import rle_areas
from dataset_pipeline.sam2_premasks import (
    PromptError,
    class_counts,
    premask_batch,
    premasks_key,
    read_prompts,
)
from dataset_pipeline.store import join_key
from resources import DatasetStoreResource, Sam2Resource, TaxonomyResource

#: Op tags of every asset that wants a GPU (see docs/deploy.md for how executors use them).
REJECTED_SHARE_FLAG = 0.40


@asset(
    partitions_def=capture_batches,
    deps=[raw_captures],
    group_name="premasking",
    kinds={"pytorch", "parquet"},
    pool="gpu",
    op_tags=GPU_TAGS,
    retry_policy=STORE_RETRY,
    description="SAM 2 (or, without a checkpoint, classical GrabCut) masks for every captured image: "
    "prompted by the upload's detector boxes/points, automatic otherwise.",
)
def sam2_premasks(
    context: AssetExecutionContext,
    dataset_store: DatasetStoreResource,
    sam2: Sam2Resource,
    taxonomy: TaxonomyResource,
) -> MaterializeResult:
    store = dataset_store.get_store()
    batch = context.partition_key
    classes = taxonomy.load()
    backend = sam2.get_backend()
    context.log.info(f"pre-mask backend: {sam2.backend_note()} on {backend.device}")
    try:
        run = premask_batch(
            store,
            batch,
            backend,
            taxonomy=classes,
            score_threshold=sam2.score_threshold,
            image_batch_size=sam2.image_batch_size,
        )
    except PromptError as exc:
        raise Failure(description=str(exc), allow_retries=False) from None
    store.write_parquet(premasks_key(batch), run.table)

    palette = classes.palette()
    tiles, captions = [], []
    for image_id, image, masks in run.previews:
        kept = [m for m in masks if m.score >= sam2.score_threshold]
        colours = [
            palette[m.class_id] if m.class_id is not None else distinct_colour(k) for k, m in enumerate(kept)
        ]
        tiles.append(overlay(image, [m.mask for m in kept], colours))
        captions.append(image_id.rsplit("/", 1)[-1])
    sheet = png_bytes(contact_sheet(tiles, captions, columns=3, cell=320))
    table = run.table
    metadata = {
        "backend": backend.name,
        "backend_note": sam2.backend_note(),
        "model_version": backend.model_version,
        "device": backend.device,
        "images": run.images,
        "prompted_images": run.prompted_images,
        "masks": run.masks,
        "masks_kept": int((~table.rejected).sum()),
        "share_kept": round(run.kept_share, 4),
        "share_under_threshold": round(1 - run.kept_share, 4) if run.masks else 0.0,
        "score_threshold": sam2.score_threshold,
        "failed_prompts": run.failed_prompts,
        "seconds": round(run.seconds, 2),
        "images_per_second": round(run.images / run.seconds, 2) if run.seconds else 0.0,
        "masks_per_second": round(run.masks / run.seconds, 2) if run.seconds else 0.0,
        "premasks_table": MetadataValue.path(store.url(premasks_key(batch))),
        "per class": table_metadata(class_counts(table, classes)),
    }
    metadata |= picture_metadata(
        store, join_key("previews", "sam2_premasks", batch, "overlays.png"), sheet, "overlays"
    )
    return MaterializeResult(metadata=metadata)


def _premasks(context: AssetCheckExecutionContext, dataset_store: DatasetStoreResource) -> pd.DataFrame:
    return dataset_store.get_store().read_parquet(premasks_key(context.partition_key))


@asset_check(
    asset=sam2_premasks, blocking=True, partitions_def=capture_batches, description="No pre-mask is empty."
)
def premasks_not_empty(
    context: AssetCheckExecutionContext, dataset_store: DatasetStoreResource
) -> AssetCheckResult:
    table = _premasks(context, dataset_store)
    empty = table.premask_id[rle_areas(table.height, table.width, table.rle) == 0].tolist()
    return AssetCheckResult(
        passed=not empty,
        description=f"{len(empty)} empty pre-mask(s): {empty[:20]}"
        if empty
        else f"all {len(table)} pre-masks have pixels",
        metadata={"empty": len(empty), "premasks": len(table)},
    )


@asset_check(
    asset=sam2_premasks,
    blocking=True,
    partitions_def=capture_batches,
    description="Every class id is a foreground class of the taxonomy (or empty, for automatic masks).",
)
def premask_class_ids_valid(
    context: AssetCheckExecutionContext, dataset_store: DatasetStoreResource, taxonomy: TaxonomyResource
) -> AssetCheckResult:
    table = _premasks(context, dataset_store)
    valid = {c.id for c in taxonomy.load().foreground}
    bad = table[table.class_id.notna() & ~table.class_id.isin(valid)]
    return AssetCheckResult(
        passed=bad.empty,
        description=(
            f"{len(bad)} pre-mask(s) with class ids outside {sorted(valid)}: "
            f"{list(zip(bad.premask_id.head(20), bad.class_id.head(20), strict=True))}"
            if len(bad)
            else "all class ids valid"
        ),
        metadata={"invalid": len(bad)},
    )


@asset_check(
    asset=sam2_premasks,
    blocking=True,
    partitions_def=capture_batches,
    description="Every image that had prompts has at least one kept (not rejected) pre-mask.",
)
def prompted_images_have_kept_premask(
    context: AssetCheckExecutionContext,
    dataset_store: DatasetStoreResource,
    taxonomy: TaxonomyResource,
) -> AssetCheckResult:
    store = dataset_store.get_store()
    batch = context.partition_key
    captures = store.read_parquet(captures_key(batch))
    prompts = read_prompts(store, batch, captures, taxonomy.load()) or {}
    table = _premasks(context, dataset_store)
    kept = set(table.image_id[~table.rejected])
    missing = sorted(i for i, p in prompts.items() if p and i not in kept)
    return AssetCheckResult(
        passed=not missing,
        description=(
            f"{len(missing)} prompted image(s) without a kept pre-mask: {missing[:20]}"
            if missing
            else f"all {len(prompts)} prompted images have a kept pre-mask"
        ),
        metadata={"prompted_images": len(prompts), "without_kept_premask": len(missing)},
    )


@asset_check(
    asset=sam2_premasks,
    blocking=False,
    partitions_def=capture_batches,
    description=f"Flags a batch where over {REJECTED_SHARE_FLAG:.0%} of pre-masks score under the threshold "
    "(prompts or classes need revision).",
)
def rejected_share_acceptable(
    context: AssetCheckExecutionContext, dataset_store: DatasetStoreResource
) -> AssetCheckResult:
    table = _premasks(context, dataset_store)
    share = float(table.rejected.mean()) if len(table) else 0.0
    return AssetCheckResult(
        passed=share <= REJECTED_SHARE_FLAG,
        severity=AssetCheckSeverity.WARN,
        description=f"{share:.1%} of {len(table)} pre-masks under the score threshold (flag above {REJECTED_SHARE_FLAG:.0%})",
        metadata={"rejected_share": round(share, 4)},
    )


PREMASK_CHECKS = [
    premasks_not_empty,
    premask_class_ids_valid,
    prompted_images_have_kept_premask,
    rejected_share_acceptable,
]
