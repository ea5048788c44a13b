"""agreement_report: inter-annotator agreement on gold images, and the check that gates the dataset."""

import pandas as pd
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetExecutionContext,
    AutomationCondition,
    MaterializeResult,
    MetadataValue,
    asset,
    asset_check,
)

from assets.annotation_corpus import annotation_corpus
from assets.raw_captures import STORE_RETRY
from assets.reporting import picture_metadata, table_metadata
from assets.tags import CPU_TAGS
from dataset_pipeline.agreement_report import compute_agreement
from dataset_pipeline.annotation_corpus import CORPUS_ANNOTATIONS_KEY, CORPUS_IMAGES_KEY
from dataset_pipeline.figures import bar_chart, contact_sheet, distinct_colour, overlay, png_bytes
from dataset_pipeline.masks import decode_mask
from dataset_pipeline.sam2_premasks import iter_images
from dataset_pipeline.store import join_key
from resources import AgreementRules, DatasetStoreResource, TaxonomyResource

AGREEMENT_TABLES = {
    name: join_key("tables", "agreement", f"{name}.parquet")
    for name in ("per_class", "per_annotator", "per_batch", "per_image")
}


@asset(
    op_tags=CPU_TAGS,
    retry_policy=STORE_RETRY,
    deps=[annotation_corpus],
    group_name="quality",
    kinds={"parquet"},
    automation_condition=AutomationCondition.eager(),
    description="Mean pairwise IoU, Boundary IoU and IoU against the majority consensus per class on gold images; "
    "per-annotator velocity, refinement, acceptance and flags; per-batch trends.",
)
def agreement_report(
    context: AssetExecutionContext,
    dataset_store: DatasetStoreResource,
    taxonomy: TaxonomyResource,
    agreement_rules: AgreementRules,
) -> MaterializeResult:
    store = dataset_store.get_store()
    classes = taxonomy.load()
    annotations = store.read_parquet(CORPUS_ANNOTATIONS_KEY)
    report = compute_agreement(annotations, classes, agreement_rules.settings())
    for name, key in AGREEMENT_TABLES.items():
        store.write_parquet(key, getattr(report, name))
    per_class = report.per_class
    chart = bar_chart(
        [f"{r['class']} (n={r.instances})" for _, r in per_class.iterrows()],
        list(per_class.mean_pairwise_iou),
        list(per_class.threshold),
        title="mean pairwise IoU per class (tick: threshold)",
    )
    metadata = {
        "gold_images": len(report.per_image),
        "classes_failing": int(len(report.failing_classes())),
        "annotators_flagged": int(report.per_annotator.get("flagged", pd.Series(dtype=bool)).sum()),
        "per class": table_metadata(per_class.drop(columns=["class_id", "min_instances"])),
        "per annotator": table_metadata(report.per_annotator),
        "per batch": table_metadata(report.per_batch),
    }
    for _, row in per_class.iterrows():
        metadata[f"iou/{row['class']}"] = (
            float(row.mean_pairwise_iou) if pd.notna(row.mean_pairwise_iou) else 0.0
        )
    metadata |= picture_metadata(
        store,
        join_key("previews", "agreement_report", "per_class_iou.png"),
        png_bytes(chart),
        "per-class IoU",
    )
    drawn = _disagreements(store, annotations, report.per_image)
    if drawn is not None:
        sheet, legend = drawn
        metadata |= picture_metadata(
            store,
            join_key("previews", "agreement_report", "largest_disagreements.png"),
            sheet,
            "largest disagreements",
        )
        metadata["outline colours"] = MetadataValue.md(legend)
    metadata["tables"] = MetadataValue.json({name: store.url(key) for name, key in AGREEMENT_TABLES.items()})
    return MaterializeResult(metadata=metadata)


def _disagreements(store, annotations: pd.DataFrame, per_image: pd.DataFrame, count: int = 6):
    """The gold images where annotators agree least, each annotator's outlines in their own colour."""
    if per_image.empty:
        return None
    worst = per_image.sort_values("disagreement", ascending=False).head(count)
    images = store.read_parquet(CORPUS_IMAGES_KEY)
    annotators = sorted(annotations.annotator_id.unique())
    colour_of = {a: distinct_colour(i) for i, a in enumerate(annotators)}
    tiles, captions = [], []
    chosen = images[images.image_id.isin(worst.image_id)]
    for image_id, rgb in iter_images(store, chosen):
        rows = annotations[annotations.image_id == image_id]
        masks = [decode_mask(r.rle, r.height, r.width) for r in rows.itertuples()]
        tiles.append(overlay(rgb, masks, [colour_of[a] for a in rows.annotator_id], alpha=0.0))
        score = float(worst.set_index("image_id").loc[image_id, "mean_pairwise_iou"])
        captions.append(f"{image_id.rsplit('/', 1)[-1]} IoU {score:.2f}")
    if not tiles:
        return None
    legend = "\n".join(f"| {a} | #{''.join(f'{v:02x}' for v in colour_of[a])} |" for a in annotators)
    return png_bytes(
        contact_sheet(tiles, captions, columns=3, cell=320)
    ), "| annotator | outline |\n|---|---|\n" + legend


@asset_check(
    asset=agreement_report,
    blocking=True,
    description="Every class with enough gold instances meets its agreement threshold (mean pairwise IoU).",
)
def agreement_meets_thresholds(
    context: AssetCheckExecutionContext, dataset_store: DatasetStoreResource
) -> AssetCheckResult:
    per_class = dataset_store.get_store().read_parquet(AGREEMENT_TABLES["per_class"])
    counted = per_class[per_class.instances >= per_class.min_instances]
    failing = counted[~counted.passed]
    too_few = per_class[per_class.instances < per_class.min_instances]
    if len(failing):
        description = "below threshold: " + "; ".join(
            f"{r['class']} IoU {r.mean_pairwise_iou:.3f} < {r.threshold:.2f} (boundary IoU {r.boundary_iou:.3f}, n={r.instances})"
            for _, r in failing.iterrows()
        )
    else:
        description = f"all {len(counted)} classes with >= {int(per_class.min_instances.iloc[0]) if len(per_class) else 0} gold instances meet their thresholds"
    if len(too_few):
        description += "; too few gold instances to judge: " + ", ".join(
            f"{r['class']} (n={r.instances})" for _, r in too_few.iterrows()
        )
    return AssetCheckResult(
        passed=failing.empty,
        description=description,
        metadata={
            "failing_classes": len(failing),
            "judged_classes": len(counted),
            "per class": table_metadata(
                per_class[["class", "mean_pairwise_iou", "threshold", "instances", "passed"]]
            ),
        },
    )


@asset_check(
    asset=agreement_report,
    blocking=False,
    description="Flags annotators whose velocity is over 2x / under 0.5x the team median, who submit over 40% of "
    "pre-masks unchanged, or whose first-pass acceptance is under 80%.",
)
def annotators_within_norms(
    context: AssetCheckExecutionContext, dataset_store: DatasetStoreResource
) -> AssetCheckResult:
    table = dataset_store.get_store().read_parquet(AGREEMENT_TABLES["per_annotator"])
    flagged = table[table.flagged] if "flagged" in table else table.iloc[:0]
    return AssetCheckResult(
        passed=flagged.empty,
        severity=AssetCheckSeverity.WARN,
        description="; ".join(f"{r.annotator_id}: {r.flags}" for r in flagged.itertuples())
        or "no annotator flagged",
        metadata={"flagged": len(flagged)},
    )


AGREEMENT_CHECKS = [agreement_meets_thresholds, annotators_within_norms]
