"""One HDF5 file per split for array-minded trainers: ``hdf5/<split>.h5``, assembled from shards.

Datasets: ``images`` (N, H, W, 3) uint8 and ``class_maps`` (N, H, W) uint8, each chunked
one image per chunk, so reading one pair touches two chunks and nothing else; ``image_ids``
(N,) UTF-8 strings. Class maps are gzip-compressed (level 1: ~2% of their raw size, 0.4 ms
to read one); RGB frames are stored raw: lossless compression gains little on camera images
and made one read 3.7 ms instead of 0.35 ms (measured, benchmarks/README.md). Root attributes:
``class_names``, ``class_colours`` (K, 3) uint8 (index = class id, background 0),
``taxonomy``, ``split`` and ``shards``. Every image of a split must have the same size (a
(N, H, W, 3) array cannot hold two); mixed sizes are refused naming the images.

The pixels live in shards, ``hdf5/shards/<split>/<batch>-<k>.h5`` (the same three datasets for
up to ~1,000 images of one batch, :meth:`ReleaseContent.shards`); ``<split>.h5`` maps them into
its two arrays as HDF5 virtual datasets (by relative path), so h5py reads it as one file while
a new release writes only the shards that changed and links the rest from the last release.
Copy ``hdf5/`` as a folder: a virtual dataset whose shard is missing reads as zeros.
"""

from __future__ import annotations

import posixpath

import numpy as np

from dataset_pipeline.formats.exporting import ReleaseFolder, validate_by_shard
from dataset_pipeline.formats.release_content import ExportError, ImageRow, ReleaseContent

NAME = "hdf5"
MAP_COMPRESSION = {"compression": "gzip", "compression_opts": 1}


def split_file(split: str) -> str:
    return f"hdf5/{split}.h5"


def shard_file(split: str, shard: str) -> str:
    return f"hdf5/shards/{split}/{shard}.h5"


def _split_size(split: str, rows: list[ImageRow]) -> tuple[int, int]:
    sizes = {(int(r.height), int(r.width)) for r in rows}
    if len(sizes) > 1:
        examples = {size: next(r.image_id for r in rows if (r.height, r.width) == size) for size in sizes}
        raise ExportError(f"hdf5 {split}: images of several sizes cannot share one array: {examples}")
    return sizes.pop() if sizes else (0, 0)


def write_shard(content: ReleaseContent, rows: list[ImageRow], path: str, height: int, width: int) -> None:
    import h5py

    with h5py.File(path, "w") as handle:
        images = handle.create_dataset(
            "images", (len(rows), height, width, 3), np.uint8, chunks=(1, height, width, 3)
        )
        maps = handle.create_dataset(
            "class_maps", (len(rows), height, width), np.uint8, chunks=(1, height, width), **MAP_COMPRESSION
        )
        handle.create_dataset("image_ids", data=[r.image_id for r in rows], dtype=h5py.string_dtype("utf-8"))
        for index, row in enumerate(rows):
            images[index] = content.rgb(row)
            maps[index] = content.class_map(row)


def write_split(
    content: ReleaseContent,
    split: str,
    shards: list[tuple[str, list[ImageRow]]],
    path: str,
    size: tuple[int, int],
) -> None:
    """The split's file: virtual ``images`` and ``class_maps`` over the shard files, real ``image_ids``."""
    import h5py

    height, width = size
    rows = [r for _, members in shards for r in members]
    with h5py.File(path, "w") as handle:
        if rows:
            image_layout = h5py.VirtualLayout((len(rows), height, width, 3), np.uint8)
            map_layout = h5py.VirtualLayout((len(rows), height, width), np.uint8)
            start = 0
            for name, members in shards:
                source = posixpath.relpath(shard_file(split, name), posixpath.dirname(split_file(split)))
                end = start + len(members)
                image_layout[start:end] = h5py.VirtualSource(
                    source, "images", (len(members), height, width, 3)
                )
                map_layout[start:end] = h5py.VirtualSource(
                    source, "class_maps", (len(members), height, width)
                )
                start = end
            handle.create_virtual_dataset("images", image_layout)
            handle.create_virtual_dataset("class_maps", map_layout)
        else:
            handle.create_dataset("images", (0, height, width, 3), np.uint8)
            handle.create_dataset("class_maps", (0, height, width), np.uint8)
        handle.create_dataset("image_ids", data=[r.image_id for r in rows], dtype=h5py.string_dtype("utf-8"))
        handle.attrs["class_names"] = content.taxonomy.names
        handle.attrs["class_colours"] = np.asarray(content.taxonomy.palette(), dtype=np.uint8)
        handle.attrs["taxonomy"] = content.taxonomy.tag
        handle.attrs["split"] = split
        handle.attrs["shards"] = [shard_file(split, name) for name, _ in shards]


def export_shard(
    content: ReleaseContent, out: ReleaseFolder, split: str, name: str, rows: list[ImageRow]
) -> list[str]:
    """One shard's file: linked from the last release when its images are unchanged, else written."""
    relative, digest = shard_file(split, name), content.units_digest(rows)
    if not out.reuse(f"shard:{split}/{name}", NAME, digest, [relative]):
        with out.new_local_file(relative) as path:
            write_shard(content, rows, path, *_split_size(split, rows))
        out.record(f"shard:{split}/{name}", NAME, digest, relative)
    return [relative]


def export(content: ReleaseContent, out: ReleaseFolder) -> list[str]:
    """The split files over their shards (the shards not written by their own steps first)."""
    written = []
    for split in content.splits:
        shards = content.shards(split)
        size = _split_size(split, [r for _, members in shards for r in members])
        for name, members in shards:
            if not out.recorded(shard_file(split, name)):
                export_shard(content, out, split, name, members)
            written.append(shard_file(split, name))
        with out.new_local_file(split_file(split)) as path:
            write_split(content, split, shards, path, size)
        written.append(split_file(split))
    return written


def read_pair(path: str, index: int) -> tuple[str, np.ndarray, np.ndarray]:
    """(image_id, RGB image, class map) of one sample: random access reads two chunks.

    >>> # read_pair("releases/<version>/hdf5/train.h5", 0)
    """
    import h5py

    with h5py.File(path, "r") as handle:
        return handle["image_ids"][index].decode(), handle["images"][index], handle["class_maps"][index]


def validate(content: ReleaseContent, out: ReleaseFolder) -> list[str]:
    """Every shard's pixels against the corpus, and each split file mapping its shards in order."""
    return validate_by_shard(validate_release, validate_shard, content, out)


def validate_shard(
    content: ReleaseContent, out: ReleaseFolder, split: str, shard: str, rows: list[ImageRow]
) -> list[str]:
    """One shard's file read with h5py: image ids, dtypes, shapes, and every class map and image
    equal to the corpus."""
    import h5py

    name = shard_file(split, shard)
    if out.shared(name):
        return []
    problems: list[str] = []
    try:
        with out.local_copy(name) as path, h5py.File(path, "r") as handle:
            images, maps = handle["images"], handle["class_maps"]
            ids = [v.decode() for v in handle["image_ids"][:]]
            if ids != [r.image_id for r in rows]:
                return [f"{name}: image_ids differ from the shard's images"]
            if images.dtype != np.uint8 or maps.dtype != np.uint8:
                problems.append(f"{name}: dtypes {images.dtype}/{maps.dtype}, not uint8")
            if rows and (
                images.shape != (len(rows), rows[0].height, rows[0].width, 3)
                or maps.shape != images.shape[:3]
            ):
                return problems + [f"{name}: shapes {images.shape} / {maps.shape} do not match the shard"]
            unknown: set[int] = set()
            for index, row in enumerate(rows):
                class_map = maps[index]
                unknown |= set(np.unique(class_map).tolist())
                if not np.array_equal(class_map, content.class_map(row)):
                    problems.append(f"{name}: class_maps[{index}] ({row.image_id}) differs from the corpus")
                if not np.array_equal(images[index], content.rgb(row)):
                    problems.append(f"{name}: images[{index}] ({row.image_id}) differs from the capture")
            unknown -= set(content.taxonomy.ids)
            if unknown:
                problems.append(f"{name}: class ids {sorted(unknown)} are not in the taxonomy")
    except (OSError, KeyError) as exc:
        problems.append(f"{name}: cannot be read ({exc})")
    return problems


def validate_release(content: ReleaseContent, out: ReleaseFolder) -> list[str]:
    """Each split file without reading pixels (its shards' checks read them): the attributes, the
    image ids, the shapes, and both virtual datasets mapping each shard's rows in release order
    from that shard's file (a missing shard would read as zeros)."""
    import h5py

    problems: list[str] = []
    for split in content.splits:
        name = split_file(split)
        shards = content.shards(split)
        rows = [r for _, members in shards for r in members]
        try:
            with out.local_copy(name) as path, h5py.File(path, "r") as handle:
                expected = [shard_file(split, shard) for shard, _ in shards]
                if list(handle.attrs.get("shards", [])) != expected:
                    problems.append(f"{name}: attribute shards differs from the split's shards")
                missing = [f for f in expected if not out.exists(f)]
                if missing:
                    problems.append(f"{name}: shard files {missing[:5]} are missing")
                images, maps = handle["images"], handle["class_maps"]
                if [v.decode() for v in handle["image_ids"][:]] != [r.image_id for r in rows]:
                    problems.append(f"{name}: image_ids differ from the split's images")
                if list(handle.attrs["class_names"]) != content.taxonomy.names:
                    problems.append(f"{name}: attribute class_names differs from the taxonomy")
                if not rows:
                    continue
                if (
                    images.shape != (len(rows), rows[0].height, rows[0].width, 3)
                    or maps.shape != images.shape[:3]
                ):
                    problems.append(f"{name}: shapes {images.shape} / {maps.shape} do not match the split")
                    continue
                for dataset in (images, maps):
                    problems += _mapping_problems(name, dataset, split, shards)
        except (OSError, KeyError) as exc:
            problems.append(f"{name}: cannot be read ({exc})")
    return problems


def _mapping_problems(name: str, dataset, split: str, shards: list[tuple[str, list[ImageRow]]]) -> list[str]:
    """Whether ``dataset`` of a split file maps rows start..end of each shard's same dataset, in order."""
    if not dataset.is_virtual:
        return [f"{name}: {dataset.name} is not a virtual dataset over the shards"]
    found = [
        (
            source.file_name,
            source.dset_name.lstrip("/"),
            source.vspace.get_select_bounds()[0][0],
            source.vspace.get_select_bounds()[1][0] + 1,
        )
        for source in dataset.virtual_sources()
    ]
    expected, start = [], 0
    for shard, members in shards:
        source = posixpath.relpath(shard_file(split, shard), posixpath.dirname(split_file(split)))
        expected.append((source, dataset.name.lstrip("/"), start, start + len(members)))
        start += len(members)
    if found != expected:
        return [
            f"{name}: {dataset.name} maps {found[:3]}..., not the shards' rows in order {expected[:3]}..."
        ]
    return []
