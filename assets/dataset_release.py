"""dataset_release and dataset_card: the versioned release, validated by reloading, and its datasheet."""

import json
from datetime import UTC, datetime

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    asset,
    multi_asset_check,
)

from assets.agreement_report import AGREEMENT_TABLES, agreement_report
from assets.annotation_corpus import QUALITY_ISSUES_KEY, QUALITY_SUMMARY_KEY, quality_report
from assets.baseline_model import BASELINE_METRICS_KEY, baseline_model, reference_labels
from assets.dataset_splits import SPLITS_KEY, dataset_splits
from assets.raw_captures import STORE_RETRY
from assets.reporting import picture_metadata, table_metadata
from assets.tags import CPU_TAGS
from assets.zero_shot_comparison import ZERO_SHOT_KEY, zero_shot_comparison
from dataset_pipeline import dataset_card as card
from dataset_pipeline import dataset_release as release
from dataset_pipeline.annotation_corpus import CORPUS_ANNOTATIONS_KEY, CORPUS_IMAGES_KEY
from dataset_pipeline.figures import markdown_image, png_bytes
from dataset_pipeline.store import DatasetStore
from resources import DatasetStoreResource, ReleaseSettings, TaxonomyResource

#: Report files the card quotes: a change in any of them makes a new release version.
QUOTED_KEYS = {
    "baseline": BASELINE_METRICS_KEY,
    "zero_shot": ZERO_SHOT_KEY,
    "agreement_per_class": AGREEMENT_TABLES["per_class"],
    "quality_summary": QUALITY_SUMMARY_KEY,
}


def _quoted(store: DatasetStore) -> dict[str, bytes]:
    return {name: store.read_bytes(key) for name, key in QUOTED_KEYS.items() if store.exists(key)}


def load_release(store: DatasetStore, taxonomy: TaxonomyResource, settings: ReleaseSettings):
    """(content, version) of the release the current corpus, splits and reports make."""
    classes = taxonomy.load()
    content = release.ReleaseContent(
        store,
        classes,
        store.read_table(CORPUS_IMAGES_KEY),
        reference_labels(store),
        store.read_table(SPLITS_KEY),
        info=settings.info(classes.name),
    )
    version = release.release_version(content, list(settings.formats), _quoted(store))
    captured = content.images.capture_ts.max() if len(content.images) else None
    content.info |= {
        "version": version,
        "year": captured.year if captured is not None else 0,
        "date_created": str(captured.date()) if captured is not None else "",
    }
    return content, version


@asset(
    op_tags=CPU_TAGS,
    deps=[dataset_splits, quality_report, agreement_report, baseline_model, zero_shot_comparison],
    group_name="release",
    kinds={"json", "hdf5", "parquet"},
    retry_policy=STORE_RETRY,
    description="releases/<version>/: COCO (RLE, iscrowd 0), YOLO-seg, semantic PNG, HDF5, LeRobot and episode "
    "HDF5 per split, content-addressed and never rewritten once complete.",
)
def dataset_release(
    context: AssetExecutionContext,
    dataset_store: DatasetStoreResource,
    taxonomy: TaxonomyResource,
    release_settings: ReleaseSettings,
) -> MaterializeResult:
    store = dataset_store.get_store()
    content, version = load_release(store, taxonomy, release_settings)
    outcome = release.write_exports(
        content, version, list(release_settings.formats), threads=release_settings.export_threads
    )
    complete = release.is_complete(store, version)
    context.log.info(
        f"release {version}: "
        + ("exports already written, nothing rewritten" if outcome.reused else "exports written")
    )
    per_split = (
        content.images.groupby("split")
        .agg(images=("image_id", "size"), scenes=("scene_id", "nunique"), episodes=("episode_id", "nunique"))
        .reindex(content.splits)
        .reset_index()
    )
    per_split["instances"] = [
        int(content.annotations.image_id.isin(content.split_images(s).image_id).sum()) for s in content.splits
    ]
    sheet = release.sample_overlays(content, release_settings.preview_samples)
    metadata = {
        "version": version,
        "release": MetadataValue.path(store.url(release.release_folder(store, version).prefix)),
        "formats": ", ".join(release_settings.formats),
        "images": len(content.images),
        "instances": len(content.annotations),
        "files": sum(len(v) for v in outcome.written.values()),
        "reused": outcome.reused,
        "complete": complete,
        "per split": table_metadata(per_split),
        **picture_metadata(
            store, f"previews/dataset_release/{version}/samples.png", png_bytes(sheet), "random samples"
        ),
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
        for fmt in release.DEFAULT_FORMATS
    ],
]


@multi_asset_check(specs=RELEASE_CHECK_SPECS, can_subset=True, op_tags=CPU_TAGS, retry_policy=STORE_RETRY)
def release_checks(
    context: AssetCheckExecutionContext,
    dataset_store: DatasetStoreResource,
    taxonomy: TaxonomyResource,
    release_settings: ReleaseSettings,
):
    """All of the release's checks in one step: the release content (corpus, reference labels,
    version digest) is built once for them, not once per check."""
    store = dataset_store.get_store()
    content, version = load_release(store, taxonomy, release_settings)
    selected = {key.name for key in context.selected_asset_check_keys}
    if "class_ids_consistent" in selected:
        problems = release.class_id_problems(content)
        yield AssetCheckResult(
            check_name="class_ids_consistent",
            passed=not problems,
            description="; ".join(problems[:10])
            if problems
            else f"{version}: class ids consistent with the taxonomy",
            metadata={"problems": len(problems)},
        )
    exported = release.exported_formats(store, version)
    for fmt in release.DEFAULT_FORMATS:
        if f"{fmt}_reloads" not in selected:
            continue
        if fmt not in exported:
            yield AssetCheckResult(
                check_name=f"{fmt}_reloads",
                passed=True,
                description=f"{fmt} is not among the configured formats",
            )
            continue
        problems = release.validate_format(content, version, fmt)
        yield AssetCheckResult(
            check_name=f"{fmt}_reloads",
            passed=not problems,
            description=(
                f"{fmt}: {len(problems)} problem(s): " + "; ".join(problems[:8])
                if problems
                else f"{fmt}: every file of {version} reads back equal to the corpus"
            ),
            metadata={"problems": len(problems), "version": version},
        )


@asset(
    op_tags=CPU_TAGS,
    deps=[dataset_release],
    group_name="release",
    kinds={"markdown", "parquet"},
    retry_policy=STORE_RETRY,
    description="DATASHEET.md (Datasheets for Datasets), statistics, mask-area histogram and per-image / "
    "per-annotation provenance (CSV + Parquet); then release.json, which makes the release complete.",
)
def dataset_card(
    context: AssetExecutionContext,
    dataset_store: DatasetStoreResource,
    taxonomy: TaxonomyResource,
    release_settings: ReleaseSettings,
) -> MaterializeResult:
    store = dataset_store.get_store()
    content, version = load_release(store, taxonomy, release_settings)
    out = release.release_folder(store, version)
    if release.is_complete(store, version):
        context.log.info(f"release {version} is complete already; nothing rewritten")
        text = out.read_bytes("DATASHEET.md").decode()
        return MaterializeResult(
            metadata={"version": version, "reused": True, "card": MetadataValue.md(text)}
        )
    issues = store.read_parquet(QUALITY_ISSUES_KEY) if store.exists(QUALITY_ISSUES_KEY) else None
    summary = json.loads(store.read_bytes(QUALITY_SUMMARY_KEY)) if store.exists(QUALITY_SUMMARY_KEY) else {}
    quoted = {
        k: json.loads(store.read_bytes(v))
        for k, v in (("baseline", BASELINE_METRICS_KEY), ("zero_shot", ZERO_SHOT_KEY))
        if store.exists(v)
    }
    inputs = card.CardInputs(
        release_info=content.info,
        all_annotations=store.read_parquet(CORPUS_ANNOTATIONS_KEY),
        agreement_per_class=store.read_parquet(AGREEMENT_TABLES["per_class"]),
        quality_issues=issues,
        quality_checked=summary.get("checked", {}),
        baseline=quoted.get("baseline"),
        zero_shot=quoted.get("zero_shot"),
        hourly_rate=release_settings.hourly_rate,
        currency=release_settings.currency,
    )
    images = card.image_provenance(content)
    annotations = card.annotation_provenance(content)
    stats = card.statistics(content, annotations)
    cost = card.cost_breakdown(inputs.all_annotations, content.annotations, release_settings.hourly_rate)
    text = card.render_card(content, version, inputs, stats, cost)
    histogram = png_bytes(card.area_histogram(annotations))
    for name, frame in (("images", images), ("annotations", annotations)):
        out.write_parquet(f"provenance/{name}.parquet", frame)
        out.write_text(f"provenance/{name}.csv", frame.to_csv(index=False))
    out.write_bytes("stats/mask_area_histogram.png", histogram)
    out.write_text("stats/statistics.json", json.dumps(stats | {"cost": cost}, indent=2, default=str))
    out.write_text("DATASHEET.md", text)
    manifest = release.complete_release(
        store,
        version,
        {"images": stats["images"], "instances": stats["instances"]},
        completed_at=datetime.now(UTC).isoformat(),
    )
    return MaterializeResult(
        metadata={
            "version": version,
            "reused": False,
            "files": len(manifest["files"]),
            "labour_hours": cost["labour_hours"],
            "qc_overhead_share": cost["qc_overhead_share"],
            "card": MetadataValue.md(text),
            "mask areas": MetadataValue.md(markdown_image(histogram, "mask areas")),
            "datasheet": MetadataValue.path(store.url(out.key("DATASHEET.md"))),
        }
    )


RELEASE_CHECKS = [release_checks]
