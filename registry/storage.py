"""A version's files in Django's default storage: their names, removing them, and a local path to
them for a runtime (copied out when the storage is not a local filesystem)."""

import contextlib
import os
import posixpath
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from django.core.files.storage import default_storage

from registry.models import ModelVersion


def stored_files(version: ModelVersion) -> list[str]:
    """The storage names of a version's files: its artifact and its external data."""
    folder = posixpath.dirname(version.artifact.name)
    external = [posixpath.join(folder, part) for part in version.metadata.get("external_data", [])]
    return [version.artifact.name, *external]


def remove_files(names: list[str], prune: bool = False) -> None:
    """Delete stored files; with `prune`, then the folders they leave empty (local storage only)."""
    for name in names:
        with contextlib.suppress(OSError):
            default_storage.delete(name)
    if not prune:
        return
    # models/<model>/<number>/... : the version's folders and the model's, not `models` itself.
    folders = {parent for name in names for parent in Path(name).parents if len(parent.parts) > 1}
    for folder in sorted(folders, key=lambda f: len(f.parts), reverse=True):  # the deepest first
        with contextlib.suppress(OSError, NotImplementedError):
            os.rmdir(default_storage.path(str(folder)))  # fails, harmlessly, unless the folder is empty


@contextlib.contextmanager
def local_artifact(version: ModelVersion) -> Iterator[Path]:
    """A filesystem path to the artifact, with its external data beside it; copied out of
    storage into a temporary folder when the storage is not a local filesystem."""
    try:
        yield Path(default_storage.path(version.artifact.name))
        return
    except NotImplementedError:
        pass
    folder = posixpath.dirname(version.artifact.name)
    with tempfile.TemporaryDirectory(prefix="paddock-artifact-") as scratch:
        names = [posixpath.basename(version.artifact.name), *version.metadata.get("external_data", [])]
        for relative in names:
            target = Path(scratch) / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            with default_storage.open(posixpath.join(folder, relative), "rb") as source, target.open("wb") as out:
                shutil.copyfileobj(source, out)
        yield Path(scratch) / names[0]
