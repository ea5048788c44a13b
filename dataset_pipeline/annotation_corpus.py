"""annotation_corpus: every batch's reviewed annotations and captures, as one corpus.

``is_gold`` marks the images that two or more annotators labelled independently (the
agreement set). The semantic class map of an image derives from its instances: pixels of
no instance are background (0); where instances overlap the higher ``z_order`` wins
(ties: the later row).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dataset_pipeline import layout, schemas
from dataset_pipeline.annotation_guideline import read_revisions, revision_in_force
from dataset_pipeline.masks import decode_mask_box, paint_class_map, rle_boxes
from dataset_pipeline.store import DatasetStore


@dataclass
class Corpus:
    annotations: pd.DataFrame
    images: pd.DataFrame
    batches: list[str]


def corpus_batches(store: DatasetStore) -> list[str]:
    """The batches in the corpus: those with an annotations table."""
    return [layout.batch_of_table(k) for k in layout.batch_tables(store.list(layout.ANNOTATIONS_PREFIX))]


def batch_rows(annotations: pd.DataFrame, revisions: list[dict]) -> pd.DataFrame:
    """One batch's corpus annotations: the schema's columns, gold marked (an image two or more
    annotators labelled; an image is in one batch, so a batch alone decides it), each tagged
    with the guideline revision in force at its created_at."""
    if not len(annotations):
        return annotations
    annotators = annotations.groupby("image_id").annotator_id.nunique()
    gold = set(annotators.index[annotators >= 2])
    annotations = annotations.assign(is_gold=annotations.image_id.isin(gold))
    # The rules each annotation was made under (tables imported before issue 22 lack the columns).
    annotations = schemas.ANNOTATIONS.cast(annotations.reindex(columns=list(schemas.ANNOTATIONS.columns)))
    annotations["guideline_revision"] = revision_in_force(annotations.created_at, revisions)
    return annotations


def build_corpus(store: DatasetStore) -> Corpus:
    """Every batch that has an annotations table, with its captures, in memory; gold images marked
    (:func:`update_corpus` makes the stored corpus batch by batch instead)."""
    batches = corpus_batches(store)
    revisions = read_revisions(store)
    parts = [batch_rows(store.read_parquet(layout.annotations_key(b)), revisions) for b in batches]
    annotations = pd.concat(parts, ignore_index=True) if batches else pd.DataFrame()
    images = (
        pd.concat([store.read_parquet(layout.captures_key(b)) for b in batches], ignore_index=True)
        if batches
        else pd.DataFrame()
    )
    return Corpus(annotations=annotations, images=images, batches=batches)


#: Bump when :func:`batch_rows` derives a batch's rows differently: every batch's part is made again.
PART_VERSION = 1
STAGE = "corpus"


def corpus_part_keys(batch: str) -> tuple[str, str]:
    """The batch's part of the corpus (annotations, images), what the later corpus stages read a
    batch at a time.

    >>> corpus_part_keys("b1")
    ('tables/corpus/batches/b1/annotations.parquet', 'tables/corpus/batches/b1/images.parquet')
    """
    return (
        layout.stage_part_key(STAGE, batch, "annotations.parquet"),
        layout.stage_part_key(STAGE, batch, "images.parquet"),
    )


@dataclass
class CorpusSummary:
    """What the stored corpus holds, summed over its batches' parts (no table held whole)."""

    batches: list[str]
    made: list[str]  # the batches whose part was made (new or changed inputs); the rest were kept
    images: int
    annotations: int
    gold_images: int
    annotators: list[str]
    revisions: pd.DataFrame  # revision_counts of the whole corpus


def update_corpus(store: DatasetStore) -> CorpusSummary:
    """The stored corpus (``tables/corpus/annotations.parquet``, ``images.parquet``), batch by
    batch: a batch's rows are made once (:func:`batch_rows`, kept under
    ``tables/corpus/batches/<batch>/`` while its tables and the guideline revisions are
    unchanged), then every batch's part is streamed into the corpus tables, one in memory at a
    time."""
    from dataset_pipeline.batch_parts import update_parts
    from dataset_pipeline.formats.arrow import concat_parquet

    batches = corpus_batches(store)
    revisions = read_revisions(store)

    def make(batch: str) -> dict:
        annotations = batch_rows(store.read_parquet(layout.annotations_key(batch)), revisions)
        images = store.read_parquet(layout.captures_key(batch))
        annotations_part, images_part = corpus_part_keys(batch)
        store.write_parquet(annotations_part, annotations)
        store.write_parquet(images_part, images)
        return {
            "images": len(images),
            "annotations": len(annotations),
            "gold_images": int(annotations[annotations.is_gold].image_id.nunique())
            if len(annotations)
            else 0,
            "annotators": sorted(set(annotations.annotator_id)) if len(annotations) else [],
            "revisions": revision_counts(annotations).to_dict("records"),
        }

    figures, made = update_parts(
        store,
        STAGE,
        batches,
        lambda batch: [layout.annotations_key(batch), layout.captures_key(batch)],
        (PART_VERSION, revisions),
        make,
    )
    if batches:
        for position, target in enumerate((layout.CORPUS_ANNOTATIONS_KEY, layout.CORPUS_IMAGES_KEY)):
            concat_parquet(store, [corpus_part_keys(b)[position] for b in batches], target)
    else:
        write_corpus(store, Corpus(pd.DataFrame(), pd.DataFrame(), []))
    revisions_table = pd.DataFrame([r for f in figures for r in f["revisions"]])
    if len(revisions_table):
        revisions_table = revisions_table.groupby("guideline_revision", as_index=False)[
            ["annotations", "images"]
        ].sum()
    else:
        revisions_table = revision_counts(pd.DataFrame())
    return CorpusSummary(
        batches=batches,
        made=made,
        images=sum(f["images"] for f in figures),
        annotations=sum(f["annotations"] for f in figures),
        gold_images=sum(f["gold_images"] for f in figures),
        annotators=sorted({a for f in figures for a in f["annotators"]}),
        revisions=revisions_table,
    )


def revision_counts(annotations: pd.DataFrame) -> pd.DataFrame:
    """Annotations and images per guideline revision in force (``none``: before the first, or untimed)."""
    if not len(annotations):
        return pd.DataFrame(columns=["guideline_revision", "annotations", "images"])
    revision = annotations.guideline_revision.astype("string").fillna("none")
    return (
        annotations.assign(guideline_revision=revision)
        .groupby("guideline_revision")
        .agg(annotations=("annotation_id", "size"), images=("image_id", "nunique"))
        .reset_index()
    )


def write_corpus(store: DatasetStore, corpus: Corpus) -> None:
    store.write_parquet(layout.CORPUS_ANNOTATIONS_KEY, corpus.annotations)
    store.write_parquet(layout.CORPUS_IMAGES_KEY, corpus.images)


def semantic_class_map(instances: pd.DataFrame, height: int, width: int) -> np.ndarray:
    """The (height, width) uint8 class map of one image's instances (one annotator's, or a chosen set).

    >>> from dataset_pipeline.masks import encode_mask
    >>> a = np.zeros((2, 3), bool); a[:, :2] = True
    >>> b = np.zeros((2, 3), bool); b[:, 1:] = True
    >>> rows = pd.DataFrame({"class_id": [1, 2], "z_order": [1, 0], "rle": [encode_mask(a), encode_mask(b)],
    ...                      "height": [2, 2], "width": [3, 3]})
    >>> semantic_class_map(rows, 2, 3).tolist()
    [[1, 1, 2], [1, 1, 2]]
    """
    rles = instances.rle.to_numpy()
    boxes = rle_boxes([height] * len(rles), [width] * len(rles), rles)
    masks = [decode_mask_box(rle, height, width, box) for rle, box in zip(rles, boxes, strict=True)]
    return paint_class_map(
        masks, boxes, instances.class_id.to_numpy(), instances.z_order.to_numpy(), height, width
    )


#: How a frame's labels came to be: drawn or refined by hand, propagated and accepted, or propagated and corrected.
FRAME_ORIGINS: tuple[str, ...] = ("hand", "propagated", "corrected")


def mask_origins(annotations: pd.DataFrame) -> pd.DataFrame:
    """Per batch: masks drawn by people (manual, SAM 2-assisted, auto), propagated and accepted,
    propagated and corrected; the same counts as frames (a frame with one corrected mask is corrected).

    >>> table = pd.DataFrame({"image_id": ["b/1", "b/2", "b/2"], "assistance": ["manual", "propagated",
    ...                       "propagated-corrected"]})
    >>> mask_origins(table)[["batch", "human_masks", "propagated_accepted", "propagated_corrected",
    ...                      "hand_frames", "propagated_frames", "corrected_frames"]].values.tolist()
    [['b', 1, 1, 1, 1, 0, 1]]
    """
    columns = [
        "batch",
        "human_masks",
        "propagated_accepted",
        "propagated_corrected",
        "hand_frames",
        "propagated_frames",
        "corrected_frames",
    ]
    if not len(annotations):
        return pd.DataFrame(columns=columns)
    table = annotations.assign(batch=annotations.image_id.str.split("/", n=1).str[0])
    frames = frame_origins(table).rename("origin").reset_index()
    frames["batch"] = frames.image_id.str.split("/", n=1).str[0]
    rows = []
    for batch, group in table.groupby("batch", sort=True):
        mine = frames[frames.batch == batch].origin
        rows.append(
            {
                "batch": batch,
                "human_masks": int((~group.assistance.isin(schemas.PROPAGATED_ASSISTANCE)).sum()),
                "propagated_accepted": int((group.assistance == "propagated").sum()),
                "propagated_corrected": int((group.assistance == "propagated-corrected").sum()),
                "hand_frames": int((mine == "hand").sum()),
                "propagated_frames": int((mine == "propagated").sum()),
                "corrected_frames": int((mine == "corrected").sum()),
            }
        )
    return pd.DataFrame(rows, columns=columns)


def frame_origins(annotations: pd.DataFrame) -> pd.Series:
    """Per image: ``hand`` unless its masks came from propagation (``propagated`` when all were
    accepted as they were, ``corrected`` when any was changed)."""
    kinds = annotations.groupby("image_id").assistance.agg(set)

    def origin(values: set) -> str:
        if "propagated-corrected" in values:
            return "corrected"
        if "propagated" in values:
            return "propagated" if values <= {"propagated"} else "corrected"
        return "hand"

    return kinds.map(origin)


def from_premask(annotations: pd.DataFrame) -> pd.Series:
    """The annotations that started from a pre-mask (not from a propagated mask: a corrected
    propagated mask is the correction round working as meant, not a model's miss)."""
    linked = annotations.premask_id.notna()
    if "assistance" in annotations.columns:
        linked &= ~annotations.assistance.isin(schemas.PROPAGATED_ASSISTANCE)
    return linked
