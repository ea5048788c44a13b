"""What every importer shares: the contract (:class:`Importer`), the options it reads a file with,
the rows it makes, and the one error it raises.

Each tool's importer lives in its folder (``cvat/importer.py``, ``coco/importer.py``,
``label_studio/importer.py``) and turns one export file's bytes into the annotations table
(:data:`schemas.ANNOTATIONS`). A malformed file raises :class:`AnnotationImportError` naming
the file, the record and the field; records that are valid but not masks (boxes, points,
cancelled annotations) are skipped and listed. :mod:`dataset_pipeline.formats.reading` picks
the importer for a file and opens the tools' zip archives.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import unquote, urlsplit

import numpy as np
import pandas as pd

from dataset_pipeline import schemas
from dataset_pipeline.formats.image_index import ImageIndex, ImageRef
from dataset_pipeline.formats.label_studio.tasks import premask_result_id
from dataset_pipeline.masks import rle_areas, rle_iou
from dataset_pipeline.taxonomy import Taxonomy

__all__ = [
    "AnnotationImportError",
    "ImageIndex",
    "ImageRef",
    "ImportOptions",
    "ImportResult",
    "Importer",
    "annotations_frame",
    "assistance_for",
    "check_not_empty",
    "load_json",
]

#: A final mask this close to a pre-mask (IoU) derives from it.
PREMASK_LINK_IOU = 0.5
#: A mask this close to the propagated mask it started from (IoU) was accepted, not corrected: the
#: tools' mask round trips are exact, so an accept is IoU 1; the margin allows a polygon re-trace.
PROPAGATED_ACCEPTED_IOU = 0.99


class AnnotationImportError(ValueError):
    """An export file cannot be imported; nothing of it is used.

    >>> str(AnnotationImportError("a.xml", "image 'x.jpg' mask 2", "label", "unknown label 'cup'"))
    "a.xml: image 'x.jpg' mask 2, field 'label': unknown label 'cup'"
    """

    def __init__(self, file: str, record: str, field_name: str, message: str) -> None:
        self.file, self.record, self.field = file, record, field_name
        where = f"{record}, field {field_name!r}" if field_name else record
        super().__init__(f"{file}: {where}: {message}")


class Importer(Protocol):
    """What a tool's importer provides (each ``formats/<tool>/importer.py`` module is one)."""

    #: The format names it reads (``--format`` / detection results).
    FORMATS: tuple[str, ...]

    def detect(self, head: bytes, document: object) -> str | None:
        """The format of a file if it is this importer's: ``head`` is the file's first bytes
        (leading whitespace stripped), ``document`` its parsed JSON (None for a non-JSON file)."""
        ...

    def read(self, data: bytes, options: ImportOptions, fmt: str) -> ImportResult:
        """The annotations of one export file in format ``fmt`` (one of :attr:`FORMATS`)."""
        ...


@dataclass
class ImportOptions:
    """What an importer needs besides the file."""

    taxonomy: Taxonomy
    source_file: str = "<memory>"
    label_map: dict[str, str] = field(default_factory=dict)
    images: ImageIndex | None = None
    premasks: pd.DataFrame | None = None
    #: The batch's propagated masks (schemas.PROPAGATED): on a frame that has them, the masks its
    #: annotations link to instead of the pre-masks (they went out as that frame's predictions).
    propagated: pd.DataFrame | None = None
    default_annotator: str = "unknown"
    review_status: str = "unreviewed"
    tool_version: str | None = None
    boxes_as_masks: bool = False

    def __post_init__(self) -> None:
        if self.review_status not in schemas.REVIEW_STATUSES:
            raise ValueError(
                f"review_status must be one of {schemas.REVIEW_STATUSES}, got {self.review_status!r}"
            )
        known = {c.name for c in self.taxonomy.foreground}
        wrong = {alias: target for alias, target in self.label_map.items() if target not in known}
        if wrong:
            raise ValueError(
                f"label map targets must be taxonomy classes ({', '.join(sorted(known))}); got {wrong}"
            )
        self._premasks_by_image = (
            {k: g for k, g in self.premasks.groupby("image_id", sort=False)}
            if self.premasks is not None
            else {}
        )
        self._propagated_ids: set[str] = set()
        if self.propagated is not None and len(self.propagated):
            self._propagated_ids = set(self.propagated.premask_id)
            self._premasks_by_image |= {k: g for k, g in self.propagated.groupby("image_id", sort=False)}

    def class_id(self, label: object, record: str, field_name: str) -> int:
        """The taxonomy id of a tool's label (after aliases); unknown labels list the known ones."""
        if not isinstance(label, str) or not label.strip():
            raise AnnotationImportError(self.source_file, record, field_name, f"missing label ({label!r})")
        name = self.label_map.get(label.strip(), label.strip())
        try:
            cls = self.taxonomy.by_name(name)
        except KeyError:
            known = ", ".join(c.name for c in self.taxonomy.foreground)
            aliases = f" (aliases: {self.label_map})" if self.label_map else ""
            raise AnnotationImportError(
                self.source_file,
                record,
                field_name,
                f"unknown label {label!r}; known labels: {known}{aliases}",
            ) from None
        if cls.id == 0:
            raise AnnotationImportError(
                self.source_file, record, field_name, "background is not an annotation class"
            )
        return cls.id

    def image(
        self,
        name: str,
        height: int | None,
        width: int | None,
        record: str,
        field_name: str,
        *,
        url: bool = False,
    ) -> ImageRef:
        """The image an export record names, checked against the batch when an index is given.

        ``name`` is a file name (COCO ``file_name``, CVAT ``name``), or with ``url`` an image URL
        (Label Studio's ``data.image``). A name that leaves the batch folder (a ``..`` segment, an
        absolute file path) is refused in every context: without an index it would become an
        image id, and ids become file names in a release.
        """
        try:
            path = image_path(name, url=url)
        except ValueError as exc:
            raise AnnotationImportError(
                self.source_file, record, field_name, f"image {name!r} {exc}"
            ) from None
        if self.images is not None:
            ref = self.images.find(name)
            if ref is None:
                raise AnnotationImportError(
                    self.source_file,
                    record,
                    field_name,
                    f"image {name!r} is not in the batch ({len(self.images)} images)",
                )
            if (
                height is not None
                and width is not None
                and (int(height), int(width)) != (ref.height, ref.width)
            ):
                raise AnnotationImportError(
                    self.source_file,
                    record,
                    field_name,
                    f"image {name!r} is {width}x{height} in the export but {ref.width}x{ref.height} in the batch",
                )
            return ref
        if height is None or width is None or int(height) <= 0 or int(width) <= 0:
            raise AnnotationImportError(
                self.source_file, record, field_name, f"no valid size for image {name!r}"
            )
        return ImageRef(posixpath.splitext(path)[0], int(height), int(width))

    def row(
        self,
        ref: ImageRef,
        *,
        annotation_id: str,
        annotator_id: str,
        class_id: int,
        rle: str,
        z_order: int,
        created_at: object,
        seconds_spent: float | None,
        tool: str,
        tool_version: str | None,
        tool_hint: str | None = None,
        premask_id: str | None = None,
        review_status: str | None = None,
        review_accepted: bool | None = None,
    ) -> dict[str, object]:
        """One row of the annotations table; links the pre-mask and derives the assistance."""
        linked, premask_iou = self.link_premask(ref.image_id, rle, ref.height, ref.width, premask_id)
        return {
            "annotation_id": annotation_id,
            "image_id": ref.image_id,
            "annotator_id": annotator_id,
            "class_id": class_id,
            "height": ref.height,
            "width": ref.width,
            "rle": rle,
            "z_order": z_order,
            "created_at": created_at,
            "seconds_spent": seconds_spent,
            "tool": tool,
            "tool_version": tool_version,
            "assistance": assistance_for(premask_iou, tool_hint, propagated=linked in self._propagated_ids),
            "premask_id": linked,
            "premask_iou": premask_iou,
            "review_status": review_status or self.review_status,
            "review_accepted": review_accepted,
            "is_gold": False,
            "source_file": self.source_file,
        }

    def premask_for_result_id(self, image_id: str, result_id: str) -> str | None:
        """The pre-mask whose Label Studio prediction result had this id (see premask_result_id)."""
        candidates = self._premasks_by_image.get(image_id)
        if candidates is None:
            return None
        for premask_id in candidates.premask_id:
            if premask_result_id(premask_id) == result_id:
                return str(premask_id)
        return None

    def link_premask(
        self, image_id: str, rle: str, height: int, width: int, premask_id: str | None = None
    ) -> tuple[str | None, float | None]:
        """(premask_id, IoU) of the pre-mask this mask derives from: the named one, else the best match ≥ 0.5."""
        candidates = self._premasks_by_image.get(image_id)
        if candidates is None or candidates.empty:
            return None, None
        ious = rle_iou(rle, list(candidates.rle), height, width)
        if premask_id is not None and premask_id in set(candidates.premask_id):
            index = int(np.flatnonzero(candidates.premask_id.to_numpy() == premask_id)[0])
            return premask_id, round(float(ious[index]), 4)
        best = int(np.argmax(ious))
        if ious[best] >= PREMASK_LINK_IOU:
            return str(candidates.premask_id.iloc[best]), round(float(ious[best]), 4)
        return None, None


def image_path(name: str, *, url: bool = False) -> str:
    """The path inside the batch that an export names an image by, or ValueError saying why not.

    >>> image_path("images/frame_0001.jpg")
    'images/frame_0001.jpg'
    >>> image_path("/data/local-files/?d=incoming/b1/images/a%20b.jpg", url=True)
    'incoming/b1/images/a b.jpg'
    >>> image_path("../../etc/passwd")
    Traceback (most recent call last):
    ...
    ValueError: leaves the batch folder (a '..' segment); image names are paths inside it
    """
    if url:
        # Label Studio's local-files URLs carry the path after ?d=; other URLs (its uploads, http,
        # s3) are read by their path.
        text = name.split("?d=", 1)[1] if "?d=" in name else urlsplit(name).path
        path = unquote(text).lstrip("/")
    else:
        path = name
        if path.startswith(("/", "~")) or "://" in path or (len(path) > 1 and path[1] == ":"):
            raise ValueError("is an absolute path; image names are paths inside the batch folder")
    if "\\" in path or "\x00" in path:
        raise ValueError("holds a backslash or NUL byte; image names are paths inside the batch folder")
    if ".." in path.split("/"):
        raise ValueError("leaves the batch folder (a '..' segment); image names are paths inside it")
    if not path.strip("/"):
        raise ValueError("names no file")
    return path


@dataclass
class ImportResult:
    """The annotations of one export, and the records skipped (with why)."""

    annotations: pd.DataFrame
    skipped: list[str] = field(default_factory=list)
    format: str = ""

    def summary(self, taxonomy: Taxonomy) -> str:
        table = self.annotations
        lines = [f"{len(table)} annotation(s) on {table.image_id.nunique()} image(s) ({self.format})"]
        if len(table):
            per_class = table.class_id.map(lambda c: taxonomy.by_id(int(c)).name).value_counts()
            lines.append("per class:     " + ", ".join(f"{k}={v}" for k, v in per_class.items()))
            per_annotator = table.annotator_id.value_counts()
            lines.append("per annotator: " + ", ".join(f"{k}={v}" for k, v in per_annotator.items()))
            lines.append(
                "assistance:    " + ", ".join(f"{k}={v}" for k, v in table.assistance.value_counts().items())
            )
        lines.append(f"skipped:       {len(self.skipped)}")
        lines += [f"  - {s}" for s in self.skipped[:20]]
        return "\n".join(lines)


def annotations_frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    """The annotations table with its columns and dtypes, also when empty."""
    frame = schemas.ANNOTATIONS.frame([_typed(row) for row in rows])
    created = frame["created_at"].astype(object).where(frame["created_at"].notna(), None)
    parsed = pd.to_datetime(created, utc=True, format="ISO8601", errors="coerce")
    unparsed = created.notna() & parsed.isna()
    if unparsed.any():  # one vectorized parse; the first row it refused is named
        row = frame[unparsed].iloc[0]
        raise AnnotationImportError(
            str(row.source_file or "export"),
            f"annotation {row.annotation_id!r}",
            "created_at",
            f"{str(row.created_at)[:40]!r} is not an ISO 8601 time",
        )
    frame["created_at"] = parsed
    return frame


def _typed(row: dict[str, object]) -> dict[str, object]:
    """The row with its provenance types checked: a time that is not text, a negative or non-numeric
    time spent is refused naming the annotation (exports come from outside)."""
    file, record = str(row.get("source_file") or "export"), f"annotation {row.get('annotation_id')!r}"
    created = row.get("created_at")
    if created is None or (isinstance(created, str) and not created.strip()):
        created = None
    elif not isinstance(created, (str, pd.Timestamp)):  # the text is parsed in annotations_frame, at once
        raise AnnotationImportError(file, record, "created_at", f"{created!r} is not an ISO 8601 time string")
    seconds = row.get("seconds_spent")
    if seconds is not None:
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, (int, float))
            or not np.isfinite(seconds)
            or seconds < 0
        ):
            raise AnnotationImportError(
                file, record, "seconds_spent", f"{seconds!r} is not a time in seconds >= 0"
            )
    return {**row, "created_at": created, "seconds_spent": None if seconds is None else float(seconds)}


def assistance_for(premask_iou: float | None, tool_hint: str | None, *, propagated: bool = False) -> str:
    """manual / sam2-assisted / auto / propagated / propagated-corrected from the tool's own hint
    and the link to the machine mask the annotation started from.

    >>> assistance_for(1.0, None, propagated=True), assistance_for(0.8, None, propagated=True)
    ('propagated', 'propagated-corrected')
    """
    if tool_hint == "auto":
        return "auto"
    if propagated and premask_iou is not None:
        return "propagated" if premask_iou >= PROPAGATED_ACCEPTED_IOU else "propagated-corrected"
    if premask_iou is not None or tool_hint == "assisted":
        return "sam2-assisted"
    return "manual"


def load_json(data: bytes, file: str):
    """Parse an export's JSON, or refuse it naming the line and column."""
    try:
        return json.loads(data)
    except UnicodeDecodeError as exc:
        raise AnnotationImportError(
            file, "document", "", f"not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    except json.JSONDecodeError as exc:
        raise AnnotationImportError(
            file, "document", "", f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None


def check_not_empty(rle: str, height: int, width: int, file: str, record: str, field_name: str) -> None:
    if rle_areas([height], [width], [rle])[0] == 0:
        raise AnnotationImportError(file, record, field_name, "the mask is empty")
