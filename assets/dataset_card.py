"""dataset_card: the release's datasheet, statistics and provenance; it completes the release."""

from datetime import UTC, datetime
from typing import Any

from dagster import AssetExecutionContext, MaterializeResult, MetadataValue, asset

from assets.execution import CPU_TAGS, retried_on_store_outage
from dataset_pipeline import layout
from dataset_pipeline.dataset_card import card_inputs, write_card
from dataset_pipeline.dataset_release import is_complete, latest_release, release_folder
from dataset_pipeline.figures import markdown_image
from dataset_pipeline.store import DatasetStore
from resources import DatasetStoreResource, ReleaseSettings, TaxonomyResource


@asset(
    op_tags=CPU_TAGS,
    deps=["dataset_release"],
    group_name="release",
    kinds={"markdown", "parquet"},
    description="`DATASHEET.md` (Datasheets for Datasets), statistics, mask-area histogram and per-image / "
    "per-annotation provenance (CSV + Parquet); then `release.json`, which makes the release complete, and "
    "`releases/latest.json`, which names it.",
)
@retried_on_store_outage
def dataset_card(
    context: AssetExecutionContext,
    dataset_store: DatasetStoreResource,
    taxonomy: TaxonomyResource,
    release_settings: ReleaseSettings,
) -> MaterializeResult:
    store = dataset_store.get_store()
    content, version = release_settings.load_release(store, taxonomy.load())
    out = release_folder(store, version)
    if is_complete(store, version):
        context.log.info(f"release {version} is complete already; nothing rewritten")
        text = out.read_bytes(layout.DATASHEET_FILE).decode()
        return MaterializeResult(
            metadata={
                "version": version,
                "reused": True,
                **_completion(store, version),
                "card": MetadataValue.md(text),
            }
        )
    inputs = card_inputs(store, content, release_settings.hourly_rate, release_settings.currency)
    card = write_card(store, content, version, inputs, completed_at=datetime.now(UTC).isoformat())
    context.log.info(f"release {version} is complete: {store.url(out.key(layout.RELEASE_MANIFEST_FILE))}")
    return MaterializeResult(
        metadata={
            "version": version,
            "reused": False,
            **_completion(store, version),
            "files": card.files,
            "labour_hours": card.cost["labour_hours"],
            "qc_overhead_share": card.cost["qc_overhead_share"],
            "card": MetadataValue.md(card.text),
            "mask areas": MetadataValue.md(markdown_image(card.histogram, "mask areas")),
            "datasheet": MetadataValue.path(store.url(out.key(layout.DATASHEET_FILE))),
        }
    )


def _completion(store: DatasetStore, version: str) -> dict[str, Any]:
    """That the release is complete, its manifest, and which release `releases/latest.json` names."""
    latest = latest_release(store) or {}
    return {
        "complete": True,
        "release_manifest": MetadataValue.path(
            store.url(release_folder(store, version).key(layout.RELEASE_MANIFEST_FILE))
        ),
        "latest": f"{latest.get('version')} (completed {latest.get('completed_at')})",
        "latest_pointer": MetadataValue.path(store.url(layout.RELEASE_LATEST_KEY)),
    }
