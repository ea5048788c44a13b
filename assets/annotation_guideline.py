"""annotation_guideline: the rules in force as a versioned document with example crops from the corpus."""

from datetime import UTC, datetime

import pandas as pd
from dagster import (
    AssetExecutionContext,
    AutomationCondition,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from assets.execution import CPU_TAGS, retried_on_store_outage
from assets.reporting import picture_metadata, table_metadata
from dataset_pipeline import layout
from dataset_pipeline.annotation_corpus import build_corpus
from dataset_pipeline.annotation_guideline import GuidelineError, example_sheet_png, make_guideline
from resources import DatasetStoreResource, GuidelineResource, TaxonomyResource


@asset(
    op_tags=CPU_TAGS,
    deps=["reviewed_annotations"],
    group_name="quality",
    kinds={"markdown", "html"},
    automation_condition=AutomationCondition.eager(),
    description="The annotation guideline (taxonomy + rules file) as Markdown and HTML with correct and incorrect "
    "example crops per class; a new revision, numbered and dated, whenever the rules or the taxonomy change; "
    "every revision kept under guidelines/.",
)
@retried_on_store_outage
def annotation_guideline(
    context: AssetExecutionContext,
    dataset_store: DatasetStoreResource,
    taxonomy: TaxonomyResource,
    guideline: GuidelineResource,
) -> MaterializeResult:
    store = dataset_store.get_store()
    classes = taxonomy.load()
    try:
        rules = guideline.load(classes)
    except GuidelineError as exc:
        raise Failure(description=str(exc), allow_retries=False) from None
    corpus = build_corpus(store)
    try:
        outcome = make_guideline(store, rules, classes, corpus.annotations, corpus.images, datetime.now(UTC))
    except GuidelineError as exc:
        raise Failure(description=str(exc), allow_retries=False) from None
    revision = outcome.revision
    names = dict(enumerate(classes.names))
    per_class = (
        outcome.examples.assign(**{"class": outcome.examples.class_id.map(names)})
        .groupby(["class", "kind"])
        .size()
        .unstack(fill_value=0)
        .reset_index()
        if len(outcome.examples)
        else pd.DataFrame(columns=["class", "correct", "incorrect"])
    )
    metadata = {
        "revision": revision["revision"],
        "effective_from": revision["effective_from"],
        "new_revision": outcome.new,
        "changes": "; ".join(revision["changes"]),
        "examples": len(outcome.examples),
        "examples per class": table_metadata(per_class),
        "revisions": table_metadata(
            pd.DataFrame(outcome.revisions)[
                ["revision", "effective_from", "created_at", "digest", "taxonomy"]
            ]
        ),
        **{role: MetadataValue.path(store.url(key)) for role, key in outcome.files.items()},
    }
    sheet = example_sheet_png(store, revision["revision"], outcome.examples, classes)
    if sheet is not None:
        metadata |= picture_metadata(
            store, layout.guideline_file(revision["revision"], "examples.png"), sheet, "example crops"
        )
    return MaterializeResult(metadata=metadata)
