"""Reading an export file whatever it is: its format recognised from its content, its tool's
importer called, and the tools' zip archives opened member by member (nothing extracted to disk).
"""

from __future__ import annotations

import dataclasses
import json

import pandas as pd

from dataset_pipeline.formats import IMPORT_FORMATS, importers
from dataset_pipeline.formats.archives import ArchiveError, is_zip, read_members
from dataset_pipeline.formats.importing import AnnotationImportError, ImportOptions, ImportResult

#: Members of a zip export that are imported (CVAT's annotations.xml, COCO's instances_*.json, Label
#: Studio's JSON); images and other members are skipped, but every member's name is checked.
ARCHIVE_MEMBER_SUFFIXES = (".xml", ".json")


def detect_format(data: bytes, name: str = "") -> str:
    """Recognise an export from its content: cvat-xml, label-studio, cvat-coco or coco.

    >>> detect_format(b'[{"data": {"image": "a.jpg"}}]')
    'label-studio'
    """
    head = data.lstrip()[:4096]
    document = None
    if not head.startswith(b"<"):
        try:
            document = json.loads(data)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"{name}: neither XML nor JSON ({exc})") from None
    for importer in importers():
        found = importer.detect(head, document)
        if found is not None:
            return found
    if head.startswith(b"<"):
        raise ValueError(f"{name}: an XML file that is not a CVAT annotations export")
    raise ValueError(f"{name}: JSON that is neither a Label Studio export (a list of tasks) nor COCO")


def import_export(data: bytes, options: ImportOptions, fmt: str = "auto") -> ImportResult:
    """Import one export file's bytes in the given (or detected) format."""
    if fmt == "auto":
        try:
            fmt = detect_format(data, options.source_file)
        except ValueError as exc:
            raise AnnotationImportError(
                options.source_file, "file", "", str(exc).split(": ", 1)[-1]
            ) from None
    by_format = {name: importer for importer in importers() for name in importer.FORMATS}
    if fmt not in by_format:
        raise ValueError(f"unknown format {fmt!r}; use auto or one of {IMPORT_FORMATS}")
    try:
        result = by_format[fmt].read(data, options, fmt)
    except AnnotationImportError:
        raise
    except (
        TypeError,
        KeyError,
        AttributeError,
        IndexError,
        ValueError,
        OverflowError,
        LookupError,
        RecursionError,
    ) as exc:
        # The importers check what they use, field by field; this net turns a shape they did not
        # foresee (fuzzing finds them) into the same typed error, never a library traceback.
        raise AnnotationImportError(
            options.source_file, "document", "", f"malformed {fmt} export ({type(exc).__name__}: {exc})"
        ) from None
    result.format = fmt
    return result


def import_any(data: bytes, options: ImportOptions, fmt: str = "auto") -> ImportResult:
    """A bare export file, or a zip of them as the tools export it (each member imported; results joined,
    each annotation's ``source_file`` naming ``<archive>!/<member>``)."""
    if not is_zip(data):
        return import_export(data, options, fmt)
    try:
        members = read_members(data, options.source_file, ARCHIVE_MEMBER_SUFFIXES)
    except ArchiveError as exc:
        record = f"member {exc.member!r}" if exc.member is not None else "archive"
        raise AnnotationImportError(exc.archive, record, "", exc.reason) from None
    if not members:
        raise AnnotationImportError(options.source_file, "archive", "", "holds no .xml or .json export")
    results = [
        import_export(
            content, dataclasses.replace(options, source_file=f"{options.source_file}!/{name}"), fmt
        )
        for name, content in members.items()
    ]
    return ImportResult(
        annotations=pd.concat([r.annotations for r in results], ignore_index=True),
        skipped=[s for r in results for s in r.skipped],
        format="zip of " + ", ".join(sorted({r.format for r in results})),
    )
