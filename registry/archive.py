"""Zip archives (TorchScript's format) judged by their central directory alone, record by record,
before any entry is read: a zip bomb declares its sizes there. Nothing is decompressed but the
first bytes of `version` (registry/inspection.py reads the rest of what it needs from the names)."""

import os
import posixpath
import struct
import zipfile
import zlib
from pathlib import Path
from typing import IO

from django.conf import settings

from registry.inspection import ArtifactRejected, is_inside_folder

MAX_ZIP_ENTRIES = 10_000  # a TorchScript archive holds one entry per tensor storage, plus code
MAX_ZIP_DIRECTORY_BYTES = 4 * 1024 * 1024  # torch's records are ~100 bytes each
MAX_ZIP_RATIO, ZIP_RATIO_FLOOR = 100, 64 * 1024  # torch stores tensors, deflates code ~3:1; short text more
ZIP_MAX_EXPANSION = 2  # all entries together, uncompressed: at most twice the upload limit
VERSION_READ_BYTES = 64  # `version` holds a number
_END, _END64_LOCATOR, _END64 = struct.Struct("<4s4H2LH"), struct.Struct("<4sLQL"), struct.Struct("<4sQ2H2L4Q")
_CENTRAL, _LOCAL = struct.Struct("<4s4B4HL2L5H2L"), struct.Struct("<4s5H3L2H")  # directory record, local header
Entry = tuple[bytes, int, int, int]  # raw name, method, compressed size, local header offset


def _corrupt(reason: str) -> ArtifactRejected:
    return ArtifactRejected(f"truncated or corrupt archive: {reason}")


def scan_zip(path: Path) -> tuple[list[str], Entry | None]:
    """The archive's entry names and `*/version` entry; each record is checked before the next is read."""
    names: list[str] = []
    seen: set[str] = set()
    version: Entry | None = None
    total = 0
    with path.open("rb") as handle:
        try:
            count, size, start = _zip_directory(handle)
            if count > MAX_ZIP_ENTRIES:
                raise ArtifactRejected(f"the archive has {count} entries: at most {MAX_ZIP_ENTRIES} are accepted")
            if size > MAX_ZIP_DIRECTORY_BYTES:
                raise ArtifactRejected(f"the archive's central directory is {size} bytes: "
                                       f"at most {MAX_ZIP_DIRECTORY_BYTES} are accepted")
            handle.seek(start)
            while handle.tell() < start + size:
                if len(names) == count:
                    raise _corrupt(f"the central directory holds more entries than the {count} its end declares")
                (signature, _, _, _, _, flags, method, _, _, _, compressed, length, name_size, extra_size,
                 comment_size, *_, offset) = _CENTRAL.unpack(handle.read(_CENTRAL.size))
                raw, extra = handle.read(name_size), handle.read(extra_size)
                handle.seek(comment_size, os.SEEK_CUR)
                if signature != b"PK\x01\x02" or handle.tell() > start + size:
                    raise _corrupt("a central directory record is malformed")
                name = raw.decode("utf-8" if flags & 0x800 else "cp437")
                length, compressed, offset = _zip64_fields(extra, length, compressed, offset)
                total += length
                _check_entry(name, seen, flags, method, compressed, length, total)
                if offset + _LOCAL.size + compressed > start:
                    raise _corrupt(f"entry '{name}' runs past the start of the central directory")
                names.append(name)
                if version is None and name.endswith("/version"):
                    version = (raw, method, compressed, offset)
        except (struct.error, ValueError, OSError, StopIteration):  # ValueError: bad UTF-8, seek
            raise _corrupt("a central directory record is malformed") from None
    return names, version


def _zip_directory(handle: IO[bytes]) -> tuple[int, int, int]:
    """(entries, size, offset) of the central directory, from the end record (zip64's when there)."""
    tail_start = max(0, handle.seek(0, os.SEEK_END) - _END.size - 0xFFFF)  # the end, then a comment
    handle.seek(tail_start)
    tail = handle.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) - at < _END.size:
        raise _corrupt("File is not a zip file")
    _, disk, directory_disk, _, count, size, offset, _ = _END.unpack_from(tail, at)
    end = tail_start + at
    if at >= _END64_LOCATOR.size and tail[at - _END64_LOCATOR.size:].startswith(b"PK\x06\x07"):
        end = _END64_LOCATOR.unpack_from(tail, at - _END64_LOCATOR.size)[2]
        handle.seek(end)
        record = handle.read(_END64.size).ljust(_END64.size, b"\0")  # short: no signature either
        signature, _, _, _, disk, directory_disk, _, count, size, offset = _END64.unpack(record)
        if signature != b"PK\x06\x06":
            raise _corrupt("the zip64 end record is missing")
    if disk or directory_disk:
        raise _corrupt("zipfiles that span multiple disks are not supported")
    if offset + size != end:  # the directory ends where the end record starts: nothing prepended or hidden
        raise _corrupt("the central directory is not where the end record says")
    return count, size, offset


def _zip64_fields(extra: bytes, *fields: int) -> list[int]:
    """The record's fields, those marked 0xFFFFFFFF read in order from its zip64 extra field."""
    at, values = 0, list(fields)
    while at + 4 <= len(extra):
        kind, size = struct.unpack_from("<2H", extra, at)
        if kind == 1:
            wide = iter(struct.unpack_from(f"<{size // 8}Q", extra, at + 4))
            values = [next(wide) if value == 0xFFFFFFFF else value for value in values]
        at += 4 + size
    return values


def _check_entry(name: str, seen: set[str], flags: int, method: int, compressed: int, length: int,
                 total: int) -> None:
    """Refuse an entry by its record alone; `total`: the uncompressed sizes declared so far, its own included."""
    if not is_inside_folder(name):
        raise ArtifactRejected(f"archive entry '{name}' is not a safe relative path: entries must stay inside "
                               "the archive (no absolute paths, no '..')")
    if posixpath.normpath(name) in seen:
        raise ArtifactRejected(f"archive entry '{name}' appears more than once")
    seen.add(posixpath.normpath(name))
    if flags & 0x1:
        raise ArtifactRejected(f"archive entry '{name}' is encrypted")
    if method not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise ArtifactRejected(f"archive entry '{name}' uses compression method {method}: only stored (0) and "
                               "deflated (8) entries are accepted")
    if length > ZIP_RATIO_FLOOR and length > MAX_ZIP_RATIO * compressed:
        raise ArtifactRejected(f"archive entry '{name}' expands {compressed} bytes to {length} "
                               f"({length // max(compressed, 1)}:1): at most {MAX_ZIP_RATIO}:1 is accepted "
                               f"for entries over {ZIP_RATIO_FLOOR} bytes")
    if total > (cap := settings.PADDOCK_MAX_UPLOAD_BYTES * ZIP_MAX_EXPANSION):
        raise ArtifactRejected(f"the archive's entries declare {total} bytes uncompressed by entry '{name}': "
                               f"at most {cap} ({ZIP_MAX_EXPANSION} times the upload limit) are accepted")


def read_head(path: Path, entry: Entry, limit: int = VERSION_READ_BYTES) -> bytes:
    """At most `limit` bytes from the start of an entry, decompressing no more than that."""
    raw, method, compressed, offset = entry
    with path.open("rb") as handle:
        handle.seek(offset)
        header = handle.read(_LOCAL.size)
        name_size, extra_size = _LOCAL.unpack(header)[-2:] if len(header) == _LOCAL.size else (0, 0)
        if not header.startswith(b"PK\x03\x04") or handle.read(name_size) != raw:
            raise _corrupt(f"entry '{raw.decode(errors='replace')}' does not match its local header")
        handle.seek(extra_size, os.SEEK_CUR)
        data = handle.read(min(compressed, 4096))  # a few KiB of deflate inflate to far more than `limit`
    try:
        return (zlib.decompressobj(-zlib.MAX_WBITS).decompress(data, limit) if method else data)[:limit]
    except zlib.error as exc:
        raise _corrupt(f"entry '{raw.decode(errors='replace')}': {exc}") from None
