"""Writes to the registry. Each verb runs in one transaction that also writes its audit event."""

import contextlib
import hashlib
import json
import os
import posixpath
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.core.files import File
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import F, Max, Model
from django.utils import timezone
from django.utils.text import get_valid_filename

from console.audit import Actor, record_event
from console.errors import Conflict, InvalidInput, PayloadTooLarge, full_disk_is_507
from console.models import Team
from registry import storage
from registry.choices import CHAMPION, VersionStatus
from registry.inspection import ArtifactRejected, inspect_artifact
from registry.models import Alias, ModelVersion, RegisteredModel, slug_validator
from webhooks import events as webhook_events

_CHUNK = 1024 * 1024


def _check_slug(value: str, what: str) -> None:
    try:
        slug_validator(value)
    except ValidationError:
        raise InvalidInput(f"invalid {what} '{value}': {slug_validator.message}") from None


def holds_nul(value: Any) -> bool:
    """Whether a string anywhere in a JSON-like value holds NUL, which PostgreSQL stores in no
    text or JSON column (a row with one was a 500)."""
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(holds_nul(key) or holds_nul(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return any(holds_nul(item) for item in value)
    return False


def check_tags(tags: Any) -> list[str]:
    """Tags as stored (stripped, unique, sorted), or InvalidInput saying what is wrong."""
    if not isinstance(tags, list) or any(not isinstance(t, str) or not t.strip() or len(t) > 64 for t in tags):
        raise InvalidInput("tags must be a list of non-empty strings of at most 64 characters")
    return sorted({t.strip() for t in tags})


def create_model(*, actor: Actor, name: str, team: Team, description: str = "",
                 tags: list[str] | None = None) -> RegisteredModel:
    _check_slug(name, "model name")
    clean_tags = check_tags(tags or [])
    try:
        with transaction.atomic():
            model = RegisteredModel.objects.create(
                name=name, team=team, description=description, tags=clean_tags, owner=actor.person
            )
            record_event(actor=actor, action="model.create", obj=model, after=model.snapshot())
    except IntegrityError:
        raise Conflict(f"a model named '{name}' already exists") from None
    return model


def update_model(*, actor: Actor, model: RegisteredModel, description: str | None = None,
                 tags: list[str] | None = None, team: Team | None = None) -> RegisteredModel:
    """Change what people may change of a model: its description, tags and (admins) team."""
    with transaction.atomic():
        model = RegisteredModel.objects.select_for_update(of=("self",)).select_related("team", "owner").get(pk=model.pk)
        before = model.snapshot()
        if description is not None:
            model.description = description
        if tags is not None:
            model.tags = check_tags(tags)
        if team is not None:
            model.team = team
        model.save(update_fields=["description", "tags", "team", "updated_at"])
        record_event(actor=actor, action="model.update", obj=model, before=before, after=model.snapshot())
    return model


def rows_removed_with(model: RegisteredModel) -> list[tuple[str, Model, dict[str, Any]]]:
    """What `delete_model` removes besides the model, in its order, as (action, row, before).
    A rollout's timeline and a version's metric rollups go with them, counted in their event
    (each timeline entry is in the audit log already; rollups are figures, not changes)."""
    rows: list[tuple[str, Model, dict[str, Any]]] = []
    for rollout in model.rollouts.select_related("model", "stable_version", "candidate_version"):
        rows.append(("rollout.delete", rollout, {**rollout.snapshot(), "timeline_events": rollout.events.count()}))
    with contextlib.suppress(ObjectDoesNotExist):
        rows.append(("deployment.delete", model.deployment, model.deployment.snapshot()))
    for alias in model.aliases.select_related("model", "version"):
        rows.append(("alias.delete", alias, {"alias": alias.name, "version": alias.version.number}))
    for version in model.versions.select_related("model"):
        rows.append(("version.delete", version, {**version.snapshot(), "rollups": version.rollups.count()}))
    return rows


def delete_model(*, actor: Actor, model: RegisteredModel) -> None:
    """Remove a model and every row that hangs off it, one audit event per row, in one
    transaction; its stored files are removed once that commits.

    1. Lock the model: no version is registered meanwhile.
    2. Delete what points at its versions (PROTECTed links) first: rollouts, the deployment,
       aliases; then the versions, then the model (`rows_removed_with` gives the order).
    3. On commit, remove the versions' files and their emptied folders.
    """
    with transaction.atomic():
        model = RegisteredModel.objects.select_for_update(of=("self",)).select_related("team", "owner").get(pk=model.pk)
        files = [name for version in model.versions.all() for name in storage.stored_files(version)]
        for action, row, before in rows_removed_with(model):
            record_event(actor=actor, action=action, obj=row, before=before)
            row.delete()
        record_event(actor=actor, action="model.delete", obj=model, before=model.snapshot())
        model.delete()
        transaction.on_commit(lambda: storage.remove_files(files, prune=True))


@full_disk_is_507
def register_version(*, actor: Actor, model: RegisteredModel, upload: UploadedFile, declared_format: str = "",
                     signature: Any = None, description: str = "",
                     external_data: list[UploadedFile] | None = None) -> tuple[ModelVersion, bool]:
    """Store a new immutable version and queue its validation; or, when the same files were
    uploaded to this model before, return that version. Returns (version, created).

    1. Refuse what is over the size limit, or a description with NUL, before reading it.
    2. Copy to a private temporary folder while hashing; a lone file already stored returns its version.
    3. Inspect the copy (format, signature, external-data paths) and refuse what is not a model,
       or names or metadata with NUL.
    4. Copy and hash the external-data files it reads; the same files (`version_checksum`) return
       the existing version.
    5. In one transaction: number the version, store the files, write the row and the audit event;
       validation is queued when it commits. On any failure the stored files are removed, a
       half-written one too, with the folders left empty; a full disk answers 507.
    """
    external_data = external_data or []
    limit = settings.PADDOCK_MAX_UPLOAD_BYTES
    total = (upload.size or 0) + sum(f.size or 0 for f in external_data)
    if total > limit:
        raise PayloadTooLarge(f"upload is {total} bytes; the limit is {limit} bytes")
    if holds_nul(description):
        raise InvalidInput("the description must not contain NUL characters")
    filename = get_valid_filename(Path(upload.name or "").name) or "model"
    with tempfile.TemporaryDirectory(prefix="paddock-upload-") as scratch:
        local = Path(scratch) / filename
        sha256, size = _copy_hashing(upload, local)
        if not external_data and (existing := _existing(model, sha256, external=False)) is not None:
            return existing, False
        inspection = inspect_artifact(local, declared_format=declared_format, signature=signature)
        if holds_nul([inspection.metadata, inspection.inputs, inspection.outputs]):
            raise InvalidInput("the model's metadata or tensor names contain a NUL character, which cannot be stored")
        matched = _match_external_data(list(inspection.external_files), external_data)
        extra: dict[str, tuple[Path, str, int]] = {}  # location → (private copy, sha256, size)
        for index, (location, part) in enumerate(matched.items()):
            copy = Path(scratch) / f"external-{index}"  # by index: an uploaded name is not a safe path
            extra[location] = (copy, *_copy_hashing(part, copy))
        checksum = version_checksum(sha256, {location: digest for location, (_, digest, _) in extra.items()})
        size += sum(length for _, _, length in extra.values())
        if extra and (existing := _existing(model, checksum, external=True)) is not None:
            return existing, False
        metadata = {**inspection.metadata, "external_data": list(extra)}
        stored: list[str] = []
        try:
            with transaction.atomic():
                locked = RegisteredModel.objects.select_for_update().get(pk=model.pk)
                number = (locked.versions.aggregate(n=Max("number"))["n"] or 0) + 1
                version = ModelVersion(
                    model=locked, number=number, original_filename=filename, sha256=checksum, size=size,
                    format=inspection.format, metadata=metadata, inputs=inspection.inputs,
                    outputs=inspection.outputs, description=description,
                    created_by=actor.person,
                )
                name = version.artifact.field.generate_filename(version, filename)
                with local.open("rb") as handle, _removed_if_half_written(name):
                    version.artifact.save(filename, File(handle), save=False)
                stored.append(version.artifact.name)
                folder = posixpath.dirname(version.artifact.name)
                for location, (copy, _, _) in extra.items():
                    tensor = inspection.external_files[location]
                    stored.append(_store_exact(folder, location, copy, tensor))
                version.save()
                record_event(actor=actor, action="version.create", obj=version, after=version.snapshot())
                from registry.tasks import validate_version

                validate_version.delay_on_commit(version.pk)
        except IntegrityError:
            # The same files won a race with this upload: answer with that version.
            storage.remove_files(stored)
            existing = model.versions.filter(sha256=checksum).first()
            if existing is None:
                raise
            return existing, False
        except BaseException:
            storage.remove_files(stored, prune=True)
            raise
    return version, True


def version_checksum(artifact_sha256: str, external: dict[str, str]) -> str:
    """A version's identity. A lone file: its own sha256, as versions always had. With external
    data: the sha256 of the JSON list of [path, sha256] pairs of every file, the model file first
    under the path "" (its name is not part of it, as for a lone file), then each external-data
    file under its path inside the version's folder, sorted."""
    if not external:
        return artifact_sha256
    pairs = [["", artifact_sha256], *sorted([path, digest] for path, digest in external.items())]
    return hashlib.sha256(json.dumps(pairs, separators=(",", ":")).encode()).hexdigest()


def _existing(model: RegisteredModel, checksum: str, *, external: bool) -> ModelVersion | None:
    """The model's version with this checksum, when it has external data exactly when asked: a
    lone file whose bytes happen to hash like a multi-file version's checksum is not that version."""
    version = model.versions.filter(sha256=checksum).first()
    return version if version is not None and bool(version.metadata.get("external_data")) == external else None


def _copy_hashing(upload: UploadedFile, target: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with target.open("wb") as out:
        for chunk in upload.chunks(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    return digest.hexdigest(), size


def _match_external_data(locations: list[str], files: list[UploadedFile]) -> dict[str, UploadedFile]:
    by_name = {Path(f.name or "").name: f for f in files}
    matched: dict[str, UploadedFile] = {}
    for location in locations:
        part = by_name.pop(posixpath.basename(location), None)
        if part is None:
            raise ArtifactRejected(
                f"the model reads external data from '{location}', which was not uploaded: "
                "send it as an 'external_data' file"
            )
        matched[location] = part
    if by_name:
        raise ArtifactRejected(f"external data file '{sorted(by_name)[0]}' is not referenced by the model")
    return matched


def _store_exact(folder: str, location: str, copy: Path, tensor: str) -> str:
    """Store an external-data file at `location` inside the version's folder, or refuse it."""
    name = posixpath.join(folder, location)
    try:  # a symbolic link already on disk must not carry the file (or a runtime's read) elsewhere
        root = os.path.join(os.path.realpath(default_storage.path("")), folder)  # MEDIA_ROOT may be a link
        escapes = os.path.commonpath([root, os.path.realpath(default_storage.path(name))]) != root
    except NotImplementedError:  # not a filesystem: nothing to follow
        escapes = False
    if escapes:
        raise ArtifactRejected(f"external data location '{location}' of {tensor} resolves outside the "
                               "version's folder through a symbolic link")
    with copy.open("rb") as handle, _removed_if_half_written(name):
        saved = default_storage.save(name, File(handle))
    if saved != name:
        default_storage.delete(saved)
        raise ArtifactRejected(f"external data file '{name}' could not be stored under its own name")
    return saved


@contextlib.contextmanager
def _removed_if_half_written(name: str) -> Iterator[None]:
    """Delete `name` when writing it fails (a full disk leaves part of it), unless it was there before."""
    existed = default_storage.exists(name)
    try:
        yield
    except BaseException:
        if not existed:
            with contextlib.suppress(OSError):
                default_storage.delete(name)
        raise


def claim_validation(*, actor: Actor, version_id: int, stale_before: Any = None) -> bool:
    """Move a version to `validating` with a conditional UPDATE, audited in its transaction;
    False when someone else already has it (or it is done). With `stale_before`, also take over
    a validation that started before then (its worker died); each claim counts an attempt, and a
    stale one that had PADDOCK_VALIDATION_MAX_ATTEMPTS already ends `failed` instead (False)."""
    now, attempt = timezone.now(), F("validation_attempts") + 1
    with transaction.atomic():
        versions = ModelVersion.objects.filter(pk=version_id)
        pending = versions.filter(status=VersionStatus.PENDING)
        claimed = pending.update(status=VersionStatus.VALIDATING, validation_started_at=now,
                                 validation_attempts=attempt)
        action, before = "version.validation_started", {"status": VersionStatus.PENDING}
        failed = ""  # the reason, when the attempts ran out
        if not claimed and stale_before is not None:
            action, before = "version.validation_restarted", {"status": VersionStatus.VALIDATING}
            stale = versions.filter(status=VersionStatus.VALIDATING, validation_started_at__lt=stale_before)
            tries = settings.PADDOCK_VALIDATION_MAX_ATTEMPTS
            reason = f"validation did not finish after {tries} attempts (the worker died or was stopped each time)"
            if stale.filter(validation_attempts__gte=tries).update(status=VersionStatus.FAILED, status_reason=reason,
                                                                    validated_at=now):
                action, failed = "version.validation_failed", reason
            else:
                claimed = stale.update(validation_started_at=now, validation_attempts=attempt)
        if not claimed and not failed:
            return False
        version = ModelVersion.objects.select_related("model").get(pk=version_id)
        after: dict[str, Any] = {"status": VersionStatus.FAILED, "reason": failed, "provider": None} if failed else {
            "status": VersionStatus.VALIDATING, "started_at": now.isoformat(), "attempt": version.validation_attempts}
        record_event(actor=actor, action=action, obj=version, before=before, after=after)
        if failed:
            webhook_events.version_finished(version)
    return not failed


def finish_validation(*, actor: Actor, version_id: int, report: dict[str, Any] | None, error: str = "") -> None:
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().select_related("model").get(pk=version_id)
        before = {"status": version.status}
        version.status = VersionStatus.FAILED if error else VersionStatus.READY
        version.status_reason = error
        version.validation_report = report or {}
        version.validated_at = timezone.now()
        version.save(update_fields=["status", "status_reason", "validation_report", "validated_at"])
        action = "version.validation_failed" if error else "version.validated"
        after = {"status": version.status, "reason": error, "provider": (report or {}).get("provider")}
        record_event(actor=actor, action=action, obj=version, before=before, after=after)
        webhook_events.version_finished(version)
        if not error:
            _crown_first_ready(actor=actor, version=version)


def _crown_first_ready(*, actor: Actor, version: ModelVersion) -> None:
    """The model's first ready version becomes its `champion` (audited `alias.set`), so that it
    serves; a later version never moves what serves: a person promotes it (the alias, the
    deployment or a rollout). Runs in finish_validation's transaction, the model's row locked so
    that two versions becoming ready at once crown one."""
    RegisteredModel.objects.select_for_update().filter(pk=version.model_id).values_list("pk").first()
    if ModelVersion.objects.filter(model_id=version.model_id, status=VersionStatus.READY).exclude(
            pk=version.pk).exists() or Alias.objects.filter(model_id=version.model_id, name=CHAMPION).exists():
        return
    set_alias(actor=actor, model=version.model, name=CHAMPION, version=version,
              reason="the model's first ready version")


def set_alias(*, actor: Actor, model: RegisteredModel, name: str, version: ModelVersion,
              reason: str | None = None) -> Alias:
    """Point the alias `name` at `version` (created when missing), audited `alias.set` with the
    `reason` when one is given."""
    _check_slug(name, "alias")
    if version.model_id != model.pk:
        raise InvalidInput(f"version {version.number} does not belong to model '{model.name}'")
    if version.status == VersionStatus.FAILED:
        raise Conflict(f"version {version.number} failed validation and cannot carry an alias")
    with transaction.atomic():
        alias = Alias.objects.select_for_update().filter(model=model, name=name).select_related("version").first()
        before = {"alias": name, "version": alias.version.number} if alias else None
        if alias is None:
            alias = Alias.objects.create(model=model, name=name, version=version)
        else:
            alias.version = version
            alias.save(update_fields=["version", "updated_at"])
        after: dict[str, Any] = {"alias": name, "version": version.number}
        if reason is not None:
            after["reason"] = reason
        record_event(actor=actor, action="alias.set", obj=alias, before=before, after=after)
        webhook_events.alias_moved(alias, before)
    return alias


def delete_alias(*, actor: Actor, alias: Alias) -> None:
    with transaction.atomic():
        before = {"alias": alias.name, "version": alias.version.number}
        record_event(actor=actor, action="alias.delete", obj=alias, before=before)
        alias.delete()
