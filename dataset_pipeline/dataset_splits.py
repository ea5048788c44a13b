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
from dataset_pipeline.formats.arrow import as_arrow
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
            step = max(1, (1 << 17) // len(bucket))  # a crowded band value: 1 MiB of XORs at a time
            for start in range(0, len(bucket) - 1, step):
                rows = block[start : start + step]
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


@dataclass
class SplitInputs:
    """What a split is decided by, one row per image, as arrays: no Python object per image.

    ``columns``: scene_id, episode_id, sha256 and lighting (those present) as integer codes
    (-1: missing) into their distinct values, sorted; ``instances``: images x ``classes``."""

    image_id: pa.Array | pa.ChunkedArray
    columns: dict[str, tuple[np.ndarray, pa.Array]]
    instances: np.ndarray
    classes: list[str]
    hashes: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.image_id)


def coded(column: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """A column as int32 codes into its distinct values in sorted order (-1: missing), and those
    values; a dictionary-encoded column keeps its dictionary.

    >>> import pyarrow as pa
    >>> codes, values = coded(pa.array(["b", None, "a", "b"]))
    >>> codes.tolist(), values.to_pylist()
    ([1, -1, 0, 1], ['a', 'b'])
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_integer(array.type) and not array.null_count:  # a checksum prefix: no hash table
        values, inverse = np.unique(array.to_numpy(), return_inverse=True)
        return inverse.reshape(-1).astype(np.int32), pa.array(values)
    if not pa.types.is_dictionary(array.type):
        array = pc.dictionary_encode(array)
    order = pc.array_sort_indices(array.dictionary).to_numpy()
    rank = np.empty(len(order), dtype=np.int32)
    rank[order] = np.arange(len(order), dtype=np.int32)
    indices = pc.fill_null(array.indices, -1).to_numpy(zero_copy_only=False)
    codes = np.full(len(indices), -1, dtype=np.int32)
    present = indices >= 0
    codes[present] = rank[indices[present]]
    return codes, array.dictionary.take(pa.array(order, pa.int64()))


#: The images' columns that join images into leakage groups.
LINK_COLUMNS: tuple[str, ...] = ("scene_id", "episode_id", "sha256")


def frame_inputs(
    images: pd.DataFrame, class_presence: pd.DataFrame | None = None, hashes: np.ndarray | None = None
) -> SplitInputs:
    """:class:`SplitInputs` of an images frame (``image_id`` and any of the link columns and
    ``lighting``) and a per-image class frame (index image_id, a column per class)."""
    import pyarrow as pa

    images = images.reset_index(drop=True)
    classes = pd.DataFrame(index=images.image_id) if class_presence is None else class_presence
    instances = classes.reindex(images.image_id).fillna(0).to_numpy(dtype=np.int32)
    return SplitInputs(
        image_id=pa.array(images.image_id.astype(str), pa.string()),
        columns={c: coded(pa.array(images[c])) for c in (*LINK_COLUMNS, "lighting") if c in images},
        instances=instances.reshape(len(images), -1),
        classes=[str(c) for c in classes.columns],
        hashes=None if hashes is None else np.asarray(hashes, dtype=np.uint64),
    )


def near_pairs(
    hashes: np.ndarray | None, hash_distance: int = 4, among: np.ndarray | None = None
) -> np.ndarray:
    """:func:`near_duplicate_pairs` as an (m, 2) int64 array of image positions (``among``: only
    those positions' hashes compared), made once and used by both the groups and the leak check.

    >>> near_pairs(np.array([7, 1 << 40, 6], np.uint64), 1).tolist()
    [[2, 0]]
    """
    if hashes is None or len(hashes) < 2:
        return np.zeros((0, 2), dtype=np.int64)
    positions = np.arange(len(hashes)) if among is None else np.asarray(among, dtype=np.int64)
    values = np.asarray(hashes, dtype=np.uint64)[positions]
    found = np.fromiter(
        (k for pair in near_duplicate_pairs(values, hash_distance) for k in pair), dtype=np.int64
    ).reshape(-1, 2)
    return positions[found]


def group_numbers(inputs: SplitInputs, pairs: np.ndarray | None = None) -> np.ndarray:
    """Group number per image: images sharing a scene, an episode, a sha256 or a near-equal hash,
    numbered in order of their first image.

    The connected components (:func:`connected_labels`) of a graph whose nodes are the images
    and each distinct scene, episode and checksum (edges: an image to its values, near-duplicate
    pairs), over integer codes: about 50 bytes an image, where a union-find over the values as
    Python objects held ten times that. ``pairs``: :func:`near_pairs`, none when not given."""
    n = len(inputs)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    sources, targets, nodes = [], [], n
    index = np.int32 if 4 * n < 2**31 else np.int64  # nodes: images and at most 3 values each
    for column in LINK_COLUMNS:
        if column not in inputs.columns:
            continue
        codes, values = inputs.columns[column]
        present = codes >= 0  # a missing value is -1: no link
        shared = np.bincount(codes[present], minlength=len(values)) > 1  # one image's value links none
        linked = np.flatnonzero(present & shared[np.maximum(codes, 0)])
        sources.append(linked.astype(index))
        targets.append(codes[linked].astype(index) + nodes)
        nodes += len(values)
    if pairs is not None and len(pairs):
        sources.append(pairs[:, 0].astype(index))
        targets.append(pairs[:, 1].astype(index))
    labels = connected_labels(
        nodes,
        np.concatenate(sources) if sources else np.zeros(0, index),
        np.concatenate(targets) if targets else np.zeros(0, index),
    )[:n]
    found, first = np.unique(labels, return_index=True)
    rank = np.empty(len(found), dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(found))
    return rank[np.searchsorted(found, labels)]


def leakage_groups(
    images: pd.DataFrame, hashes: np.ndarray | None = None, hash_distance: int = 4
) -> np.ndarray:
    """:func:`group_numbers` of an images frame.

    >>> frame = pd.DataFrame({"scene_id": ["a", "a", "b", "c"], "episode_id": ["1", "2", "3", "3"], "sha256": ["x", "y", "z", "w"]})
    >>> leakage_groups(frame.assign(image_id=list("pqrs"))).tolist()
    [0, 0, 1, 1]
    """
    return group_numbers(frame_inputs(images, hashes=hashes), near_pairs(hashes, hash_distance))


@dataclass
class SplitPlan:
    assignments: pd.DataFrame  # image_id, split, group
    shares: dict[str, float]
    targets: dict[str, float]
    notes: list[str] = field(default_factory=list)


def split_targets(shares: dict[str, float] | None) -> dict[str, float]:
    targets = dict(shares or DEFAULT_SHARES)
    if set(targets) != set(SPLITS) or abs(sum(targets.values()) - 1.0) > 1e-6 or min(targets.values()) < 0:
        raise ValueError(f"split shares must be non-negative for {SPLITS} and add up to 1, got {targets}")
    return targets


def split_shares(split: np.ndarray) -> dict[str, float]:
    """Each split's share of the images (``split``: the split index per image).

    >>> split_shares(np.array([0, 0, 1, 2], np.int8))
    {'train': 0.5, 'val': 0.25, 'test': 0.25}
    """
    return {s: float((split == i).mean()) if len(split) else 0.0 for i, s in enumerate(SPLITS)}


def held_out(inputs: SplitInputs, scenes: list[str] | tuple[str, ...]) -> np.ndarray:
    """Per image: its scene is one of ``scenes``."""
    if not scenes or "scene_id" not in inputs.columns:
        return np.zeros(len(inputs), dtype=bool)
    codes, values = inputs.columns["scene_id"]
    wanted = set(scenes)
    held = [k for k, value in enumerate(values.to_pylist()) if value in wanted]
    return np.isin(codes, np.array(held, dtype=codes.dtype))


def decide_splits(
    inputs: SplitInputs,
    groups: np.ndarray,
    targets: dict[str, float],
    *,
    seed: int = 0,
    held_out_scenes: list[str] | tuple[str, ...] = (),
    pinned: np.ndarray | None = None,
) -> tuple[np.ndarray, list[str]]:
    """The split index (into ``SPLITS``) per image, and notes.

    Groups are assigned greedily, largest first (ties in a seeded order), each to the split
    where it lowers the squared distance of every split's share of images, of each lighting
    value and of each class's presence from its target. ``held_out_scenes``: their groups go to
    test whole. ``pinned``: per image the split index a release gave it, -1 for none; those images
    keep it and their group takes it (the most common, ties in SPLITS order, when a new image
    links groups released in different splits: the leakage check then names them)."""
    n, k = len(inputs), len(SPLITS)
    n_groups = int(groups.max()) + 1 if n else 0
    columns: list[np.ndarray] = [np.bincount(groups, minlength=n_groups)]  # images
    if "lighting" in inputs.columns:
        light, values = inputs.columns["lighting"]
        lit = light >= 0
        counts = np.bincount(groups[lit] * len(values) + light[lit], minlength=n_groups * len(values))
        columns += list(counts.reshape(n_groups, len(values)).T)
    columns += [
        np.bincount(groups, weights=inputs.instances[:, c] > 0, minlength=n_groups)
        for c in range(inputs.instances.shape[1])
    ]
    group_features = np.column_stack(columns).astype(np.float64)
    totals = group_features.sum(axis=0)
    target = np.array([targets[s] for s in SPLITS])
    weights = np.ones(group_features.shape[1])
    weights[0] = 4.0  # the split sizes matter most

    split_of_group = np.full(n_groups, -1)
    notes = []
    pinned = np.full(n, -1, dtype=np.int8) if pinned is None else pinned
    kept = pinned >= 0
    if kept.any():
        votes = np.bincount(groups[kept] * k + pinned[kept], minlength=n_groups * k).reshape(n_groups, k)
        voted = votes.sum(axis=1) > 0
        split_of_group[voted] = votes[voted].argmax(axis=1)
        notes.append(
            f"kept {int(kept.sum())} released images in their splits ({int(voted.sum())} groups pinned)"
        )
    if held_out_scenes:
        for g in np.unique(groups[held_out(inputs, held_out_scenes)]):
            if split_of_group[g] < 0:
                split_of_group[g] = SPLITS.index("test")
        notes.append(f"held out for test: scenes {sorted(set(held_out_scenes))}")
    rng = np.random.default_rng(seed)
    order = [g for g in rng.permutation(n_groups) if split_of_group[g] < 0]
    order.sort(key=lambda g: -group_features[g, 0])  # stable: largest first, seeded ties
    current = np.zeros((k, group_features.shape[1]))
    for g in np.flatnonzero(split_of_group >= 0):
        current[split_of_group[g]] += group_features[g]
    safe_totals = np.where(totals > 0, totals, 1.0)
    for g in order:
        best, best_cost = 0, np.inf
        for s in range(k):
            trial = current.copy()
            trial[s] += group_features[g]
            share = trial / safe_totals
            cost = float((weights * (share - target[:, None]) ** 2).sum())
            if cost < best_cost:
                best, best_cost = s, cost
        split_of_group[g] = best
        current[best] += group_features[g]
    split = split_of_group[groups].astype(np.int8) if n else np.zeros(0, dtype=np.int8)
    split[kept] = pinned[kept]  # a released image never moves, whatever its group
    return split, notes


def pinned_splits(image_id: pa.Array, released: pa.Table) -> np.ndarray:
    """Per image the split index a release gave it (``released``: image_id, split), -1 for none;
    a split that is not one of ``SPLITS`` is refused, naming the image."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if len(released) == 0:
        return np.full(len(image_id), -1, dtype=np.int8)
    names = released.column("split").combine_chunks()
    known = pc.is_in(names, value_set=pa.array(SPLITS))
    if not pc.all(known).as_py():
        row = int(np.flatnonzero(~known.to_numpy(zero_copy_only=False))[0])
        raise ValueError(
            f"{layout.RELEASED_SPLITS_PARTS}: image {released.column('image_id')[row].as_py()!r} has split "
            f"{names[row].as_py()!r}, not one of {SPLITS}"
        )
    code = pc.index_in(names, value_set=pa.array(SPLITS)).to_numpy().astype(np.int8)
    where = pc.index_in(image_id, value_set=released.column("image_id").combine_chunks())
    where = pc.fill_null(where, -1).to_numpy(zero_copy_only=False)
    return np.where(where >= 0, code[np.maximum(where, 0)], -1).astype(np.int8)


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
    """Assign every image to a split (:func:`decide_splits`); ``class_presence`` is a 0/1 frame
    (index image_id, a column per class); ``pinned``: image_id -> the split a release gave it."""
    import pyarrow as pa

    targets = split_targets(shares)
    inputs = frame_inputs(images, class_presence, hashes)
    groups = group_numbers(inputs, near_pairs(hashes, hash_distance))
    released = pa.table(
        {
            "image_id": pa.array(list(pinned or {}), pa.string()),
            "split": pa.array(list((pinned or {}).values()), pa.string()),
        }
    )
    split, notes = decide_splits(
        inputs,
        groups,
        targets,
        seed=seed,
        held_out_scenes=held_out_scenes,
        pinned=pinned_splits(inputs.image_id, released),
    )
    names = np.array(SPLITS)[split] if len(split) else np.array([], dtype=str)
    assignments = pd.DataFrame({"image_id": images.image_id.to_numpy(), "split": names, "group": groups})
    return SplitPlan(assignments=assignments, shares=split_shares(split), targets=targets, notes=notes)


def released_split_table(store: DatasetStore) -> pa.Table:
    """Every image a release has held and the split it gave it (``image_id``, ``split``; empty
    before the first release): the registry's parts in recording order, an image's first entry
    kept. Arrow strings: about 30 bytes an image, where a dict of Python strings is 200."""
    import pyarrow as pa
    import pyarrow.compute as pc

    parts = [layout.RELEASED_SPLITS_KEY] if store.exists(layout.RELEASED_SPLITS_KEY) else []
    parts += sorted(k for k in store.list(layout.RELEASED_SPLITS_PARTS) if k.endswith(".parquet"))
    schema = pa.schema([("image_id", pa.string()), ("split", pa.string())])
    tables = [store.read_table(key, columns=["image_id", "split"]).cast(schema) for key in parts]
    table = pa.concat_tables(tables).combine_chunks() if tables else schema.empty_table()
    ids = table.column("image_id").combine_chunks()
    first = pc.index_in(ids, value_set=ids).to_numpy(zero_copy_only=False)  # an id's first row
    return table.filter(pa.array(first == np.arange(len(ids))))


def released_splits(store: DatasetStore) -> dict[str, str]:
    """image_id -> split of every image a release has held (:func:`released_split_table`)."""
    table = released_split_table(store)
    return dict(zip(table.column("image_id").to_pylist(), table.column("split").to_pylist(), strict=True))


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


def leak_findings(inputs: SplitInputs, split: np.ndarray, pairs: np.ndarray | None = None) -> list[str]:
    """Every scene, episode, checksum or near-duplicate pair (``pairs``: :func:`near_pairs`)
    found in more than one split (``split``: the split index per image, -1 for none); over
    integer codes, the values and ids looked up for what is found only."""
    k = len(SPLITS)
    placed = split >= 0
    found = []
    for column in LINK_COLUMNS:
        if column not in inputs.columns:
            continue
        codes, values = inputs.columns[column]
        mine = placed & (codes >= 0)
        both = np.unique(codes[mine].astype(np.int64) * k + split[mine])  # (value, split)
        value_of = both // k
        spread, splits_of_value = np.unique(value_of, return_counts=True)
        for value in spread[splits_of_value > 1]:
            where = sorted(SPLITS[c] for c in both[value_of == value] % k)
            shown = values[int(value)].as_py()
            label = f"'{shown:016x}…'" if isinstance(shown, int) and column == "sha256" else repr(shown)
            found.append(f"{column} {label} in {where}")
    for a, b in (pairs if pairs is not None else np.zeros((0, 2), np.int64)).tolist():
        if placed[a] and placed[b] and split[a] != split[b]:
            found.append(
                f"near-duplicates {inputs.image_id[a].as_py()} ({SPLITS[split[a]]}) and "
                f"{inputs.image_id[b].as_py()} ({SPLITS[split[b]]})"
            )
    return found


def leaks(
    assignments: pd.DataFrame, images: pd.DataFrame, hashes: np.ndarray | None = None, hash_distance: int = 4
) -> list[str]:
    """:func:`leak_findings` of an assignments frame (image_id, split) over an images frame."""
    split = pd.Series(assignments.split.to_numpy(), index=assignments.image_id.to_numpy())
    if not (len(assignments) == len(images) and assignments.image_id.equals(images.image_id)):
        split = split.reindex(images.image_id.to_numpy())
    codes = pd.Categorical(split.to_numpy(), categories=list(SPLITS)).codes.astype(np.int8)
    placed = np.flatnonzero(codes >= 0)
    return leak_findings(
        frame_inputs(images, hashes=hashes), codes, near_pairs(hashes, hash_distance, placed)
    )


def split_summary(inputs: SplitInputs, split: np.ndarray, groups: np.ndarray) -> pd.DataFrame:
    """Per split: images, scenes, groups, images per lighting value, instances per class (those
    present anywhere, by name)."""
    k = len(SPLITS)

    def distinct(codes: np.ndarray) -> np.ndarray:  # distinct values per split
        mine = codes >= 0
        return np.bincount(np.unique(codes[mine].astype(np.int64) * k + split[mine]) % k, minlength=k)

    rows: dict[str, Any] = {"split": list(SPLITS), "images": np.bincount(split, minlength=k)}
    rows["scenes"] = distinct(inputs.columns["scene_id"][0]) if "scene_id" in inputs.columns else np.zeros(k)
    rows["groups"] = distinct(groups)
    if "lighting" in inputs.columns:
        light, values = inputs.columns["lighting"]
        for code, value in enumerate(values.to_pylist()):
            counts = np.bincount(split[light == code], minlength=k)
            if counts.sum():
                rows[str(value)] = counts
    per_class = {
        name: np.bincount(split, weights=inputs.instances[:, c], minlength=k)
        for c, name in enumerate(inputs.classes)
    }
    rows |= {name: counts for name, counts in sorted(per_class.items()) if counts.sum() > 0}
    return pd.DataFrame(rows).astype({c: int for c in rows if c != "split"})


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

    table: pa.Table  # schemas.SPLITS' columns, as Arrow: no Python string per image
    info: dict
    summary: pd.DataFrame  # per split: images, scenes, groups, per lighting, instances per class
    made: list[str] = field(default_factory=list)  # update_splits: the batches whose features were made again
    batches: list[str] = field(default_factory=list)  # update_splits: every batch of the corpus


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
    their groups), the dHash as its 64-bit word, instances as int32. About 90 bytes an image,
    where the features as pandas strings are 250 and their reading peaks at twice that; kept so
    as a batch's part, read back as it is."""
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
    columns["dhash"] = pa.array(hex_words(table.column("dhash"), f"{source}: field dhash"), pa.uint64())
    for name in names:
        if name.startswith(INSTANCES):
            columns[name] = table.column(name).combine_chunks().cast(pa.int32())
    return pa.table(columns)


def table_inputs(table: pa.Table) -> SplitInputs:
    """:class:`SplitInputs` of a :func:`lean_features` table."""
    table = table.unify_dictionaries()  # columns combined one at a time, not the table at once
    counted = [c for c in table.column_names if c.startswith(INSTANCES)]
    instances = np.empty((len(table), len(counted)), dtype=np.int32)  # filled a class at a time
    for k, name in enumerate(counted):
        instances[:, k] = table.column(name).to_numpy()
    return SplitInputs(
        image_id=table.column("image_id"),  # the parts' chunks as they are: looked up by position
        columns={c: coded(table.column(c)) for c in (*LINK_COLUMNS, "lighting") if c in table.column_names},
        instances=instances,
        classes=[c[len(INSTANCES) :] for c in counted],
        hashes=table.column("dhash").to_numpy(),
    )


def split_by_features(store: DatasetStore, features: pd.DataFrame | pa.Table, **rules: Any) -> SplitOutcome:
    """Split the images of ``features`` (:func:`split_features`, or its :func:`lean_features`);
    ``rules``: :func:`split_inputs`'."""
    import pyarrow as pa

    table = as_arrow(features)
    if not pa.types.is_uint64(table.schema.field("dhash").type):
        table = lean_features(table)  # split_features' table, not yet lean
    return split_inputs(store, table_inputs(table), **rules)


def split_inputs(
    store: DatasetStore,
    inputs: SplitInputs,
    *,
    shares: dict[str, float] | None = None,
    seed: int = 0,
    held_out_scenes: list[str] | tuple[str, ...] = (),
    hash_distance: int = 4,
) -> SplitOutcome:
    """Split the images of ``inputs`` and describe the result; images a release held keep its
    split (``released_split_table``). Decided over NumPy codes: about 100 bytes an image, where
    the same decision over a pandas frame of the features peaked at 550."""
    import pyarrow as pa

    from dataset_pipeline.batch_parts import return_freed_heap
    from dataset_pipeline.formats.arrow import hex_strings

    targets = split_targets(shares)
    pairs = near_pairs(inputs.hashes, hash_distance)
    groups = group_numbers(inputs, pairs)
    return_freed_heap()  # the band search's small arrays: the arrays made next do not reuse them
    pinned = pinned_splits(inputs.image_id, released_split_table(store))
    split, notes = decide_splits(
        inputs, groups, targets, seed=seed, held_out_scenes=held_out_scenes, pinned=pinned
    )
    names = pa.DictionaryArray.from_arrays(pa.array(split, pa.int8()), pa.array(SPLITS)).cast(pa.string())
    split_table = pa.table(
        {
            "image_id": inputs.image_id,
            "split": names,
            "group": pa.array(groups, pa.int64()),
            "dhash": hex_strings(np.asarray(inputs.hashes, dtype=np.uint64)),
        }
    )
    group_sizes = np.bincount(groups) if len(groups) else np.zeros(0, np.int64)
    held_groups = np.unique(groups[held_out(inputs, held_out_scenes)])
    closest, closest_error = closest_split(group_sizes, targets, held_groups)
    present = inputs.instances > 0
    info = {
        "shares": split_shares(split),
        "targets": targets,
        "closest_possible": round(closest, 4),
        "closest_error": round(closest_error, 4),
        "groups": len(group_sizes),
        "largest_group_share": float(group_sizes.max() / len(groups)) if len(groups) else 0.0,
        "leaks": leak_findings(inputs, split, pairs),
        "classes_missing": {
            s: [c for k, c in enumerate(inputs.classes) if not present[split == i, k].any()]
            for i, s in enumerate(SPLITS)
        },
        "notes": notes,
        "seed": seed,
        "pinned": int((pinned >= 0).sum()),
    }
    return SplitOutcome(table=split_table, info=info, summary=split_summary(inputs, split, groups))


#: Bump when :func:`split_features` or :func:`lean_features` derive a batch's features differently.
PART_VERSION = 2
STAGE = "splits"


def update_splits(store: DatasetStore, taxonomy: Taxonomy, **rules: Any) -> SplitOutcome:
    """Split the stored corpus: each batch's features (:func:`split_features`: its images' dHash,
    read from their bytes, and class instances) are made once from its corpus part and kept under
    ``tables/splits/batches/<batch>/`` (as :func:`lean_features`) while that part and the
    taxonomy's classes are unchanged; the split is decided over every batch's part, read one at a
    time (no mask, no image held). ``rules``: :func:`split_by_features`'."""
    from dataset_pipeline.annotation_corpus import corpus_batches, corpus_part_keys
    from dataset_pipeline.batch_parts import update_parts

    def make(batch: str) -> dict:
        annotations, images = (store.read_parquet(k) for k in corpus_part_keys(batch))
        key = layout.stage_part_key(STAGE, batch, "features.parquet")
        features = lean_features(
            as_arrow(split_features(store, images, annotations, taxonomy)), store.url(key)
        )
        store.write_parquet(key, features)
        return {"images": len(features)}

    batches = corpus_batches(store)
    names = [c.name for c in taxonomy.foreground]
    _, made = update_parts(
        store, STAGE, batches, lambda batch: list(corpus_part_keys(batch)), (PART_VERSION, names), make
    )
    outcome = split_inputs(store, _lean_inputs(store, batches), **rules)
    outcome.made, outcome.batches = made, batches
    return outcome


def _lean_inputs(store: DatasetStore, batches: list[str]) -> SplitInputs:
    """:class:`SplitInputs` of every batch's features part (kept as :func:`lean_features`), read
    one part at a time; the parts' buffers are let go, and their heap pages given back, before
    the split's own arrays are made (they would not reuse them)."""
    import pyarrow as pa

    from dataset_pipeline.batch_parts import return_freed_heap

    parts = [store.read_table(layout.stage_part_key(STAGE, batch, "features.parquet")) for batch in batches]
    table = (
        pa.concat_tables(parts, promote_options="permissive")
        if parts
        else lean_features(as_arrow(pd.DataFrame(columns=[*SPLIT_COLUMNS, "dhash"])))
    )
    del parts
    inputs = table_inputs(table)
    del table
    return_freed_heap()
    return inputs


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
