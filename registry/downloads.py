"""A version's artifact as a download: its one file as stored, or, for an ONNX model with
external data, a zip of the model and its data files built while it streams (stored, not
compressed: nothing is copied first and memory stays at one chunk). The audited verb that hands
one out is download_version."""

import posixpath
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC
from pathlib import PurePosixPath

from django.core.files.storage import default_storage
from django.db import transaction
from django.http import FileResponse, StreamingHttpResponse
from django.utils.http import content_disposition_header

from console.audit import Actor, record_event
from console.errors import NotFound
from registry.models import ModelVersion

_CHUNK = 1024 * 1024
_SUFFIXES = {"onnx": ".onnx", "torchscript": ".pt"}


@dataclass(frozen=True)
class StoredFile:
    """One file of a version: its name inside the download (relative to the version's folder),
    its name in storage, and its size."""

    name: str
    stored: str
    size: int


@dataclass(frozen=True)
class ArtifactDownload:
    """What a download sends: the version's files, and the name and checksum it carries."""

    version: ModelVersion
    files: list[StoredFile]

    @property
    def zipped(self) -> bool:
        return len(self.files) > 1

    @property
    def filename(self) -> str:
        """`<model>-v<n>.zip` for several files, else `<model>-v<n>` and the artifact's suffix."""
        stem = f"{self.version.model.name}-v{self.version.number}"
        if self.zipped:
            return f"{stem}.zip"
        suffix = PurePosixPath(self.version.original_filename).suffix or _SUFFIXES.get(self.version.format, "")
        return stem + suffix

    @property
    def etag(self) -> str:
        """Strong: the same version always sends the same bytes (the zip's entries carry fixed dates)."""
        return f'"{self.version.sha256}-zip"' if self.zipped else f'"{self.version.sha256}"'


def prepare_download(version: ModelVersion) -> ArtifactDownload:
    """The version's files with their sizes; NotFound when storage has lost one of them."""
    folder = posixpath.dirname(version.artifact.name)
    names = [posixpath.basename(version.artifact.name), *version.metadata.get("external_data", [])]
    files = []
    for name in names:
        stored = posixpath.join(folder, name)
        try:
            files.append(StoredFile(name=name, stored=stored, size=default_storage.size(stored)))
        except OSError:
            raise NotFound(f"model '{version.model.name}' version {version.number}: its stored file '{name}' "
                           "is missing") from None
    return ArtifactDownload(version=version, files=files)


def artifact_response(download: ArtifactDownload) -> FileResponse | StreamingHttpResponse:
    """The download as an attachment, with the version's sha256 as X-Checksum-Sha256: the
    file's own digest for a lone file; for a zip the version's checksum over its files
    (registry.services.version_checksum), which a client recomputes from what it unzips."""
    response: FileResponse | StreamingHttpResponse
    if download.zipped:
        response = StreamingHttpResponse(zip_chunks(download), content_type="application/zip")
        response["Content-Disposition"] = content_disposition_header(True, download.filename) or "attachment"
    else:
        response = FileResponse(default_storage.open(download.files[0].stored, "rb"), as_attachment=True,
                                filename=download.filename, content_type="application/octet-stream")
    response["X-Checksum-Sha256"] = download.version.sha256
    response["ETag"] = download.etag
    return response


class _Sink:
    """A write-only file for zipfile: what it writes waits here until the generator yields it.
    Without tell() and seek(), zipfile streams: each entry's sizes and CRC follow its data."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass

    def take(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        return data


def zip_chunks(download: ArtifactDownload) -> Iterator[bytes]:
    """The zip of the download's files under their names in the version's folder, a chunk at a
    time: the model file first, then its external data, each entry dated with the version."""
    sink = _Sink()
    created = download.version.created_at.astimezone(UTC)
    stamp = (max(created.year, 1980), created.month, created.day, created.hour, created.minute, created.second)
    with zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_STORED) as archive:
        for part in download.files:
            entry = zipfile.ZipInfo(part.name, date_time=stamp)
            entry.file_size = part.size  # zipfile writes Zip64 headers from it for a file over 2 GiB
            entry.external_attr = 0o644 << 16
            with default_storage.open(part.stored, "rb") as source, archive.open(entry, "w") as target:
                while chunk := source.read(_CHUNK):
                    target.write(chunk)
                    if data := sink.take():
                        yield data
            if data := sink.take():  # the entry's data descriptor
                yield data
    yield sink.take()  # the central directory


def download_version(*, actor: Actor, version: ModelVersion) -> ArtifactDownload:
    """The version's files to stream (registry.downloads), the download audited
    `version.downloaded` before a byte is sent; a file missing from storage is NotFound, unaudited."""
    download = prepare_download(version)
    with transaction.atomic():
        record_event(actor=actor, action="version.downloaded", obj=version,
                     after={"number": version.number, "sha256": version.sha256, "filename": download.filename,
                            "files": [part.name for part in download.files]})
    return download
