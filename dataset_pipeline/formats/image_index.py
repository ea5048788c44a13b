"""The images an export may refer to, found by id, by path inside the batch, or by file name."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class ImageRef:
    """An image the annotations may refer to."""

    image_id: str
    height: int
    width: int


class ImageIndex:
    """Finds an image by its id, by its path inside the batch, or by its file name (when unique)."""

    def __init__(self, images: Iterable[tuple[ImageRef, str]]) -> None:
        self._by_key: dict[str, ImageRef] = {}
        names: dict[str, list[ImageRef]] = {}
        for ref, path in images:
            self._by_key[ref.image_id] = ref
            self._by_key[path] = ref
            self._by_key[posixpath.splitext(path)[0]] = ref
            names.setdefault(posixpath.basename(path), []).append(ref)
        self._by_name = {name: refs[0] for name, refs in names.items() if len(refs) == 1}

    @classmethod
    def from_captures(cls, captures: pd.DataFrame) -> ImageIndex:
        """From a captures table (``uri`` is ``incoming/<batch>/<path>``)."""
        return cls(
            (
                ImageRef(str(r.image_id), int(r.height), int(r.width)),
                str(r.uri).split("/", 2)[2] if str(r.uri).count("/") >= 2 else str(r.uri),
            )
            for r in captures.itertuples()
        )

    def __len__(self) -> int:
        return len({r.image_id for r in self._by_key.values()})

    def find(self, name: str) -> ImageRef | None:
        """The image that ``name`` (an id, a path, a URL ending in a path) refers to."""
        name = name.split("?d=")[-1]  # Label Studio local-files URLs
        candidates = [name, name.lstrip("/")]
        parts = name.split("/")
        candidates += ["/".join(parts[i:]) for i in range(1, len(parts))]
        for candidate in candidates:
            if candidate in self._by_key:
                return self._by_key[candidate]
        return self._by_name.get(posixpath.basename(name))
