"""Zip archives as the annotation tools export them (CVAT "Export task dataset", Label Studio), read safely.

Members are read into memory, never extracted to disk, and the archive is refused as a whole
(:class:`ArchiveError`, naming the archive, the member and the reason) when:

* a member name is absolute, has a drive letter or backslash, or a ``..`` segment (zip-slip);
* a member is a symbolic link (Unix mode bits in ``external_attr``);
* there are more members than ``max_members``;
* a member or the whole archive inflates beyond ``max_member_bytes`` / ``max_total_bytes`` -
  counted while decompressing, so a header that lies about sizes does not help a zip bomb;
* a member inflates more than ``max_ratio`` times its compressed size (above 1 MiB);
* the file is not a zip, is truncated, or a member fails its CRC.
"""

from __future__ import annotations

import io
import posixpath
import stat
import zipfile
import zlib
from dataclasses import dataclass

ZIP_MAGIC = b"PK\x03\x04"


class ArchiveError(ValueError):
    """An archive is refused; the message names the archive, the member and why.

    >>> str(ArchiveError("r.zip", "../x.xml", "escapes the archive ('..' segment)"))
    "r.zip: member '../x.xml': escapes the archive ('..' segment)"
    """

    def __init__(self, archive: str, member: str | None, reason: str) -> None:
        self.archive, self.member, self.reason = archive, member, reason
        where = f"member {member!r}: " if member is not None else ""
        super().__init__(f"{archive}: {where}{reason}")


@dataclass(frozen=True)
class ArchiveLimits:
    max_members: int = 10_000
    max_member_bytes: int = 512 * 2**20
    max_total_bytes: int = 2 * 2**30
    max_ratio: float = 200.0


def is_zip(data: bytes) -> bool:
    return data[:4] == ZIP_MAGIC


def check_member_name(name: str, archive: str) -> str:
    """The member's path, normalized; refuses what could point outside the archive's folder.

    >>> check_member_name("annotations/instances_default.json", "a.zip")
    'annotations/instances_default.json'
    >>> check_member_name("/etc/passwd", "a.zip")
    Traceback (most recent call last):
    ...
    dataset_pipeline.formats.archives.ArchiveError: a.zip: member '/etc/passwd': absolute path
    """
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise ArchiveError(archive, name, "absolute path")
    if "\\" in name or "\x00" in name:
        raise ArchiveError(archive, name, "backslash or NUL byte in the name")
    if ".." in name.split("/"):
        raise ArchiveError(archive, name, "escapes the archive ('..' segment)")
    return posixpath.normpath(name)


def read_members(
    data: bytes, archive: str, suffixes: tuple[str, ...], limits: ArchiveLimits | None = None
) -> dict[str, bytes]:
    """The members whose names end with one of ``suffixes`` (case-insensitive), by name, in name order.

    Every member's name and type is checked, also of members that are not returned.
    """
    limits = limits or ArchiveLimits()
    try:
        handle = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError) as exc:
        raise ArchiveError(archive, None, f"not a readable zip archive ({exc})") from None
    with handle:
        infos = handle.infolist()
        if len(infos) > limits.max_members:
            raise ArchiveError(
                archive, None, f"{len(infos)} members; at most {limits.max_members} are accepted"
            )
        wanted = []
        for info in infos:
            name = check_member_name(info.filename, archive)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise ArchiveError(archive, info.filename, "symbolic links are refused")
            if info.is_dir():
                continue
            if name.lower().endswith(suffixes):
                wanted.append((name, info))
        total, out = 0, {}
        for name, info in sorted(wanted, key=lambda item: item[0]):
            content = _read_capped(handle, info, archive, limits, limits.max_total_bytes - total)
            total += len(content)
            out[name] = content
        return out


def _read_capped(
    handle: zipfile.ZipFile, info: zipfile.ZipInfo, archive: str, limits: ArchiveLimits, budget: int
) -> bytes:
    cap = min(limits.max_member_bytes, budget)
    chunks, size = [], 0
    try:
        with handle.open(info) as member:
            while chunk := member.read(1 << 20):
                size += len(chunk)
                if size > cap:
                    what = "the archive's total" if cap == budget else "a member's"
                    raise ArchiveError(
                        archive, info.filename, f"inflates beyond {what} limit of {cap:,} bytes"
                    )
                if size > 2**20 and size > limits.max_ratio * max(1, info.compress_size):
                    raise ArchiveError(
                        archive,
                        info.filename,
                        f"inflates more than {limits.max_ratio:.0f}x its compressed size (a zip bomb?)",
                    )
                chunks.append(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError) as exc:
        raise ArchiveError(archive, info.filename, f"cannot be read ({exc})") from None
    return b"".join(chunks)
