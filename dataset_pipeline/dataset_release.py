"""dataset_release: an immutable, versioned release of the corpus in every trainer's format.

A release lives under ``releases/<version>/``. The version is content-addressed:
``<taxonomy name>-v<taxonomy version>-<12 hex digits>``, the digits a SHA-256 over what the
release holds (images with their sha256 and split, the reference instances, the taxonomy,
the chosen formats, the release info) and over the report files its card quotes. The same
inputs give the same version; a changed label, split, class or report gives a new one.

Completeness is one file: ``release.json``, written last (by the card step) with every
file's size and SHA-256. A folder without it is an unfinished release - a killed run, a
failed check - and is never listed as a release; re-running finishes it. Once
``release.json`` exists nothing under the folder is written again. ``exports.json``
(written after the exports) records what the export step wrote, so a re-run after a
failure in the card step does not rewrite the exports either.

Layout (formats as configured; see each folder of ``dataset_pipeline.formats``)::

    images/<split>/<stem>.<ext>        the captures, byte for byte (shared by all formats)
    annotations/instances_<split>.json COCO        labels/<split>/*.txt, data.yaml   YOLO-seg
    masks/<split>/<stem>.png           PNG         hdf5/<split>.h5                  HDF5
    lerobot/<split>/...                LeRobot     episodes/episode_<n>.hdf5        episode HDF5
    DATASHEET.md, provenance/, stats/  the card    exports.json, release.json       manifests
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from dataset_pipeline import layout
from dataset_pipeline.formats import EXPORT_FORMATS, exporters
from dataset_pipeline.formats.exporting import (
    PerImageExporter,
    ReleaseFolder,
    ReusableFiles,
    ShardCheckedExporter,
    ShardedExporter,
    read_index_rows,
)
from dataset_pipeline.formats.release_content import EXPORT_LAYOUT_VERSION, ReleaseContent
from dataset_pipeline.store import DatasetStore
from dataset_pipeline.taxonomy import Taxonomy
from dataset_pipeline.verdicts import Verdict

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_FORMATS = EXPORT_FORMATS
#: Report files the card quotes: a change in any of them makes a new release version.
QUOTED_KEYS = {
    "baseline": layout.BASELINE_LATEST_KEY,
    "zero_shot": layout.ZERO_SHOT_KEY,
    "agreement_per_class": layout.AGREEMENT_TABLES["per_class"],
    "quality_summary": layout.QUALITY_SUMMARY_KEY,
}


class ReleaseError(ValueError):
    """A release cannot be made as asked (unknown format, inputs missing)."""


def release_folder(store: DatasetStore, version: str) -> ReleaseFolder:
    return ReleaseFolder(store, layout.release_prefix(version))


#: Report fields that are measurements of a run, not content: the card quotes them, the version
#: digest leaves them out (the same inputs give the same version on any machine, at any load).
MEASURED_FIELDS = {"baseline": ("latency_ms_per_image", "train_seconds")}


def quoted_reports(store: DatasetStore) -> dict[str, bytes]:
    """The content of the reports the card quotes (those that exist), measured fields left out."""
    quoted = {}
    for name, key in QUOTED_KEYS.items():
        if not store.exists(key):
            continue
        data = store.read_bytes(key)
        if name in MEASURED_FIELDS:
            document = {k: v for k, v in json.loads(data).items() if k not in MEASURED_FIELDS[name]}
            data = json.dumps(document, sort_keys=True).encode()
        quoted[name] = data
    return quoted


def load_release(
    store: DatasetStore, taxonomy: Taxonomy, formats: list[str], info: dict
) -> tuple[ReleaseContent, str]:
    """(content, version) of the release that the store's corpus, splits and reports make now.

    The images and splits are read as Arrow (the export path never loads pandas for them); the
    labels are the reference instances every scoring stage uses (:func:`reference_labels`).
    ``info`` is the release info block (name, licence, ...); the version, year and creation date
    are added to it.
    """
    # Here, not at the top: the export path (write_exports from Arrow tables) never loads pandas,
    # which the reference-label choice needs.
    from dataset_pipeline.baseline_model import reference_labels

    content = ReleaseContent(
        store,
        taxonomy,
        store.read_table(layout.CORPUS_IMAGES_KEY),
        reference_labels(store),
        store.read_table(layout.SPLITS_KEY),
        info=info,
    )
    version = release_version(content, formats, quoted_reports(store))
    captured = content.images.capture_ts.max() if len(content.images) else None
    content.info |= {
        "version": version,
        "year": captured.year if captured is not None else 0,
        "date_created": str(captured.date()) if captured is not None else "",
    }
    return content, version


def release_version(
    content: ReleaseContent, formats: list[str], quoted: dict[str, bytes] | None = None
) -> str:
    """``<taxonomy>-v<N>-<digest>``: a digest of everything the release holds and quotes.

    ``quoted`` maps a name to the bytes of a report the card quotes (baseline metrics,
    agreement tables); their change makes a new version too.
    """
    import pandas as pd

    digest = hashlib.sha256()
    digest.update(f"layout={EXPORT_LAYOUT_VERSION};taxonomy={content.taxonomy.tag};".encode())
    digest.update(
        json.dumps([c.__dict__ for c in content.taxonomy.classes], sort_keys=True, default=str).encode()
    )
    digest.update(json.dumps(sorted(formats)).encode())
    digest.update(json.dumps(content.info, sort_keys=True, default=str).encode())
    image_columns = [
        "image_id",
        "sha256",
        "split",
        "width",
        "height",
        "scene_id",
        "episode_id",
        "frame_index",
    ]
    digest.update(
        pd.util.hash_pandas_object(content.images[image_columns].astype(str), index=False).values.tobytes()
    )
    annotation_columns = [
        "annotation_id",
        "image_id",
        "class_id",
        "rle",
        "z_order",
        "annotator_id",
        "assistance",
        "review_status",
    ]
    ordered = content.annotations.sort_values("annotation_id", kind="stable")[annotation_columns].astype(str)
    digest.update(pd.util.hash_pandas_object(ordered, index=False).values.tobytes())
    for name, data in sorted((quoted or {}).items()):
        digest.update(name.encode() + hashlib.sha256(data).digest())
    return f"{content.taxonomy.name}-v{content.taxonomy.version}-{digest.hexdigest()[:12]}"


def is_complete(store: DatasetStore, version: str) -> bool:
    return release_folder(store, version).exists(layout.RELEASE_MANIFEST_FILE)


def list_releases(store: DatasetStore) -> list[str]:
    """Versions of the complete releases (those with ``release.json``), oldest first by completion."""
    found = []
    for key in store.glob(layout.RELEASE_MANIFESTS_GLOB):
        manifest = json.loads(store.read_bytes(key))
        found.append((manifest.get("completed_at", ""), layout.version_of_release_manifest(key)))
    return [version for _, version in sorted(found)]


def latest_release(store: DatasetStore) -> dict | None:
    """What ``releases/latest.json`` says (version, completed_at), or None before the first release."""
    if not store.exists(layout.RELEASE_LATEST_KEY):
        return None
    return json.loads(store.read_bytes(layout.RELEASE_LATEST_KEY))


@dataclass
class ExportOutcome:
    version: str
    written: dict[str, list[str]]  # format -> files (relative to the release folder)
    reused: bool  # the exports already existed: nothing was written
    #: What the export step wrote and what it shared with ``reused_from`` (files, bytes).
    files_written: int = 0
    bytes_written: int = 0
    files_linked: int = 0
    bytes_linked: int = 0
    reused_from: str | None = None
    #: Wall seconds per step: "shards" is every shard (the images, the per-image formats, HDF5 shards).
    seconds: dict[str, float] = field(default_factory=dict)


def reusable_release(store: DatasetStore, version: str) -> ReusableFiles | None:
    """The files a new release can share: those of the latest complete release (each complete
    release holds every unchanged file of the ones before, so the latest is enough)."""
    latest = latest_release(store)
    if latest is None or latest["version"] == version or not is_complete(store, latest["version"]):
        return None
    return ReusableFiles.of_release(store, layout.release_prefix(latest["version"]))


def release_shards(content: ReleaseContent) -> list[tuple[str, str]]:
    """(split, shard name) of every export shard, in release order (:meth:`ReleaseContent.shards`)."""
    return [(split, name) for split in content.splits for name, _ in content.shards(split)]


def _check_formats(formats: list[str]) -> dict:
    known = exporters()
    unknown = [f for f in formats if f not in known]
    if unknown:
        raise ReleaseError(f"unknown export formats {unknown}; known: {sorted(known)}")
    return known


def export_shard(
    content: ReleaseContent,
    version: str,
    formats: list[str],
    split: str,
    shard: str,
    threads: int = 0,
    reusable: ReusableFiles | None = None,
) -> int:
    """One shard's files: its images, every per-image format and the sharded formats' shard
    (HDF5), each unchanged unit linked from ``reusable``. Its part of the release index is
    written last (``layout.release_part_key``): a step killed mid-write left no part, so its
    retry makes the shard again, under the same names (nothing doubled); a shard with a part is
    done and not made again. Returns the files the shard holds.

    The per-image files are made by ``threads`` threads (0 = one per core): decoding, contour
    tracing, PNG encoding and file writes spend most of their time outside the GIL.
    """
    known = _check_formats(formats)
    part = layout.release_part_key(version, split, shard)
    if content.store.exists(part):
        return len(read_index_rows(content.store, part))
    rows = dict(content.shards(split))[shard]
    out = ReleaseFolder(content.store, layout.release_prefix(version), reusable)
    per_image = {name: e for name in formats if isinstance(e := known[name], PerImageExporter)}

    def write_image(row) -> None:
        digest = content.image_digest(row)
        if not out.reuse(row.image_id, "images", digest):
            image = out.write_bytes(content.image_file(row), content.image_bytes(row))
            out.record(row.image_id, "images", digest, image)
        for name, exporter in per_image.items():
            if not out.reuse(row.image_id, name, digest):
                out.record(row.image_id, name, digest, exporter.export_image(content, out, row))

    workers = threads if threads > 0 else os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in _ordered_map(pool, write_image, rows, window=4 * workers):
            pass
    for name in formats:
        if isinstance(exporter := known[name], ShardedExporter):
            exporter.export_shard(content, out, split, shard, rows)
    content.store.sync()  # the shard's files are on disk before its part vouches for them
    out.write_index(part)
    return len(out.index_rows())


#: Formats made from the whole release that take long enough to be steps of their own, side by
#: side with the shards (episode HDF5 and LeRobot were two thirds of a release's export work):
#: :func:`export_whole` makes one; :func:`assemble_exports` takes its part of the index.
WHOLE_RELEASE_STEPS: tuple[str, ...] = ("episode_hdf5", "lerobot", "rlds")


def export_whole(
    content: ReleaseContent,
    version: str,
    formats: list[str],
    name: str,
    reusable: ReusableFiles | None = None,
) -> int:
    """Format ``name`` (one of :data:`WHOLE_RELEASE_STEPS`), made from the whole release, its
    unchanged units linked from ``reusable``. Like a shard, its part of the release index is
    written last (``release_part_key(version, WHOLE_RELEASE_PART, name)``): a step killed
    mid-way left none and is made again; one with its part is done. Returns its files."""
    known = _check_formats(formats)
    if name not in WHOLE_RELEASE_STEPS or name not in formats:
        raise ReleaseError(
            f"{name} is not a format made in a step of its own here ({list(WHOLE_RELEASE_STEPS)})"
        )
    part = layout.release_part_key(version, layout.WHOLE_RELEASE_PART, name)
    if content.store.exists(part):
        return len(read_index_rows(content.store, part))
    out = ReleaseFolder(content.store, layout.release_prefix(version), reusable)
    for relative in known[name].export(content, out):
        if not out.recorded(relative):
            out.record(name, name, "", relative)
    content.store.sync()  # its files are on disk before its part vouches for them
    out.write_index(part)
    return len(out.index_rows())


def assemble_exports(
    content: ReleaseContent, version: str, formats: list[str], reusable: ReusableFiles | None = None
) -> ExportOutcome:
    """The release from its exported shards: the formats made from the whole release (COCO,
    the HDF5 split files over their shards, write-back, and LeRobot, RLDS and episode HDF5 unless
    their own steps made them, :func:`export_whole`), the index (``index.parquet``, every part in
    it) and ``exports.json``. Every shard must be done (:func:`export_shard`); nothing is written
    when ``exports.json`` already exists."""
    known = _check_formats(formats)
    out = ReleaseFolder(content.store, layout.release_prefix(version), reusable)
    if out.exists(layout.RELEASE_EXPORTS_FILE):
        previous = json.loads(out.read_bytes(layout.RELEASE_EXPORTS_FILE))
        return ExportOutcome(version, previous["files"], reused=True)
    files: dict[str, list[str]] = {"images": []}
    per_image = [name for name in formats if isinstance(known[name], PerImageExporter)]
    for split, shard in release_shards(content):
        part = layout.release_part_key(version, split, shard)
        if not content.store.exists(part):
            raise ReleaseError(
                f"release {version}: shard {split}/{shard} has not been exported ({part} is missing)"
            )
        rows = read_index_rows(content.store, part)
        out.add_rows(rows)
        for row in rows:
            if row["format"] == "images" or row["format"] in per_image:
                files.setdefault(row["format"], []).append(row["file"])
    seconds: dict[str, float] = {}
    written = {"images": files["images"]}
    for name in formats:
        started = time.perf_counter()
        whole = layout.release_part_key(version, layout.WHOLE_RELEASE_PART, name)
        if name in WHOLE_RELEASE_STEPS and content.store.exists(whole):  # made in its own step
            rows = read_index_rows(content.store, whole)
            out.add_rows(rows)
            written[name] = [row["file"] for row in rows]
            continue  # its time is its own step's
        if name in per_image:
            written[name] = known[name].export_shared(content, out) + files.get(name, [])
        else:
            written[name] = known[name].export(content, out)
        seconds[name] = time.perf_counter() - started
        for relative in written[name]:  # what no exporter entered itself: made from the whole release
            if not out.recorded(relative):
                out.record(name, name, "", relative)
    out.write_index()
    # A shard's step killed mid-write left its temporary file (never visible); its retry made the file again.
    content.store.sweep_temporary(layout.release_prefix(version))
    content.store.sync()  # every file is on disk before the manifest vouches for it
    reused_from = reusable.prefix if reusable is not None else None
    manifest = json.dumps(
        {"version": version, "formats": list(formats), "files": written, "reused_from": reused_from}, indent=1
    )
    content.store.write_bytes(out.key(layout.RELEASE_EXPORTS_FILE), manifest.encode())
    rows = out.index_rows()
    return ExportOutcome(
        version,
        written,
        reused=False,
        files_written=sum(not r["reused"] for r in rows),
        bytes_written=sum(r["bytes"] for r in rows if not r["reused"]),
        files_linked=sum(r["reused"] for r in rows),
        bytes_linked=sum(r["bytes"] for r in rows if r["reused"]),
        reused_from=reused_from,
        seconds={k: round(v, 3) for k, v in seconds.items()},
    )


def write_exports(
    content: ReleaseContent,
    version: str,
    formats: list[str],
    threads: int = 0,
    reusable: ReusableFiles | None = None,
) -> ExportOutcome:
    """Write the images and each format into ``releases/<version>/``, then its ``index.parquet``
    and ``exports.json``: every shard (:func:`export_shard`) in this process, then the rest
    (:func:`assemble_exports`). ``dataset_release`` runs the shards as steps of their own instead,
    which the executor spreads over its workers.

    Nothing is written when ``exports.json`` (or ``release.json``) already exists. With
    ``reusable`` (an earlier release's files, :func:`reusable_release`), every unit whose inputs
    are unchanged - an image's files, an episode's file, an HDF5 shard - is linked from there
    instead (hard links on a local store, server-side copies on S3): a release that adds 1% of
    the images makes about 1% of the per-image and sharded bytes.
    """
    _check_formats(formats)
    if release_folder(content.store, version).exists(layout.RELEASE_EXPORTS_FILE):
        return assemble_exports(content, version, formats, reusable)
    started = time.perf_counter()
    for split, shard in release_shards(content):
        export_shard(content, version, formats, split, shard, threads, reusable)
    shards_seconds = time.perf_counter() - started
    outcome = assemble_exports(content, version, formats, reusable)
    outcome.seconds = {"shards": round(shards_seconds, 3), **outcome.seconds}
    return outcome


def _ordered_map(pool: ThreadPoolExecutor, function, items: Iterable, window: int) -> Iterator:
    """``function`` over ``items`` on the pool, results in order, at most ``window`` in flight.

    ``Executor.map`` submits every item at once: a future and its row per image, ~2 KB each,
    held until the end (8 MiB at 4,000 images).

    >>> with ThreadPoolExecutor(2) as pool:
    ...     list(_ordered_map(pool, lambda x: x * x, range(6), window=2))
    [0, 1, 4, 9, 16, 25]
    """
    pending: collections.deque = collections.deque()
    for item in items:
        if len(pending) >= window:
            yield pending.popleft().result()
        pending.append(pool.submit(function, item))
    while pending:
        yield pending.popleft().result()


def exported_formats(store: DatasetStore, version: str) -> list[str]:
    out = release_folder(store, version)
    if not out.exists(layout.RELEASE_EXPORTS_FILE):
        return []
    return json.loads(out.read_bytes(layout.RELEASE_EXPORTS_FILE))["formats"]


def validate_format(content: ReleaseContent, version: str, name: str, read_shared: bool = True) -> list[str]:
    """Problems found by reading format ``name`` back from the release (empty = valid);
    ``read_shared=False`` leaves out the files shared with an earlier complete release
    (:meth:`ReleaseFolder.shared_files`: read back by its checks)."""
    out = _check_folder(content.store, version, read_shared)
    return exporters()[name].validate(content, out)


def _check_folder(
    store: DatasetStore, version: str, read_shared: bool, shared_from: str | None = None
) -> ReleaseFolder:
    """The release folder as a check reads it: leaving out the shared files unless ``read_shared``,
    as named by the index at ``shared_from`` (a shard's or a step's part; default the release's)."""
    out = release_folder(store, version)
    out.skip_shared, out.shared_from = not read_shared, shared_from
    return out


def shard_checked_formats(formats: list[str]) -> list[str]:
    """The formats in ``formats`` checked shard by shard (:class:`ShardCheckedExporter`)."""
    known = _check_formats(formats)
    return [name for name in formats if isinstance(known[name], ShardCheckedExporter)]


def check_shard(
    content: ReleaseContent,
    version: str,
    formats: list[str],
    split: str,
    shard: str,
    run: str,
    read_shared: bool = False,
) -> dict[str, dict]:
    """The reload checks of one exported shard, in every shard-checked format, run beside the
    exports as soon as the shard is written: {format: {"problems": [...], "shared_unread": n}}.

    Recorded for ``run`` (``layout.release_check_part_key``): that run's blocking checks add the
    shards' verdicts up (:func:`check_verdicts`) instead of reading the files again; a rerun of the
    checks alone reads them itself. Shared files are those the shard's part of the index links."""
    known = _check_formats(formats)
    exported = layout.release_part_key(version, split, shard)
    if not content.store.exists(exported):
        raise ReleaseError(
            f"release {version}: shard {split}/{shard} has not been exported ({exported} is missing)"
        )
    rows = dict(content.shards(split))[shard]
    results = {}
    for name in shard_checked_formats(formats):
        out = _check_folder(content.store, version, read_shared, shared_from=exported)
        exporter = known[name]
        assert isinstance(exporter, ShardCheckedExporter)
        problems = exporter.validate_shard(content, out, split, shard, rows)
        results[name] = {"problems": problems, "shared_unread": out.skipped}
    return _recorded(content.store, layout.release_check_part_key(version, run, split, shard), results)


def check_whole(
    content: ReleaseContent, version: str, formats: list[str], name: str, run: str, read_shared: bool = False
) -> dict[str, dict]:
    """The reload check of format ``name`` made in a step of its own (:func:`export_whole`), run as
    soon as that step is done, recorded for ``run`` like :func:`check_shard`."""
    known = _check_formats(formats)
    exported = layout.release_part_key(version, layout.WHOLE_RELEASE_PART, name)
    if not content.store.exists(exported):
        raise ReleaseError(f"release {version}: {name} has not been exported ({exported} is missing)")
    out = _check_folder(content.store, version, read_shared, shared_from=exported)
    results = {name: {"problems": known[name].validate(content, out), "shared_unread": out.skipped}}
    return _recorded(
        content.store, layout.release_check_part_key(version, run, layout.WHOLE_RELEASE_PART, name), results
    )


def _recorded(store: DatasetStore, key: str, results: dict[str, dict]) -> dict[str, dict]:
    """``results`` written at ``key`` for the run's blocking checks (:class:`_CheckedParts`)."""
    store.write_bytes(key, json.dumps(results).encode())
    return results


class _CheckedParts:
    """The verdicts recorded by :func:`check_shard` and :func:`check_whole` for any of ``runs``
    (the run and those it re-executes), each part read once."""

    def __init__(self, store: DatasetStore, version: str, runs: Iterable[str]) -> None:
        self.store, self.version, self.runs = store, version, list(runs)
        self._parts: dict[tuple[str, str], dict] = {}

    def verdict(self, split: str, shard: str, name: str) -> dict | None:
        if (split, shard) not in self._parts:
            self._parts[(split, shard)] = {}
            for run in self.runs:
                key = layout.release_check_part_key(self.version, run, split, shard)
                if self.store.exists(key):
                    self._parts[(split, shard)] = json.loads(self.store.read_bytes(key))
                    break
        return self._parts[(split, shard)].get(name)


def _format_problems(
    content: ReleaseContent, version: str, name: str, read_shared: bool, parts: _CheckedParts
) -> tuple[list[str], int, int]:
    """A format's problems, the shared files left unread, and how many of its parts were checked
    beside the exports (their verdicts taken from ``parts``; the rest read here)."""
    exporter = exporters()[name]
    out = _check_folder(content.store, version, read_shared)
    if isinstance(exporter, ShardCheckedExporter):
        problems, shared, beside = exporter.validate_release(content, out), 0, 0
        for split in content.splits:
            for shard, rows in content.shards(split):
                found = parts.verdict(split, shard, name)
                if found is None:
                    problems += exporter.validate_shard(content, out, split, shard, rows)
                else:
                    problems += found["problems"]
                    shared += found["shared_unread"]
                    beside += 1
        return problems, shared + out.skipped, beside
    found = parts.verdict(layout.WHOLE_RELEASE_PART, name, name)
    if found is not None:
        return found["problems"], found["shared_unread"], 1
    return exporter.validate(content, out), out.skipped, 0


def class_id_problems(content: ReleaseContent) -> list[str]:
    """Taxonomy consistency: background is 0, classes are 1..N, every instance's class is one of them."""
    problems = []
    ids = content.taxonomy.ids
    if ids != list(range(len(ids))) or content.taxonomy.classes[0].category != "background":
        problems.append(f"taxonomy {content.taxonomy.tag}: ids {ids} are not background 0 then 1..N")
    valid = set(ids[1:])
    bad = content.annotations[~content.annotations.class_id.isin(valid)]
    for row in bad.head(20).itertuples():
        problems.append(
            f"annotation {row.annotation_id} (image {row.image_id}, file {row.source_file}): class_id "
            f"{row.class_id} is not in taxonomy {content.taxonomy.tag} (1..{len(ids) - 1})"
        )
    if len(bad) > 20:
        problems.append(f"... and {len(bad) - 20} more annotations with a class outside the taxonomy")
    return problems


def sample_overlays(content: ReleaseContent, count: int = 6, seed: int = 0) -> np.ndarray:
    """A contact sheet of ``count`` random released images with their class maps drawn over them,
    and the key of the classes it shows."""
    from dataset_pipeline.figures import contact_sheet, overlay, with_legend

    if not len(content.images):
        return np.zeros((8, 8, 3), np.uint8)
    picks = np.random.default_rng(seed).choice(
        len(content.images), size=min(count, len(content.images)), replace=False
    )
    sheet, captions, shown = [], [], set()
    for index in sorted(picks):
        row = content.images.iloc[int(index)]
        class_map = content.class_map(row)
        present = [c for c in content.taxonomy.foreground if (class_map == c.id).any()]
        shown |= {c.id for c in present}
        sheet.append(
            overlay(content.rgb(row), [class_map == c.id for c in present], [c.rgb for c in present])
        )
        captions.append(f"{row.split}: {row.image_id.rsplit('/', 1)[-1]}")
    key = [c for c in content.taxonomy.foreground if c.id in shown]
    return with_legend(
        contact_sheet(sheet, captions, columns=3, cell=320), [c.name for c in key], [c.rgb for c in key]
    )


def linked_digests(out: ReleaseFolder) -> dict[str, dict]:
    """Size and SHA-256 of the files the exports linked from an earlier complete release, as that
    release's ``release.json`` vouches for them (the bytes are the same inode or a server-side
    copy of them): the card does not read them again."""
    if not out.exists(layout.RELEASE_EXPORTS_FILE) or not out.exists(layout.RELEASE_INDEX_FILE):
        return {}
    source_prefix = json.loads(out.read_bytes(layout.RELEASE_EXPORTS_FILE)).get("reused_from")
    earlier = ReleaseFolder(out.store, source_prefix) if source_prefix else None
    if earlier is None or not earlier.exists(layout.RELEASE_MANIFEST_FILE):
        return {}
    vouched = json.loads(earlier.read_bytes(layout.RELEASE_MANIFEST_FILE))["files"]
    index = out.store.read_parquet(out.key(layout.RELEASE_INDEX_FILE))
    linked = index[index.reused]
    return {
        row.file: vouched[row.source]
        for row in linked.itertuples()
        if row.source in vouched and vouched[row.source]["bytes"] == row.bytes
    }


def file_digests(out: ReleaseFolder) -> dict[str, dict]:
    """Size and SHA-256 of every file under the release folder (manifests excluded); those linked
    from an earlier release are taken from its manifest (:func:`linked_digests`)."""
    digests = {}
    known = linked_digests(out)
    for relative in out.list():
        if relative == layout.RELEASE_MANIFEST_FILE:
            continue
        if relative in known:
            digests[relative] = known[relative]
            continue
        data = out.read_bytes(relative)
        digests[relative] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    return digests


def complete_release(
    store: DatasetStore, version: str, summary: dict, completed_at: str, splits: pd.DataFrame
) -> dict:
    """Write ``release.json`` (the completeness marker) and point ``releases/latest.json`` at it.

    Its images' splits go into the released-splits registry first (so a crash between the two
    can only pin images that were about to be released, never leave released ones unpinned)."""
    from dataset_pipeline.dataset_splits import record_released_splits

    out = release_folder(store, version)
    manifest = {
        "version": version,
        "completed_at": completed_at,
        "summary": summary,
        "files": file_digests(out),
    }
    record_released_splits(store, splits, version)
    store.sync()
    store.write_bytes(
        out.key(layout.RELEASE_MANIFEST_FILE), json.dumps(manifest, indent=1, default=str).encode()
    )
    store.write_bytes(
        layout.RELEASE_LATEST_KEY, json.dumps({"version": version, "completed_at": completed_at}).encode()
    )
    return manifest


def per_split(content: ReleaseContent) -> pd.DataFrame:
    """Per split of a release: images, scenes, episodes, instances."""
    table = (
        content.images.groupby("split")
        .agg(images=("image_id", "size"), scenes=("scene_id", "nunique"), episodes=("episode_id", "nunique"))
        .reindex(content.splits)
        .reset_index()
    )
    table["instances"] = [
        int(content.annotations.image_id.isin(content.split_images(s).image_id).sum()) for s in content.splits
    ]
    return table


def check_verdicts(
    content: ReleaseContent,
    version: str,
    selected: set[str],
    read_shared: bool = True,
    runs: Iterable[str] = (),
) -> Iterator[tuple[str, Verdict]]:
    """(check name, verdict) of the release's checks in ``selected``: ``class_ids_consistent``, then
    ``<format>_reloads`` for each format, which reads the format's files back with its reader
    (with ``read_shared=False``, all but those an earlier complete release's checks read back).
    The shards and formats checked beside the exports by one of ``runs`` (:func:`check_shard`,
    :func:`check_whole`) are not read again: their recorded verdicts are added up."""
    if "class_ids_consistent" in selected:
        problems = class_id_problems(content)
        yield (
            "class_ids_consistent",
            Verdict(
                passed=not problems,
                summary="; ".join(problems[:10])
                if problems
                else f"{version}: class ids consistent with the taxonomy",
                figures={"problems": len(problems)},
            ),
        )
    exported = exported_formats(content.store, version)
    parts = _CheckedParts(content.store, version, runs)
    for fmt in DEFAULT_FORMATS:
        if f"{fmt}_reloads" not in selected:
            continue
        if fmt not in exported:
            yield f"{fmt}_reloads", Verdict(True, f"{fmt} is not among the configured formats")
            continue
        problems, shared, beside = _format_problems(content, version, fmt, read_shared, parts)
        unread = f" ({shared} files shared with an earlier checked release not read again)" if shared else ""
        yield (
            f"{fmt}_reloads",
            Verdict(
                passed=not problems,
                summary=(
                    f"{fmt}: {len(problems)} problem(s): " + "; ".join(problems[:8])
                    if problems
                    else f"{fmt}: every file of {version} reads back equal to the corpus{unread}"
                ),
                figures={
                    "problems": len(problems),
                    "version": version,
                    "shared_unread": shared,
                    "parts_checked_beside_exports": beside,
                },
            ),
        )
