"""dataset_splits: train / val / test without leakage, stratified, deterministic by seed.

Images are first joined into **groups** that must never be split: the same scene_id, the
same episode_id, or near-duplicates (the same sha256, or a 64-bit difference hash within
``hash_distance`` bits) - a union-find over those links. Groups listed as held-out
environments (scene_ids) go to test whole. The rest are assigned greedily, largest first
(ties broken by a seeded shuffle), each to the split where it lowers a cost: the squared
distance of every split's share of images, of each lighting value and of each class's
presence from its target share.

Released images are **pinned**: an image that any release held keeps that release's split
(``tables/splits/released.parquet``), and its whole group goes with it, so new frames of a
released episode or scene join its split; only groups with no released image are assigned.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from dataset_pipeline import layout, schemas
from dataset_pipeline.store import DatasetStore
from dataset_pipeline.taxonomy import Taxonomy
from dataset_pipeline.verdicts import Verdict

if TYPE_CHECKING:
    import pyarrow as pa

SPLITS: tuple[str, ...] = ("train", "val", "test")
DEFAULT_SHARES = {"train": 0.70, "val": 0.15, "test": 0.15}


def difference_hash(data: bytes, size: int = 8) -> int:
    """64-bit dHash of an image: brighter-than-right-neighbour bits of a 9x8 grey thumbnail."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        image.draft("L", (size * 4, size * 4))  # JPEG: decode at reduced size
        grey = np.asarray(
            image.convert("L").resize((size + 1, size), Image.Resampling.BILINEAR), dtype=np.int16
        )
    bits = (grey[:, 1:] > grey[:, :-1]).ravel()
    return (
        int(np.packbits(bits).view(">u8")[0])
        if size == 8
        else int("".join("1" if b else "0" for b in bits), 2)
    )


def near_duplicate_pairs(hashes: np.ndarray, distance: int) -> Iterator[tuple[int, int]]:
    """Pairs (i, j) of 64-bit hashes at most ``distance`` bits apart that link every set of
    near-duplicates: each image of a set of equal hashes is paired with the set's first, and two
    close sets by their first images. Enough to join the sets (union-find), and to name every
    image whose split differs from a near-duplicate's at least once; all pairs could be n^2 / 2.

    Cut into ``distance + 1`` bands, two hashes that close agree on at least one band whole
    (pigeonhole), so only hashes sharing a band's value are compared: near-linear in the corpus
    (a 13-bit band of random hashes holds about n / 8,192 of them), where comparing all pairs
    in blocks of 512 rows held 3.2 GB at 100k images and cost n^2.

    >>> sorted(near_duplicate_pairs(np.array([0b1011, 0b1010, 1 << 40, 0b1011], np.uint64), 1))
    [(0, 3), (1, 0)]
    """
    values = np.asarray(hashes, dtype=np.uint64)
    unique, first, inverse = np.unique(values, return_index=True, return_inverse=True)
    inverse = inverse.reshape(-1)
    for position in np.flatnonzero(first[inverse] != np.arange(len(values))).tolist():
        yield int(first[inverse[position]]), position
    bands = distance + 1
    width = -(-64 // bands)
    seen: set[tuple[int, int]] = set()  # a pair close in several bands is named once
    for band in range(bands):
        bits = min(width, 64 - band * width)
        if bits <= 0:
            break
        keys = (unique >> np.uint64(band * width)) & np.uint64((1 << bits) - 1)
        order = np.argsort(keys, kind="stable")
        for bucket in np.split(order, np.flatnonzero(np.diff(keys[order])) + 1):
            block = unique[bucket]
            for start in range(0, len(bucket) - 1, 1024):  # a crowded band value, a row block at a time
                rows = block[start : start + 1024]
                apart = np.bitwise_count(rows[:, None] ^ block[None, :])
                for a, b in zip(*np.nonzero(apart <= distance), strict=True):
                    pair = (int(bucket[start + a]), int(bucket[b]))
                    if pair[0] < pair[1] and pair not in seen:
                        seen.add(pair)
                        yield int(first[pair[0]]), int(first[pair[1]])


def connected_labels(nodes: int, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per node, the smallest node of its connected component in the undirected graph of edges
    ``(a[k], b[k])``: roots hooked under the smaller root of each edge, then every node pointed
    at its root, until no edge joins two roots; in NumPy, a few passes over the edges.

    >>> connected_labels(6, np.array([0, 3, 4]), np.array([2, 2, 5])).tolist()
    [0, 1, 0, 0, 4, 4]
    """
    parent = np.arange(nodes, dtype=np.result_type(a, b, np.int32))
    while True:
        pa, pb = parent[a], parent[b]
        joined = pa != pb
        if not joined.any():
            return parent
        np.minimum.at(parent, np.maximum(pa, pb)[joined], np.minimum(pa, pb)[joined])
        while True:
            shortcut = parent[parent]
            if np.array_equal(shortcut, parent):
                break
            parent = shortcut


def leakage_groups(
    images: pd.DataFrame, hashes: np.ndarray | None = None, hash_distance: int = 4
) -> np.ndarray:
    """Group number per image: images sharing a scene, an episode, a sha256 or a near-equal hash,
    numbered in order of their first image.

    The connected components (:func:`connected_labels`) of a graph whose nodes are the images
    and each distinct scene, episode and checksum (edges: an image to its values, near-duplicate
    pairs), over integer codes: about 50 bytes an image, where a union-find over the values as
    Python objects held ten times that.

    >>> frame = pd.DataFrame({"scene_id": ["a", "a", "b", "c"], "episode_id": ["1", "2", "3", "3"], "sha256": ["x", "y", "z", "w"]})
    >>> leakage_groups(frame).tolist()
    [0, 0, 1, 1]
    """
    n = len(images)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    sources, targets, nodes = [], [], n
    index = np.int32 if 4 * n < 2**31 else np.int64  # nodes: images and at most 3 values each
    for column in ("scene_id", "episode_id", "sha256"):
        if column not in images:
            continue
        column_values = images[column]
        if isinstance(column_values.dtype, pd.CategoricalDtype):  # lean features: codes already there
            codes, distinct = column_values.cat.codes.to_numpy(), len(column_values.cat.categories)
        else:
            codes, values = pd.factorize(column_values)
            distinct = len(values)
        linked = np.flatnonzero(codes >= 0)  # a missing value is -1: no link
        sources.append(linked.astype(index))
        targets.append(codes[linked].astype(index) + nodes)
        nodes += distinct
    if hashes is not None and n > 1:
        pairs = np.fromiter(
            (k for pair in near_duplicate_pairs(hashes, hash_distance) for k in pair), dtype=index
        ).reshape(-1, 2)
        sources.append(pairs[:, 0])
        targets.append(pairs[:, 1])
    labels = connected_labels(
        nodes,
        np.concatenate(sources) if sources else np.zeros(0, index),
        np.concatenate(targets) if targets else np.zeros(0, index),
    )[:n]
    found, first = np.unique(labels, return_index=True)
    rank = np.empty(len(found), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(found))
    return rank[np.searchsorted(found, labels)]


@dataclass
class SplitPlan:
    assignments: pd.DataFrame  # image_id, split, group
    shares: dict[str, float]
    targets: dict[str, float]
    notes: list[str] = field(default_factory=list)


def assign_splits(
    images: pd.DataFrame,
    class_presence: pd.DataFrame,
    *,
    shares: dict[str, float] | None = None,
    seed: int = 0,
    held_out_scenes: list[str] | tuple[str, ...] = (),
    hashes: np.ndarray | None = None,
    hash_distance: int = 4,
    pinned: dict[str, str] | None = None,
) -> SplitPlan:
    """Assign every image to a split; ``class_presence`` is a 0/1 frame (index image_id, a column per class).

    ``pinned``: image_id -> the split a release gave it. Those images keep it; a group holding
    pinned images takes their split (the most common, when a new near-duplicate or episode
    links groups released in different splits: the leakage check then names them)."""
    targets = dict(shares or DEFAULT_SHARES)
    if set(targets) != set(SPLITS) or abs(sum(targets.values()) - 1.0) > 1e-6 or min(targets.values()) < 0:
        raise ValueError(f"split shares must be non-negative for {SPLITS} and add up to 1, got {targets}")
    images = images.reset_index(drop=True)
    groups = leakage_groups(images, hashes, hash_distance)
    presence = class_presence.reindex(images.image_id).fillna(0).to_numpy(dtype=np.float64)
    lighting = (
        pd.get_dummies(images.lighting).to_numpy(dtype=np.float64)
        if "lighting" in images
        else np.zeros((len(images), 0))
    )
    features = np.hstack(
        [np.ones((len(images), 1)), lighting, presence]
    )  # images, lighting values, class presence
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    group_features = np.zeros((n_groups, features.shape[1]))
    np.add.at(group_features, groups, features)
    totals = group_features.sum(axis=0)
    target = np.array([targets[s] for s in SPLITS])
    weights = np.ones(features.shape[1])
    weights[0] = 4.0  # the split sizes matter most

    split_of_group = np.full(n_groups, -1)
    notes = []
    pinned_index = _pinned_positions(images, pinned or {})
    for g, kept in _group_splits(groups, pinned_index).items():
        split_of_group[g] = kept
    if pinned_index:
        notes.append(
            f"kept {len(pinned_index)} released images in their splits "
            f"({int((split_of_group >= 0).sum())} groups pinned)"
        )
    held = set(held_out_scenes)
    if held:
        for g in np.unique(groups[images.scene_id.isin(held).to_numpy()]):
            if split_of_group[g] < 0:
                split_of_group[g] = SPLITS.index("test")
        notes.append(f"held out for test: scenes {sorted(held)}")
    rng = np.random.default_rng(seed)
    order = [g for g in rng.permutation(n_groups) if split_of_group[g] < 0]
    order.sort(key=lambda g: -group_features[g, 0])  # stable: largest first, seeded ties
    current = np.zeros((len(SPLITS), features.shape[1]))
    for g in range(n_groups):
        if split_of_group[g] >= 0:
            current[split_of_group[g]] += group_features[g]
    safe_totals = np.where(totals > 0, totals, 1.0)
    for g in order:
        best, best_cost = 0, np.inf
        for s in range(len(SPLITS)):
            trial = current.copy()
            trial[s] += group_features[g]
            share = trial / safe_totals
            cost = float((weights * (share - target[:, None]) ** 2).sum())
            if cost < best_cost:
                best, best_cost = s, cost
        split_of_group[g] = best
        current[best] += group_features[g]
    split = np.array(SPLITS)[split_of_group[groups]] if len(groups) else np.array([], dtype=str)
    for position, kept in pinned_index.items():  # a released image never moves, whatever its group
        split[position] = SPLITS[kept]
    assignments = pd.DataFrame({"image_id": images.image_id, "split": split, "group": groups})
    achieved = {s: float((split == s).mean()) if len(split) else 0.0 for s in SPLITS}
    return SplitPlan(assignments=assignments, shares=achieved, targets=targets, notes=notes)


def _pinned_positions(images: pd.DataFrame, pinned: dict[str, str]) -> dict[int, int]:
    """Row position -> split index of the images a release pinned (unknown splits are refused)."""
    out = {}
    for position, image_id in enumerate(images.image_id.tolist()):
        if image_id in pinned:
            if pinned[image_id] not in SPLITS:
                raise ValueError(
                    f"{layout.RELEASED_SPLITS_KEY}: image {image_id!r} has split {pinned[image_id]!r}, not one of {SPLITS}"
                )
            out[position] = SPLITS.index(pinned[image_id])
    return out


def _group_splits(groups: np.ndarray, pinned: dict[int, int]) -> dict[int, int]:
    """Group -> the split of its pinned images (the most common; ties in SPLITS order).

    >>> _group_splits(np.array([0, 0, 1, 1, 1]), {0: 2, 2: 1, 3: 0, 4: 1})
    {0: 2, 1: 1}
    """
    votes: dict[int, list[int]] = {}
    for position, split in pinned.items():
        votes.setdefault(int(groups[position]), [0] * len(SPLITS))[split] += 1
    return {g: int(np.argmax(v)) for g, v in sorted(votes.items())}


def released_splits(store: DatasetStore) -> dict[str, str]:
    """image_id -> split of every image a release has held (empty before the first release):
    the registry's parts in recording order, an image's first entry kept."""
    parts = [layout.RELEASED_SPLITS_KEY] if store.exists(layout.RELEASED_SPLITS_KEY) else []
    parts += sorted(k for k in store.list(layout.RELEASED_SPLITS_PARTS) if k.endswith(".parquet"))
    split_of: dict[str, str] = {}
    for key in parts:
        table = store.read_table(key, columns=["image_id", "split"])
        for image_id, split in zip(
            table.column("image_id").to_pylist(), table.column("split").to_pylist(), strict=True
        ):
            split_of.setdefault(image_id, split)
    return split_of


def record_released_splits(store: DatasetStore, splits: pd.DataFrame, version: str) -> int:
    """Add a completed release's images (``image_id``, ``split``) to the registry as a part of
    its own (``layout.released_splits_part``); an image already there keeps its first entry.
    Returns how many images were new to it. Two releases completing at once each add their part;
    an image both held new keeps the split of the part recorded first."""
    import datetime

    before = released_splits(store)
    new = splits.loc[~splits.image_id.isin(set(before)), ["image_id", "split"]].assign(version=version)
    if len(new):
        recorded_at = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        store.write_parquet(
            layout.released_splits_part(recorded_at, version), schemas.RELEASED_SPLITS.cast(new)
        )
    return len(new)


def closest_split(
    group_sizes: np.ndarray,
    targets: dict[str, float],
    test_groups: np.ndarray | None = None,
    resolution: int = 400,
) -> tuple[float, float]:
    """How close any split that keeps every group whole can come to the targets: (the smallest
    largest distance of a split's share from its target, the error that estimate may have).

    Exact while the corpus has at most ``resolution`` images; beyond, group sizes are counted in
    ``N / resolution``-image units and groups smaller than one unit fill the gaps as sand (the
    error bounds what the rounding can hide). ``test_groups``: groups held out for test.

    >>> sizes = np.array([50, 30, 20])  # three scenes: 50% / 30% / 20% of the images
    >>> round(closest_split(sizes, {"train": 0.7, "val": 0.15, "test": 0.15})[0], 3)
    0.15
    """
    sizes = np.asarray(group_sizes, dtype=np.float64)
    total = float(sizes.sum())
    if total == 0:
        return 0.0, 0.0
    unit = max(1.0, np.ceil(total / resolution))
    held = np.zeros(len(sizes), bool) if test_groups is None else np.isin(np.arange(len(sizes)), test_groups)
    large = (sizes >= unit) & ~held
    units = np.rint(sizes[large] / unit).astype(np.int64)
    sand = float(sizes[~large & ~held].sum()) / unit
    fixed_test = float(sizes[held].sum()) / unit
    side = int(units.sum()) + 1
    reachable = np.zeros((side, side), bool)  # [train units, val units] reachable with the large groups
    reachable[0, 0] = True
    for size in units:
        grown = reachable.copy()
        grown[size:, :] |= reachable[:-size, :]
        grown[:, size:] |= reachable[:, :-size]
        reachable = grown
    train, val = np.nonzero(reachable)
    large_total = float(units.sum())
    scale = large_total + sand + fixed_test
    x = np.stack([train, val, large_total - train - val + fixed_test]).astype(np.float64) / scale
    t = np.array([targets[s] for s in SPLITS])[:, None]
    d_over = np.max(x - t, axis=0).clip(min=0)  # sand can only add to a split
    # the least largest shortfall once the sand is poured where shares fall short of their targets
    short = np.sort(t - x, axis=0)[::-1]
    s = sand / scale
    d_short = np.full(x.shape[1], np.inf)
    for k in (1, 2, 3):
        d = (short[:k].sum(axis=0) - s) / k
        valid = (d >= short[k]) if k < 3 else np.ones_like(d, bool)
        d_short = np.where(np.isinf(d_short) & valid, d, d_short)
    best = float(np.min(np.maximum(d_over, d_short.clip(min=0))))
    error = 0.5 * unit * int(large.sum()) / total if unit > 1 else 0.0
    return best, float(error)


def leaks(
    assignments: pd.DataFrame, images: pd.DataFrame, hashes: np.ndarray | None = None, hash_distance: int = 4
) -> list[str]:
    """Every scene, episode, checksum or near-duplicate pair found in more than one split
    (values as integer codes: no per-image Python object)."""
    if len(assignments) == len(images) and assignments.image_id.equals(images.image_id):
        split = assignments.split  # assign_splits' own order: no index over the image ids
    else:
        split = pd.Series(assignments.split.to_numpy(), index=assignments.image_id.to_numpy())
        split = split.reindex(images.image_id.to_numpy())
    split_codes, split_names = pd.factorize(split)  # an image without a split is -1
    placed, n_splits = split_codes >= 0, max(1, len(split_names))
    found = []
    for column in ("scene_id", "episode_id", "sha256"):
        if column not in images:
            continue
        codes, values = pd.factorize(images[column], sort=True)
        mine = placed & (codes >= 0)
        both = np.unique(codes[mine].astype(np.int64) * n_splits + split_codes[mine])  # (value, split)
        value_of = both // n_splits
        spread, splits_of_value = np.unique(value_of, return_counts=True)
        for value in spread[splits_of_value > 1]:
            where = sorted(str(split_names[c]) for c in both[value_of == value] % n_splits)
            shown = values[value]
            label = (
                f"'{int(shown):016x}…'" if isinstance(shown, np.integer) else repr(shown)
            )  # a sha256 prefix
            found.append(f"{column} {label} in {where}")
    if hashes is not None and int(placed.sum()) > 1:
        positions = np.flatnonzero(placed)
        values = np.asarray(hashes, dtype=np.uint64)[positions]
        codes = split_codes[positions]  # names and ids looked up for the pairs found only
        for i, j in near_duplicate_pairs(values, hash_distance):
            if codes[i] != codes[j]:
                a, b = (images.image_id.iat[int(positions[p])] for p in (i, j))
                found.append(
                    f"near-duplicates {a} ({split_names[codes[i]]}) and {b} ({split_names[codes[j]]})"
                )
    return found


def class_instances(annotations: pd.DataFrame, taxonomy: Taxonomy) -> pd.DataFrame:
    """Instances per image (rows) and foreground class (columns, by name), every annotator's."""
    names = {c.id: c.name for c in taxonomy.foreground}
    present = annotations.assign(name=annotations.class_id.map(names)).dropna(subset=["name"])
    table = pd.crosstab(present.image_id, present.name)
    return table.reindex(columns=[c.name for c in taxonomy.foreground], fill_value=0)


def class_presence(annotations: pd.DataFrame, taxonomy: Taxonomy) -> pd.DataFrame:
    """0/1 per image (rows) and foreground class (columns, by name): any annotator drew it."""
    return class_instances(annotations, taxonomy).clip(upper=1)


@dataclass
class SplitOutcome:
    """What :func:`split_corpus` made: the splits table, its facts (``info.json``), a summary per split."""

    table: pd.DataFrame  # schemas.SPLITS
    info: dict
    summary: pd.DataFrame  # per split: images, scenes, groups, per lighting, instances per class
    made: list[str] = field(default_factory=list)  # update_splits: the batches whose features were made again


#: The images' columns the splits are decided by.
SPLIT_COLUMNS: tuple[str, ...] = ("image_id", "scene_id", "episode_id", "sha256", "lighting")
#: A feature table's column of a class's instances on an image.
INSTANCES = "instances:"


def _dhash_hex(store: DatasetStore, image_id: str, uri: str) -> str:
    try:
        return f"{difference_hash(store.read_bytes(uri)):016x}"
    except (OSError, ValueError) as exc:  # PIL's UnidentifiedImageError is an OSError
        raise ValueError(
            f"{store.url(uri)}: image {image_id!r} (field uri) cannot be read for its dHash ({exc})"
        ) from exc


def split_features(
    store: DatasetStore, images: pd.DataFrame, annotations: pd.DataFrame, taxonomy: Taxonomy
) -> pd.DataFrame:
    """Per image what the splits are decided by and nothing more (no mask): the split columns,
    the dHash (read from the image's bytes), and instances per foreground class
    (``instances:<name>``): about 1 KB an image as pandas objects."""
    features = images[[c for c in SPLIT_COLUMNS if c in images]].reset_index(drop=True)
    features["dhash"] = [
        _dhash_hex(store, image_id, uri) for image_id, uri in zip(images.image_id, images.uri, strict=True)
    ]
    counts = class_instances(annotations, taxonomy).reindex(features.image_id).fillna(0).astype("int64")
    for name in counts.columns:
        features[INSTANCES + name] = counts[name].to_numpy()
    return features


def split_corpus(
    store: DatasetStore,
    images: pd.DataFrame,
    annotations: pd.DataFrame,
    taxonomy: Taxonomy,
    **rules: Any,
) -> SplitOutcome:
    """Split the corpus held in memory (every image's dHash read from the store); ``rules`` are
    :func:`split_by_features`' (:func:`update_splits` splits the stored corpus batch by batch)."""
    return split_by_features(store, split_features(store, images, annotations, taxonomy), **rules)


def lean_features(table: pa.Table, source: str = "split features") -> pa.Table:
    """A batch's features (:func:`split_features`, as Arrow) as the split is decided over them:
    scenes, episodes and lighting dictionary-encoded, the sha256 as its 64-bit prefix (equal
    checksums are what groups images; a prefix shared by two different images would only join
    their groups), instances as int32. About 110 bytes an image, where the features as pandas
    strings are 250 and their reading peaks at twice that."""
    import pyarrow as pa

    from dataset_pipeline.formats.arrow import hex_words

    names = table.column_names
    columns: dict[str, pa.Array] = {"image_id": table.column("image_id").combine_chunks().cast(pa.string())}
    for name in ("scene_id", "episode_id", "lighting"):
        if name in names:
            columns[name] = table.column(name).combine_chunks().cast(pa.string()).dictionary_encode()
    if "sha256" in names:
        columns["sha256"] = pa.array(
            hex_words(table.column("sha256"), f"{source}: field sha256"), pa.uint64()
        )
    columns["dhash"] = table.column("dhash").combine_chunks().cast(pa.string())
    for name in names:
        if name.startswith(INSTANCES):
            columns[name] = table.column(name).combine_chunks().cast(pa.int32())
    return pa.table(columns)


def _lean_frame(table: pa.Table) -> pd.DataFrame:
    """The lean features as pandas: the encoded columns as categoricals, their categories sorted
    (summaries list lighting values in order, leaks name values in order)."""
    frame = table.unify_dictionaries().to_pandas()
    for name in ("scene_id", "episode_id", "lighting"):
        if name in frame and isinstance(frame[name].dtype, pd.CategoricalDtype):
            frame[name] = frame[name].cat.set_categories(sorted(frame[name].cat.categories))
    return frame


def split_by_features(
    store: DatasetStore,
    features: pd.DataFrame | pa.Table,
    *,
    shares: dict[str, float] | None = None,
    seed: int = 0,
    held_out_scenes: list[str] | tuple[str, ...] = (),
    hash_distance: int = 4,
) -> SplitOutcome:
    """Split the images of ``features`` (:func:`split_features`, or its :func:`lean_features`)
    and describe the result; images a release held keep its split (``released_splits``)."""
    import pyarrow as pa

    from dataset_pipeline.formats.arrow import as_arrow, hex_words

    table = as_arrow(features)
    del features
    if "sha256" in table.column_names and not pa.types.is_uint64(table.schema.field("sha256").type):
        table = lean_features(table)  # split_features' table, not yet lean
    hashes = hex_words(table.column("dhash"), "split features: field dhash")
    frame = _lean_frame(table)
    del table
    counted = [c for c in frame.columns if c.startswith(INSTANCES)]
    images = frame.drop(columns=[*counted, "dhash"])
    instances = frame.set_index("image_id")[counted].rename(columns=lambda c: c[len(INSTANCES) :])
    presence = instances.clip(upper=1).astype(np.int8)
    dhash = frame.dhash
    del frame  # its columns live on in images, instances and dhash
    pinned = released_splits(store)
    plan = assign_splits(
        images,
        presence,
        shares=shares,
        seed=seed,
        held_out_scenes=held_out_scenes,
        hashes=hashes,
        hash_distance=hash_distance,
        pinned=pinned,
    )
    split_table = schemas.SPLITS.from_columns(
        {**{c: plan.assignments[c] for c in plan.assignments}, "dhash": dhash}
    )
    found = leaks(plan.assignments, images, hashes, hash_distance)
    # assign_splits keeps the images' order: its assignments line up with them row by row
    split = plan.assignments.split.to_numpy()
    merged = images.assign(split=split, group=plan.assignments.group.to_numpy())
    per_split = merged.groupby("split").agg(
        images=("image_id", "size"), scenes=("scene_id", "nunique"), groups=("group", "nunique")
    )
    lighting = pd.crosstab(merged.split, merged.lighting.astype(str))
    per_class = instances.set_axis(split).groupby(level=0).sum()
    per_class = per_class.loc[:, per_class.sum() > 0].sort_index(axis=1)
    summary = (
        per_split.join(lighting).join(per_class).reindex(list(SPLITS)).fillna(0).astype(int).reset_index()
    )
    group_sizes = np.bincount(plan.assignments.group.to_numpy()) if len(split_table) else np.zeros(0)
    held_groups = np.unique(plan.assignments.group[images.scene_id.isin(list(held_out_scenes)).to_numpy()])
    closest, closest_error = closest_split(group_sizes, plan.targets, held_groups)
    present_in = {s: presence[split == s].sum() for s in SPLITS}
    info = {
        "shares": plan.shares,
        "targets": plan.targets,
        "closest_possible": round(closest, 4),
        "closest_error": round(closest_error, 4),
        "groups": int(plan.assignments.group.nunique()),
        "largest_group_share": float(plan.assignments.group.value_counts(normalize=True).max())
        if len(split_table)
        else 0.0,
        "leaks": found,
        "classes_missing": {s: [c for c in presence.columns if int(present_in[s][c]) == 0] for s in SPLITS},
        "notes": plan.notes,
        "seed": seed,
        "pinned": int(plan.assignments.image_id.isin(set(pinned)).sum()),
    }
    return SplitOutcome(table=split_table, info=info, summary=summary)


#: Bump when :func:`split_features` derives a batch's features differently.
PART_VERSION = 1
STAGE = "splits"


def update_splits(store: DatasetStore, taxonomy: Taxonomy, **rules: Any) -> SplitOutcome:
    """Split the stored corpus: each batch's features (:func:`split_features`: its images' dHash,
    read from their bytes, and class instances) are made once from its corpus part and kept under
    ``tables/splits/batches/<batch>/`` while that part and the taxonomy's classes are unchanged;
    the split is decided over every batch's :func:`lean_features`, read one part at a time, about
    110 bytes an image (no mask, no image held). ``rules``: :func:`split_by_features`'."""
    from dataset_pipeline.annotation_corpus import corpus_batches, corpus_part_keys
    from dataset_pipeline.batch_parts import update_parts

    def make(batch: str) -> dict:
        annotations, images = (store.read_parquet(k) for k in corpus_part_keys(batch))
        features = split_features(store, images, annotations, taxonomy)
        store.write_parquet(layout.stage_part_key(STAGE, batch, "features.parquet"), features)
        return {"images": len(features)}

    batches = corpus_batches(store)
    names = [c.name for c in taxonomy.foreground]
    _, made = update_parts(
        store, STAGE, batches, lambda batch: list(corpus_part_keys(batch)), (PART_VERSION, names), make
    )
    # handed over, not held here: split_by_features lets go of the Arrow table once it has its frame
    outcome = split_by_features(store, _lean_parts(store, batches), **rules)
    outcome.made = made
    return outcome


def _lean_parts(store: DatasetStore, batches: list[str]) -> pa.Table | pd.DataFrame:
    """Every batch's features part as :func:`lean_features`, read one part at a time."""
    import pyarrow as pa

    parts = []
    for batch in batches:
        key = layout.stage_part_key(STAGE, batch, "features.parquet")
        parts.append(lean_features(store.read_table(key), store.url(key)))
    if not parts:
        return pd.DataFrame(columns=[*SPLIT_COLUMNS, "dhash"])
    return pa.concat_tables(parts, promote_options="permissive")


def write_splits(store: DatasetStore, outcome: SplitOutcome) -> None:
    store.write_parquet(layout.SPLITS_KEY, outcome.table)
    store.write_bytes(layout.SPLIT_INFO_KEY, json.dumps(outcome.info, indent=2).encode())


def leakage_verdict(info: dict, hash_distance: int = 4) -> Verdict:
    """No scene, episode, checksum or near-duplicate sits in two splits."""
    found = info["leaks"]
    return Verdict(
        passed=not found,
        summary="; ".join(found[:20]) or "no leakage across splits",
        figures={"leaks": len(found)},
        settings={"hash_distance": hash_distance},
    )


def shares_verdict(info: dict, share_tolerance: float, seed: int = 0) -> Verdict:
    """Each split's share is within ``share_tolerance`` of its target - or no split that keeps the
    leakage groups whole could be: a target the data cannot meet is a warning (``Verdict.warning``)
    with its reason, not a block. It blocks when a closer split exists and was not found."""
    shares, targets = info["shares"], info["targets"]
    off = [s for s in SPLITS if abs(shares[s] - targets[s]) > share_tolerance]
    summary = ", ".join(f"{s} {shares[s]:.1%} (target {targets[s]:.0%})" for s in SPLITS)
    closest = info.get("closest_possible", 0.0)
    exists = closest + info.get("closest_error", 0.0) <= share_tolerance
    if off and exists:
        summary = (
            f"off target: {', '.join(off)}, though a split keeping every leakage group whole comes within "
            f"{closest:.1%} of every target; the assigner did not find it (another split_rules.seed may). "
            + summary
        )
    elif off:
        summary = (
            f"off target: {', '.join(off)} - as close as the data allows: {info['groups']} leakage groups, the "
            f"largest holds {info['largest_group_share']:.0%} of the images, and no split keeping them whole comes "
            f"closer than {closest:.1%} to every target. Not blocking; more scenes or episodes would help. "
            + summary
        )
    return Verdict(
        passed=not off,
        summary=summary,
        figures={"groups": info["groups"], "closest_possible": closest},
        settings={"share_tolerance": share_tolerance, "seed": seed},
        warning=bool(off) and not exists,
    )


def classes_verdict(info: dict) -> Verdict:
    """Every class is present in every split."""
    missing = {s: names for s, names in info["classes_missing"].items() if names}
    return Verdict(
        passed=not missing,
        summary="; ".join(f"{s} lacks {', '.join(n)}" for s, n in missing.items())
        or "every class in every split",
    )
