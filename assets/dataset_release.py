"""dataset_release: the versioned release in every trainer's format, each format read back by a check."""

from collections.abc import Iterator
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckSpec,
    AssetIn,
    DynamicOut,
    DynamicOutput,
    Failure,
    In,
    MetadataValue,
    Nothing,
    OpExecutionContext,
    Out,
    Output,
    graph_asset,
    multi_asset_check,
    op,
)

from assets.execution import CPU_TAGS, retried_on_store_outage, run_lineage, with_priority
from assets.reporting import check_result, picture_metadata, table_metadata
from dataset_pipeline import layout
from dataset_pipeline.dataset_release import (
    DEFAULT_FORMATS,
    WHOLE_RELEASE_STEPS,
    assemble_exports,
    check_shard,
    check_verdicts,
    check_whole,
    export_shard,
    export_whole,
    is_complete,
    per_split,
    release_folder,
    release_shards,
    reusable_release,
    sample_overlays,
)
from dataset_pipeline.figures import png_bytes
from resources import DatasetStoreResource, ReleaseSettings, TaxonomyResource

RELEASE_UPSTREAM = (
    "dataset_splits",
    "quality_report",
    "agreement_report",
    "baseline_model",
    "zero_shot_comparison",
)
#: The release's steps hand each other small JSON values through the store (resources.StoreIOManager).
RELEASE_IO = "store_io"


#: Which ready release steps go first (``assets.execution.with_priority``): the longest, so that
#: the last to finish is a short one. Step times of a 2,000-image release on one core
#: (benchmarks/README.md, 2026-12-04): episode HDF5 25.2 s and LeRobot 16.3 s, then their checks
#: 11.2 s and 13.6 s, against shards of 1.0-5.1 s and shard checks of 1.6-7.1 s; the blocking
#: checks after the assembly 0.3 s each, COCO's 1.1 s (RLDS reads back in its own venv: longer on
#: real data).
WHOLE_EXPORT_PRIORITY = 8
CHECK_PRIORITY: dict[str, int] = {
    "yolo_seg": 9,
    "episode_hdf5": 8,
    "lerobot": 8,
    "rlds": 8,
    "hdf5": 7,
    "coco": 6,
    "semantic_png": 6,
    "write_back": 4,
}


@op(
    tags=CPU_TAGS,
    ins={name: In(Nothing) for name in RELEASE_UPSTREAM},
    out={
        "shards": DynamicOut(dict, io_manager_key=RELEASE_IO),
        "whole": DynamicOut(dict, io_manager_key=RELEASE_IO),
    },
)
@retried_on_store_outage
def plan_release_shards(
    context: OpExecutionContext,
    dataset_store: DatasetStoreResource,
    taxonomy: TaxonomyResource,
    release_settings: ReleaseSettings,
) -> Iterator[DynamicOutput[dict]]:
    """The release's version, its export shards (per split and batch, whole episodes) and the
    formats made from the whole release, one output each: the executor runs their exports side by
    side (Celery or Kubernetes workers), the whole-release ones first (the longest)."""
    store = dataset_store.get_store()
    content, version = release_settings.load_release(store, taxonomy.load())
    if release_folder(store, version).exists(layout.RELEASE_EXPORTS_FILE):
        context.log.info(f"release {version}: exports already written, no shard to export")
        return
    shards = release_shards(content)
    whole = [name for name in WHOLE_RELEASE_STEPS if name in release_settings.formats]
    context.log.info(
        f"release {version}: {len(content.images)} images in {len(shards)} shards, "
        f"and {', '.join(whole) or 'no format'} made from the whole release beside them"
    )
    for number, (split, shard) in enumerate(shards):
        yield DynamicOutput(
            {"version": version, "split": split, "shard": shard},
            mapping_key=f"shard_{number:05d}",
            output_name="shards",
        )
    for name in whole:
        yield DynamicOutput({"version": version, "format": name}, mapping_key=name, output_name="whole")


def _release_to_export(store, taxonomy, release_settings: ReleaseSettings, step: dict):
    """The release content, and a refusal when the corpus changed since the plan named ``step``'s version."""
    content, version = release_settings.load_release(store, taxonomy.load())
    if version != step["version"]:
        raise Failure(
            description=f"the corpus changed while release {step['version']} was exported (it is now "
            f"{version}): run dataset_release again",
            allow_retries=False,
        )
    return content, version


@op(tags=CPU_TAGS, out=Out(dict, io_manager_key=RELEASE_IO))
@retried_on_store_outage
def export_release_shard(
    context: OpExecutionContext,
    shard: dict,
    dataset_store: DatasetStoreResource,
    taxonomy: TaxonomyResource,
    release_settings: ReleaseSettings,
) -> dict:
    """One shard's images, per-image formats and HDF5 shard, its unchanged units linked from the
    last release; done when its part of the index is written (a retry redoes only what is not)."""
    store = dataset_store.get_store()
    content, version = _release_to_export(store, taxonomy, release_settings, shard)
    files = export_shard(
        content,
        version,
        list(release_settings.formats),
        shard["split"],
        shard["shard"],
        threads=release_settings.export_threads,
        reusable=reusable_release(store, version),
    )
    return shard | {"files": files}


@op(tags=with_priority(CPU_TAGS, WHOLE_EXPORT_PRIORITY), out=Out(dict, io_manager_key=RELEASE_IO))
@retried_on_store_outage
def export_release_whole(
    context: OpExecutionContext,
    whole: dict,
    dataset_store: DatasetStoreResource,
    taxonomy: TaxonomyResource,
    release_settings: ReleaseSettings,
) -> dict:
    """One format made from the whole release (episode HDF5, LeRobot, RLDS), its unchanged units
    linked from the last release; done when its part of the index is written."""
    store = dataset_store.get_store()
    content, version = _release_to_export(store, taxonomy, release_settings, whole)
    formats = list(release_settings.formats)
    return whole | {
        "files": export_whole(content, version, formats, whole["format"], reusable_release(store, version))
    }


def _problems(checked: dict[str, dict]) -> dict[str, int]:
    return {name: len(verdict["problems"]) for name, verdict in checked.items()}


@op(tags=CPU_TAGS, out=Out(dict, io_manager_key=RELEASE_IO))
@retried_on_store_outage
def check_release_shard(
    context: OpExecutionContext,
    shard: dict,
    dataset_store: DatasetStoreResource,
    taxonomy: TaxonomyResource,
    release_settings: ReleaseSettings,
) -> dict:
    """The reload checks of one exported shard (YOLO, PNG, its HDF5 shard, pycocotools decoding its
    instances' RLE), run as soon as it is written: this run's blocking checks add the shards'
    verdicts up instead of reading it again."""
    store = dataset_store.get_store()
    content, version = _release_to_export(store, taxonomy, release_settings, shard)
    checked = check_shard(
        content,
        version,
        list(release_settings.formats),
        shard["split"],
        shard["shard"],
        run=context.run_id,
        read_shared=release_settings.check_shared_files,
    )
    return shard | {"problems": _problems(checked)}


@op(
    tags=with_priority(CPU_TAGS, max(CHECK_PRIORITY[name] for name in WHOLE_RELEASE_STEPS)),
    out=Out(dict, io_manager_key=RELEASE_IO),
)
@retried_on_store_outage
def check_release_whole(
    context: OpExecutionContext,
    whole: dict,
    dataset_store: DatasetStoreResource,
    taxonomy: TaxonomyResource,
    release_settings: ReleaseSettings,
) -> dict:
    """The reload check of one format made in a step of its own (episode HDF5, LeRobot, RLDS), as
    soon as that step is done, at the priority of the longest such check (an episode HDF5 export
    and its check are the release's longest chain)."""
    store = dataset_store.get_store()
    content, version = _release_to_export(store, taxonomy, release_settings, whole)
    checked = check_whole(
        content,
        version,
        list(release_settings.formats),
        whole["format"],
        run=context.run_id,
        read_shared=release_settings.check_shared_files,
    )
    return whole | {"problems": _problems(checked)}


@op(tags=CPU_TAGS, out=Out(io_manager_key=RELEASE_IO))
@retried_on_store_outage
def assemble_release(
    context: OpExecutionContext,
    shards: list[dict],
    whole: list[dict],
    shard_checks: list[dict],
    whole_checks: list[dict],
    dataset_store: DatasetStoreResource,
    taxonomy: TaxonomyResource,
    release_settings: ReleaseSettings,
) -> Output[None]:
    """The formats made from the whole release, the index and exports.json, once every shard is
    in and checked (the blocking checks that follow add those verdicts up)."""
    found: dict[str, int] = {}
    for checked in shard_checks + whole_checks:
        for name, count in checked["problems"].items():
            found[name] = found.get(name, 0) + count
    if any(found.values()):
        context.log.warning(f"the checks beside the exports found problems: {found}")
    store = dataset_store.get_store()
    formats = list(release_settings.formats)
    content, version = release_settings.load_release(store, taxonomy.load())
    outcome = assemble_exports(content, version, formats, reusable=reusable_release(store, version))
    context.log.info(
        f"release {version}: "
        + (
            "exports already written, nothing rewritten"
            if outcome.reused
            else f"exports written from {len(shards)} shards and {len(whole)} whole-release formats: "
            f"{outcome.files_written} files "
            f"({outcome.bytes_written / 1e6:.1f} MB) made, {outcome.files_linked} "
            f"({outcome.bytes_linked / 1e6:.1f} MB) shared with {outcome.reused_from or 'none'}"
        )
    )
    sheet = png_bytes(sample_overlays(content, release_settings.preview_samples))
    metadata: dict[str, Any] = {
        "version": version,
        "release": MetadataValue.path(store.url(release_folder(store, version).prefix)),
        "formats": ", ".join(formats),
        "images": len(content.images),
        "instances": len(content.annotations),
        "files": sum(len(v) for v in outcome.written.values()),
        "shards": len(release_shards(content)),
        "reused": outcome.reused,
        **(
            {}
            if outcome.reused
            else {
                "files_made": outcome.files_written,
                "bytes_made": outcome.bytes_written,
                "files_shared": outcome.files_linked,
                "bytes_shared": outcome.bytes_linked,
                "shared_with": outcome.reused_from or "none (first release, or no index in the last)",
                "seconds per format": MetadataValue.json(outcome.seconds),
            }
        ),
        "complete": is_complete(store, version),
        "status": "complete"
        if is_complete(store, version)
        else "exports written; complete once its checks pass and dataset_card writes release.json",
        "per split": table_metadata(per_split(content)),
        **picture_metadata(store, layout.release_samples_preview(version), sheet, "random samples"),
    }
    return Output(None, metadata=metadata)


@graph_asset(
    ins={name: AssetIn(name, dagster_type=Nothing) for name in RELEASE_UPSTREAM},
    group_name="release",
    kinds={"json", "hdf5", "parquet"},
    description="`releases/<version>/`: COCO (RLE, iscrowd 0), YOLO-seg, semantic PNG, HDF5, LeRobot and episode "
    "HDF5 per split, content-addressed and never rewritten once complete; exported shard by shard in parallel "
    "steps, every unchanged unit shared with the last release.",
)
def dataset_release(dataset_splits, quality_report, agreement_report, baseline_model, zero_shot_comparison):
    shards, whole = plan_release_shards(
        dataset_splits=dataset_splits,
        quality_report=quality_report,
        agreement_report=agreement_report,
        baseline_model=baseline_model,
        zero_shot_comparison=zero_shot_comparison,
    )
    exported, made = shards.map(export_release_shard), whole.map(export_release_whole)
    return assemble_release(
        exported.collect(),
        made.collect(),
        exported.map(check_release_shard).collect(),
        made.map(check_release_whole).collect(),
    )


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


#: The blocking checks' steps, one per format (the class-id check with COCO's). In the run that
#: made the release, each adds up the verdicts of the check steps beside the exports
#: (``check_release_shard``, ``check_release_whole``) and reads only the files made from the whole
#: release (0.3 s each at 2,000 images; COCO's 1.1 s); run on their own, later, they read every file,
#: side by side. Each step builds the release content for itself.
RELEASE_CHECK_STEPS: dict[str, tuple[str, ...]] = {
    "coco": ("class_ids_consistent", "coco_reloads"),
    **{fmt: (f"{fmt}_reloads",) for fmt in DEFAULT_FORMATS if fmt != "coco"},
}


def _release_checks(step: str, names: tuple[str, ...]):
    @multi_asset_check(
        name=f"release_checks_{step}",
        specs=[spec for spec in RELEASE_CHECK_SPECS if spec.name in names],
        can_subset=True,
        op_tags=with_priority(CPU_TAGS, CHECK_PRIORITY.get(step, 5)),
    )
    @retried_on_store_outage
    def release_checks(
        context: AssetCheckExecutionContext,
        dataset_store: DatasetStoreResource,
        taxonomy: TaxonomyResource,
        release_settings: ReleaseSettings,
    ):
        content, version = release_settings.load_release(dataset_store.get_store(), taxonomy.load())
        selected = {key.name for key in context.selected_asset_check_keys}
        verdicts = check_verdicts(
            content,
            version,
            selected,
            read_shared=release_settings.check_shared_files,
            runs=run_lineage(context),
        )
        for name, verdict in verdicts:
            yield check_result(verdict, check_name=name)

    return release_checks


DATASET_RELEASE_CHECKS = [_release_checks(step, names) for step, names in RELEASE_CHECK_STEPS.items()]
