"""CVAT for images 1.1 XML (task or job export) → annotations.

Shapes: ``<mask>`` (rle, left, top, width, height) and ``<polygon>`` (points "x,y;x,y;...")
become annotations; ``<box>`` too when ``boxes_as_masks`` is set, else it is skipped like
polylines, points, cuboids, skeletons and tags. ``z_order``, ``occluded`` and ``source``
(manual / semi-auto / auto) are read. The annotator is the job's assignee in a job export,
else the task's assignee, else its owner, else the configured default. CVAT's XML has no
per-shape time, so ``seconds_spent`` is empty and ``created_at`` is the export's
``updated`` (or ``dumped``) time. Parsed with defusedxml: DTDs and entities are refused.
"""

from __future__ import annotations

from defusedxml import DefusedXmlException
from defusedxml import ElementTree as SafeET

from dataset_pipeline.formats.cvat.codec import CvatMask, CvatMaskError, cvat_to_mask
from dataset_pipeline.formats.importing import (
    AnnotationImportError,
    ImportOptions,
    ImportResult,
    annotations_frame,
    check_not_empty,
)
from dataset_pipeline.masks import encode_mask, polygons_to_rle

FORMATS: tuple[str, ...] = ("cvat-xml",)
SKIPPED_SHAPES = ("polyline", "points", "cuboid", "skeleton", "tag", "ellipse")


def detect(head: bytes, document: object) -> str | None:
    """An XML document whose root is CVAT's ``<annotations>``."""
    return "cvat-xml" if head.startswith(b"<") and b"<annotations" in head else None


def read(data: bytes, options: ImportOptions, fmt: str = "cvat-xml") -> ImportResult:
    return import_cvat_xml(data, options)


def import_cvat_xml(data: bytes, options: ImportOptions) -> ImportResult:
    file = options.source_file
    try:
        root = SafeET.fromstring(data, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise AnnotationImportError(
            file,
            "document",
            "",
            f"refused unsafe XML ({type(exc).__name__}: DTDs and entities are not allowed)",
        ) from None
    except SafeET.ParseError as exc:
        raise AnnotationImportError(file, "document", "", f"not well-formed XML ({exc})") from None
    except LookupError as exc:  # <?xml encoding="..."?> names a codec Python does not have
        raise AnnotationImportError(file, "document", "encoding", f"unknown XML encoding ({exc})") from None
    if root.tag != "annotations":
        raise AnnotationImportError(file, "document", "", f"root element is <{root.tag}>, not <annotations>")
    version = (root.findtext("version") or "").strip()
    meta = root.find("meta")
    annotator, created_at = _provenance(meta, options.default_annotator)
    tool_version = options.tool_version or f"cvat-xml-{version or 'unknown'}"

    rows: list[dict[str, object]] = []
    skipped: list[str] = []
    images = root.findall("image")
    if not images and root.find("track") is not None:
        raise AnnotationImportError(
            file, "document", "", "a CVAT for video export (tracks); export as CVAT for images 1.1"
        )
    for image_number, element in enumerate(images):
        name = element.get("name")
        record = f"image {name!r} (#{image_number})"
        if not name:
            raise AnnotationImportError(file, f"image #{image_number}", "name", "missing")
        height, width = _int(element, "height", record, file), _int(element, "width", record, file)
        ref = options.image(name, height, width, record, "name")
        for shape_number, shape in enumerate(list(element)):
            shape_record = f"{record} <{shape.tag}> #{shape_number}"
            if shape.tag in SKIPPED_SHAPES or (shape.tag == "box" and not options.boxes_as_masks):
                skipped.append(f"{shape_record}: {shape.tag} shapes are not masks")
                continue
            if shape.tag not in ("mask", "polygon", "box"):
                skipped.append(f"{shape_record}: unknown element <{shape.tag}>")
                continue
            class_id = options.class_id(shape.get("label"), shape_record, "label")
            rle = _shape_rle(shape, ref.height, ref.width, shape_record, file)
            check_not_empty(
                rle, ref.height, ref.width, file, shape_record, "rle" if shape.tag == "mask" else "points"
            )
            source = (shape.get("source") or "manual").strip()
            hint = "auto" if source == "auto" else ("assisted" if source in ("semi-auto", "sam2") else None)
            rows.append(
                options.row(
                    ref,
                    annotation_id=f"{ref.image_id}#{annotator}#cvat{shape_number}",
                    annotator_id=annotator,
                    class_id=class_id,
                    rle=rle,
                    z_order=_int(shape, "z_order", shape_record, file, default=0),
                    created_at=created_at,
                    seconds_spent=None,
                    tool="cvat",
                    tool_version=tool_version,
                    tool_hint=hint,
                )
            )
    return ImportResult(annotations_frame(rows), skipped)


def _provenance(meta, default_annotator: str) -> tuple[str, str | None]:
    if meta is None:
        return default_annotator, None
    holder = meta.find("job") if meta.find("job") is not None else meta.find("task")
    if holder is None:
        holder = meta.find("project")
    annotator = default_annotator
    if holder is not None:
        for path in ("assignee/username", "owner/username"):
            value = (holder.findtext(path) or "").strip()
            if value:
                annotator = value
                break
    created = None
    for text in ((holder.findtext("updated") if holder is not None else None), meta.findtext("dumped")):
        if text and text.strip():
            created = text.strip()
            break
    return annotator, created


def _int(element, attribute: str, record: str, file: str, default: int | None = None) -> int:
    value = element.get(attribute)
    if value is None:
        if default is not None:
            return default
        raise AnnotationImportError(file, record, attribute, "missing")
    try:
        number = float(value)
    except ValueError:
        raise AnnotationImportError(file, record, attribute, f"not a number: {value!r}") from None
    if not number.is_integer():
        raise AnnotationImportError(file, record, attribute, f"not an integer: {value!r}")
    if attribute in ("width", "height") and not 0 < number <= 100_000:
        raise AnnotationImportError(file, record, attribute, f"{value} is not a valid size")
    return int(number)


def _shape_rle(shape, height: int, width: int, record: str, file: str) -> str:
    if shape.tag == "mask":
        encoded = CvatMask(
            rle=shape.get("rle") or "",
            left=_int(shape, "left", record, file),
            top=_int(shape, "top", record, file),
            width=_int(shape, "width", record, file),
            height=_int(shape, "height", record, file),
        )
        try:
            return encode_mask(cvat_to_mask(encoded, height, width))
        except CvatMaskError as exc:
            raise AnnotationImportError(file, record, "rle", str(exc)) from None
    if shape.tag == "polygon":
        text = shape.get("points") or ""
        try:
            points = [float(v) for pair in text.split(";") if pair.strip() for v in pair.split(",")]
        except ValueError:
            raise AnnotationImportError(file, record, "points", f"not 'x,y;x,y;...': {text[:60]!r}") from None
    else:  # box as a mask
        try:
            x0, y0, x1, y1 = (float(shape.get(k)) for k in ("xtl", "ytl", "xbr", "ybr"))
        except (TypeError, ValueError):
            raise AnnotationImportError(file, record, "xtl", "box corners must be numbers") from None
        points = [x0, y0, x1, y0, x1, y1, x0, y1]
    try:
        return polygons_to_rle([points], height, width)
    except ValueError as exc:
        raise AnnotationImportError(file, record, "points", str(exc)) from None
