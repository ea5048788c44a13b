"""A batch's episodes propagated from their reviewed keyframes, and what goes back to people.

Per episode with propagated frames (:func:`keyframe_table` chose them when the tasks went out):
each reviewed keyframe's instances become an instance map (higher ``z_order`` on top), the
instances of consecutive keyframes are linked into tracks (same class, overlapping once the
earlier map is moved by the flow between them), the propagator carries the tracks to the frames
between, and every propagated instance becomes a row of ``tables/propagated/<batch>.parquet``
(backend, model version, source keyframes, distance, confidence). Its ``premask_id`` is what the
corrections link to when they come back, as a pre-mask's does.

A keyframe is labelled by the annotation that counts most: expert-approved, then peer-accepted,
then the latest; one annotator's instances, never a mix.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dataset_pipeline import layout, schemas
from dataset_pipeline.episode_propagation.consistency import EpisodeConsistency, episode_consistency
from dataset_pipeline.episode_propagation.core import (
    PropagatedFrame,
    PropagationError,
    Propagator,
    present_ids,
)
from dataset_pipeline.episode_propagation.keyframes import KeyframeSettings, choose_keyframes, frame_motion
from dataset_pipeline.images import decode_image
from dataset_pipeline.masks import decode_mask, encode_mask
from dataset_pipeline.store import DatasetStore
from dataset_pipeline.taxonomy import Taxonomy

#: Tracks of two keyframes are one object when, the earlier moved onto the later, they overlap this much.
TRACK_LINK_IOU = 0.2


class EpisodeFrames(Sequence[np.ndarray]):
    """An episode's frames read from the store one at a time (memory flat in episode length)."""

    def __init__(self, store: DatasetStore, rows: pd.DataFrame, episode: str) -> None:
        self.store, self.rows, self.episode = store, rows.reset_index(drop=True), episode

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):
        row = self.rows.iloc[index]
        try:
            rgb = decode_image(self.store.read_bytes(str(row.uri)), str(row.uri)).rgb
        except ValueError as exc:
            raise PropagationError(
                self.episode, f"frame {int(row.frame_index)} ({row.image_id})", str(exc)
            ) from None
        if rgb.shape[:2] != (int(row.height), int(row.width)):
            raise PropagationError(
                self.episode,
                f"frame {int(row.frame_index)} ({row.image_id})",
                f"image is {rgb.shape[1]}x{rgb.shape[0]}, its capture row says {row.width}x{row.height}",
            )
        return rgb

    def __iter__(self) -> Iterator[np.ndarray]:
        for index in range(len(self)):
            yield self[index]


def episodes_of(captures: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    """(episode, its capture rows in frame order) of every episode of a batch.

    Frames are ordered by ``frame_index``; a repeated index is an error of the upload.
    """
    for episode, rows in captures.groupby("episode_id", sort=True):
        rows = rows.sort_values("frame_index", kind="stable")
        repeated = rows.frame_index[rows.frame_index.duplicated()]
        if len(repeated):
            raise PropagationError(
                str(episode), f"frame {int(repeated.iloc[0])}", "frame_index appears twice"
            )
        yield str(episode), rows


def keyframe_table(store: DatasetStore, captures: pd.DataFrame, settings: KeyframeSettings) -> pd.DataFrame:
    """The batch's keyframe table (:data:`schemas.KEYFRAMES`): every frame, whether it is a
    keyframe and why, and the motion into it."""
    out = []
    for episode, rows in episodes_of(captures):
        frames = EpisodeFrames(store, rows, episode)
        motion = [0.0]
        if len(rows) >= settings.min_frames and settings.every > 1:
            previous = frames[0]
            for index in range(1, len(frames)):
                current = frames[index]
                motion.append(round(frame_motion(previous, current), 2))
                previous = current
        else:
            motion = [0.0] * len(rows)
        chosen = dict(choose_keyframes(motion, settings))
        for position, row in enumerate(rows.itertuples()):
            out.append(
                {
                    "image_id": row.image_id,
                    "episode_id": episode,
                    "frame_index": int(row.frame_index),
                    "position": position,
                    "keyframe": position in chosen,
                    "reason": chosen.get(position),
                    "motion_px": motion[position],
                }
            )
    return schemas.KEYFRAMES.frame(out)


def keyframe_annotations(annotations: pd.DataFrame) -> pd.DataFrame:
    """Per image, the instances of the one annotation that labels it (see the module's docstring);
    annotations that are themselves propagated are left out."""
    human = annotations[~annotations.assistance.isin(schemas.PROPAGATED_ASSISTANCE)]
    if not len(human):
        return human
    rank = (
        human.review_status.map({"expert_approved": 2, "peer_reviewed": 1}).fillna(0)
        + human.review_accepted.fillna(False).astype(float) * 0.5
    )
    per_person = (
        human.assign(_rank=rank)
        .groupby(["image_id", "annotator_id"], sort=False)
        .agg(_rank=("_rank", "max"), _latest=("created_at", "max"))
        .reset_index()
        .sort_values(["image_id", "_rank", "_latest", "annotator_id"], ascending=[True, False, False, True])
        .drop_duplicates("image_id")
    )
    chosen = set(zip(per_person.image_id, per_person.annotator_id, strict=True))
    keep = [(i, a) in chosen for i, a in zip(human.image_id, human.annotator_id, strict=True)]
    return human[keep]


def instance_map(
    instances: pd.DataFrame, height: int, width: int
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """An image's instances painted into an int32 map (ids 1..n, higher z_order on top; ties: the
    later row), and (class_id, z_order) of each id."""
    out = np.zeros((height, width), np.int32)
    order = instances.assign(_row=range(len(instances))).sort_values(["z_order", "_row"], kind="stable")
    meta = []
    for number, row in enumerate(order.itertuples(), start=1):
        out[decode_mask(row.rle, int(row.height), int(row.width))] = number
        meta.append((int(row.class_id), int(row.z_order)))
    return out, meta


def link_tracks(
    frames: Sequence[np.ndarray], maps: dict[int, tuple[np.ndarray, list[tuple[int, int]]]]
) -> tuple[dict[int, np.ndarray], dict[int, tuple[int, int]]]:
    """Keyframe instance maps with ids that are tracks across the episode, and (class, z) per track.

    Consecutive keyframes' instances are matched greedily by IoU (same class only) once the
    earlier map is moved onto the later frame by the DIS flow between them.
    """
    from dataset_pipeline.episode_propagation.flow import dis_flow, gray, warp_labels

    tracks: dict[int, tuple[int, int]] = {}
    linked: dict[int, np.ndarray] = {}
    previous: int | None = None
    for position in sorted(maps):
        local, meta = maps[position]
        relabel = np.zeros(len(meta) + 1, np.int32)
        if previous is not None:
            flow = dis_flow(gray(frames[position]), gray(frames[previous]))
            moved = warp_labels(linked[previous], flow)
            pairs = []
            for number, (class_id, _) in enumerate(meta, start=1):
                mine = local == number
                for track in np.unique(moved[mine]):
                    if track == 0 or tracks[int(track)][0] != class_id:
                        continue
                    theirs = moved == track
                    iou = (mine & theirs).sum() / max(1, (mine | theirs).sum())
                    pairs.append((float(iou), number, int(track)))
            used: set[int] = set()
            for iou, number, track in sorted(pairs, reverse=True):
                if iou >= TRACK_LINK_IOU and relabel[number] == 0 and track not in used:
                    relabel[number] = track
                    used.add(track)
        for number, info in enumerate(meta, start=1):
            if relabel[number] == 0:
                relabel[number] = len(tracks) + 1
                tracks[int(relabel[number])] = info
        linked[position] = relabel[local]
        previous = position
    return linked, tracks


@dataclass
class EpisodeResult:
    episode: str
    frames: int
    keyframes: int
    propagated_rows: list[dict] = field(default_factory=list)
    consistency: EpisodeConsistency = field(default_factory=EpisodeConsistency)
    image_ids: list[str] = field(default_factory=list)
    is_keyframe: list[bool] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class BatchPropagation:
    """What :func:`propagate_batch` made."""

    table: pd.DataFrame
    consistency: pd.DataFrame
    episodes: list[EpisodeResult]
    waiting: dict[str, list[str]] = field(default_factory=dict)  # episode -> keyframes not reviewed yet
    backend: str = ""
    model_version: str = ""
    seconds: float = 0.0

    @property
    def propagated_frames(self) -> int:
        return sum(e.frames - e.keyframes for e in self.episodes)


def propagated_id(image_id: str, track: int, model_version: str) -> str:
    """A propagated mask's stable id (same inputs, same id: re-running links corrections again)."""
    digest = hashlib.sha1(f"{image_id}|{track}|{model_version}".encode()).hexdigest()[:12]
    return f"prop-{digest}"


def propagate_episode(
    frames: Sequence[np.ndarray],
    rows: pd.DataFrame,
    keyframe_rows: pd.DataFrame,
    annotations: pd.DataFrame,
    propagator: Propagator,
    episode: str,
    *,
    min_area: int = 50,
) -> EpisodeResult:
    """One episode: keyframe instances → tracks → propagated rows and the temporal consistency."""
    started = time.perf_counter()
    rows = rows.reset_index(drop=True)
    positions = {image_id: p for p, image_id in enumerate(rows.image_id)}
    keyframe_ids = list(keyframe_rows.image_id[keyframe_rows.keyframe])
    by_image = {k: g for k, g in annotations.groupby("image_id", sort=False)}
    maps = {}
    for image_id in keyframe_ids:
        capture = rows.iloc[positions[image_id]]
        instances = by_image.get(image_id, annotations.iloc[:0])
        wrong = instances[(instances.height != capture.height) | (instances.width != capture.width)]
        if len(wrong):
            raise PropagationError(
                episode,
                f"frame {int(capture.frame_index)} ({image_id})",
                f"keyframe mask {wrong.annotation_id.iloc[0]!r} is {int(wrong.width.iloc[0])}x"
                f"{int(wrong.height.iloc[0])}, the frame {int(capture.width)}x{int(capture.height)}",
            )
        maps[positions[image_id]] = instance_map(instances, int(capture.height), int(capture.width))
    linked, tracks = link_tracks(frames, maps)
    out = propagator.propagate(frames, linked, episode)
    result = EpisodeResult(episode, len(rows), len(keyframe_ids), image_ids=list(rows.image_id))
    class_lookup = np.zeros(max(tracks, default=0) + 1, np.uint8)  # class ids fit (paint_class_map's type)
    for track, (class_id, _) in tracks.items():
        class_lookup[track] = class_id
    class_maps = []
    for frame in out:
        class_maps.append(class_lookup[frame.labels])
        result.is_keyframe.append(frame.is_keyframe)
        if not frame.is_keyframe:
            result.propagated_rows += _rows_of(frame, rows.iloc[frame.index], tracks, rows, propagator)
    result.consistency = episode_consistency(frames, class_maps, min_area=min_area)
    result.seconds = time.perf_counter() - started
    return result


def _rows_of(
    frame: PropagatedFrame, capture, tracks, rows: pd.DataFrame, propagator: Propagator
) -> list[dict]:
    sources = ",".join(str(rows.image_id.iloc[k]) for k in frame.sources)
    out = []
    for track in (t for t in present_ids(frame.labels) if t != 0):
        class_id, z_order = tracks[track]
        out.append(
            {
                "premask_id": propagated_id(str(capture.image_id), track, propagator.model_version),
                "image_id": capture.image_id,
                "episode_id": capture.episode_id,
                "frame_index": int(capture.frame_index),
                "track_id": track,
                "class_id": class_id,
                "z_order": z_order,
                "height": int(capture.height),
                "width": int(capture.width),
                "rle": encode_mask(frame.labels == track),
                "score": frame.id_confidence.get(track, frame.confidence),
                "backend": propagator.name,
                "model_version": propagator.model_version,
                "source_keyframes": sources,
                "distance": frame.distance,
            }
        )
    return out


def propagate_batch(
    store: DatasetStore,
    batch: str,
    taxonomy: Taxonomy,
    propagator: Propagator,
    thresholds: dict[str, float],
    *,
    min_area: int = 50,
) -> BatchPropagation:
    """Every episode of ``batch`` that has frames between its keyframes and all its keyframes reviewed."""
    started = time.perf_counter()
    captures = store.read_parquet(layout.captures_key(batch))
    keyframes = store.read_parquet(layout.keyframes_key(batch))
    annotations = keyframe_annotations(store.read_parquet(layout.annotations_key(batch)))
    labelled = set(annotations.image_id)
    result = BatchPropagation(
        schemas.PROPAGATED.frame(),
        schemas.TEMPORAL_CONSISTENCY.frame(),
        [],
        backend=propagator.name,
        model_version=propagator.model_version,
    )
    by_episode = {k: g for k, g in keyframes.groupby("episode_id", sort=False)}
    rows_out, consistency_rows = [], []
    for episode, rows in episodes_of(captures):
        chosen = by_episode.get(episode)
        if chosen is None or chosen.keyframe.all():
            continue  # labelled whole: nothing to propagate
        unknown = set(chosen.image_id) - set(rows.image_id)
        if unknown:
            raise PropagationError(
                episode, f"keyframe table image {sorted(unknown)[0]}", "is not a frame of the episode"
            )
        missing = [i for i in chosen.image_id[chosen.keyframe] if i not in labelled]
        if missing:
            result.waiting[episode] = missing
            continue
        chosen = chosen.set_index("image_id").loc[list(rows.image_id)].reset_index()
        frames = EpisodeFrames(store, rows, episode)
        mine = annotations[annotations.image_id.isin(set(rows.image_id))]
        episode_result = propagate_episode(frames, rows, chosen, mine, propagator, episode, min_area=min_area)
        result.episodes.append(episode_result)
        rows_out += episode_result.propagated_rows
        consistency_rows += consistency_table_rows(batch, episode_result, taxonomy, thresholds)
    result.table = schemas.PROPAGATED.frame(rows_out)
    result.consistency = schemas.TEMPORAL_CONSISTENCY.frame(consistency_rows)
    result.seconds = time.perf_counter() - started
    return result


def consistency_table_rows(
    batch: str, episode: EpisodeResult, taxonomy: Taxonomy, thresholds: dict[str, float]
) -> list[dict]:
    """Per class of an episode: the warped IoU of the transitions that touch a propagated frame,
    its threshold (by the class's category) and the flickers."""
    touched = [
        t
        for t in episode.consistency.transitions
        if not (episode.is_keyframe[t.frame] and episode.is_keyframe[t.frame - 1])
    ]
    scored = EpisodeConsistency(touched, episode.consistency.flickers).per_class()
    out = []
    for class_id, (count, mean, worst, worst_frame) in scored.items():
        cls = taxonomy.by_id(class_id)
        threshold = float(thresholds.get(cls.category, 0.0))
        out.append(
            {
                "batch": batch,
                "episode_id": episode.episode,
                "class_id": class_id,
                "class_name": cls.name,
                "category": cls.category,
                "transitions": count,
                "mean_warped_iou": mean,
                "min_warped_iou": worst,
                "worst_image_id": episode.image_ids[worst_frame],
                "worst_previous_image_id": episode.image_ids[worst_frame - 1],
                "threshold": threshold,
                "flickers": sum(1 for f in episode.consistency.flickers if f.class_id == class_id),
                "passed": mean >= threshold,
            }
        )
    return out


def class_map_of(instances: pd.DataFrame, height: int, width: int) -> np.ndarray:
    """The class map of one frame's rows (annotations or propagated masks)."""
    from dataset_pipeline.annotation_corpus import semantic_class_map

    return semantic_class_map(instances, height, width)


def worst_transitions_png(
    store: DatasetStore, batch: str, result: BatchPropagation, taxonomy: Taxonomy, count: int = 4
) -> bytes | None:
    """The frame pairs of the lowest warped IoU: the earlier frame with its labels, and the later
    one with the earlier labels moved onto it by the flow (red where they and its own labels disagree)."""
    from dataset_pipeline.episode_propagation.flow import dis_flow, gray, warp_labels
    from dataset_pipeline.figures import contact_sheet, overlay, png_bytes, with_legend

    if not len(result.consistency):
        return None
    captures = store.read_parquet(layout.captures_key(batch)).set_index("image_id")
    annotations = keyframe_annotations(store.read_parquet(layout.annotations_key(batch)))
    rows_of = {k: g for k, g in pd.concat([annotations, result.table]).groupby("image_id", sort=False)}
    palette = taxonomy.palette()
    tiles, captions = [], []
    worst = result.consistency.sort_values("min_warped_iou").drop_duplicates("worst_image_id").head(count)
    for row in worst.itertuples():
        pair = []
        for image_id in (row.worst_previous_image_id, row.worst_image_id):
            capture = captures.loc[image_id]
            rgb = decode_image(store.read_bytes(str(capture.uri)), str(capture.uri)).rgb
            labels = class_map_of(
                rows_of.get(image_id, result.table.iloc[:0]), int(capture.height), int(capture.width)
            )
            pair.append((rgb, labels))
        (before, before_map), (after, after_map) = pair
        moved = warp_labels(before_map, dis_flow(gray(after), gray(before)))
        classes = [c for c in np.unique(before_map) if c != 0]
        tiles.append(overlay(before, [before_map == c for c in classes], [palette[int(c)] for c in classes]))
        disagree = (moved != after_map) & ((moved == row.class_id) | (after_map == row.class_id))
        shown = [after_map == c for c in classes] + [disagree]
        tiles.append(overlay(after, shown, [palette[int(c)] for c in classes] + [(255, 0, 0)], alpha=0.4))
        captions += [
            f"{row.worst_previous_image_id.rsplit('/', 1)[-1]}",
            f"{row.worst_image_id.rsplit('/', 1)[-1]}: {row.class_name} warped IoU {row.min_warped_iou:.2f}",
        ]
    names = [c.name for c in taxonomy.foreground] + ["moved labels disagree"]
    colours = [c.rgb for c in taxonomy.foreground] + [(255, 0, 0)]
    return png_bytes(with_legend(contact_sheet(tiles, captions, columns=2, cell=320), names, colours))
