"""dataset_release: the versioned release in every trainer's format, each format read back by a check."""

from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckSpec,
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    asset,
    multi_asset_check,
)

from assets.execution import CPU_TAGS, retried_on_store_outage
from assets.reporting import check_result, picture_metadata, table_metadata
from dataset_pipeline import layout
from dataset_pipeline.dataset_release import (
    DEFAULT_FORMATS,
    check_verdicts,
    is_complete,
    per_split,
    release_folder,
    sample_overlays,
    write_exports,
)
from dataset_pipeline.figures import png_bytes
from resources import DatasetStoreResource, ReleaseSettings, TaxonomyResource


@asset(
    op_tags=CPU_TAGS,
    deps=["dataset_splits", "quality_report", "agreement_report", "baseline_model", "zero_shot_comparison"],
    group_name="release",
    kinds={"json", "hdf5", "parquet"},
    description="`releases/<version>/`: COCO (RLE, iscrowd 0), YOLO-seg, semantic PNG, HDF5, LeRobot and episode "
    "HDF5 per split, content-addressed and never rewritten once complete.",
)
@retried_on_store_outage
def dataset_release(
    context: AssetExecutionContext,
    dataset_store: DatasetStoreResource,
    taxonomy: TaxonomyResource,
    release_settings: ReleaseSettings,
) -> MaterializeResult:
    store = dataset_store.get_store()
    formats = list(release_settings.formats)
    content, version = release_settings.load_release(store, taxonomy.load())
    outcome = write_exports(content, version, formats, threads=release_settings.export_threads)
    context.log.info(
        f"release {version}: "
        + ("exports already written, nothing rewritten" if outcome.reused else "exports written")
    )
    sheet = png_bytes(sample_overlays(content, release_settings.preview_samples))
    metadata: dict[str, Any] = {
        "version": version,
        "release": MetadataValue.path(store.url(release_folder(store, version).prefix)),
        "formats": ", ".join(formats),
        "images": len(content.images),
        "instances": len(content.annotations),
        "files": sum(len(v) for v in outcome.written.values()),
        "reused": outcome.reused,
        "complete": is_complete(store, version),
        "status": "complete"
        if is_complete(store, version)
        else "exports written; complete once its checks pass and dataset_card writes release.json",
        "per split": table_metadata(per_split(content)),
        **picture_metadata(store, layout.release_samples_preview(version), sheet, "random samples"),
    }
    return MaterializeResult(metadata=metadata)


#: The release's blocking checks: class ids, then each format read back with its reader.
RELEASE_CHECK_SPECS = [
    AssetCheckSpec(
        "class_ids_consistent",
        asset=dataset_release,
        blocking=True,
        description="Background is 0, classes are 1..N as the taxonomy, every released instance's class is one of them.",
    ),
    *[
        AssetCheckSpec(
            f"{fmt}_reloads",
            asset=dataset_release,
            blocking=True,
            description=f"Reads the release's {fmt} files back with the format's reader; they must equal the corpus.",
        )
        for fmt in DEFAULT_FORMATS
    ],
]


@multi_asset_check(specs=RELEASE_CHECK_SPECS, can_subset=True, op_tags=CPU_TAGS)
@retried_on_store_outage
def release_checks(
    context: AssetCheckExecutionContext,
    dataset_store: DatasetStoreResource,
    taxonomy: TaxonomyResource,
    release_settings: ReleaseSettings,
):
    """All of the release's checks in one step: the release content (corpus, reference labels,
    version digest) is built once for them, not once per check."""
    content, version = release_settings.load_release(dataset_store.get_store(), taxonomy.load())
    selected = {key.name for key in context.selected_asset_check_keys}
    for name, verdict in check_verdicts(content, version, selected):
        yield check_result(verdict, check_name=name)


DATASET_RELEASE_CHECKS = [release_checks]
