"""A version's model card: its fields checked as people send them (the API and the console share
these checks and their messages), and its Markdown rendered to HTML that is safe to show."""

import math
import re
from typing import Any

import nh3
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.utils.safestring import SafeString, mark_safe
from markdown_it import MarkdownIt

from console.audit import Actor, record_event
from console.errors import InvalidInput
from registry.models import ModelVersion

CARD_FIELDS = ("card_markdown", "metrics", "source_run_url", "parent_version", "dataset_sha256")
MAX_MARKDOWN_CHARS = 100_000
MAX_METRICS = 100
MAX_METRIC_NAME_CHARS = 64
MAX_URL_CHARS = 500  # the column's length
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_http_url = URLValidator(schemes=["http", "https"])

# Raw HTML is allowed in the Markdown (authors write <details>, <sub>, tables): the sanitiser,
# not the parser, is what makes the card safe, so it is built once with an explicit allow-list.
_markdown = MarkdownIt("commonmark", {"html": True}).enable(["table", "strikethrough"])
_sanitiser = nh3.Cleaner(
    # No <img>: a card must not make a viewer's browser fetch from hosts its author chose.
    tags={"a", "abbr", "b", "blockquote", "br", "code", "dd", "del", "details", "dl", "dt", "em",
          "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "kbd", "li", "ol", "p", "pre", "s", "strong",
          "sub", "summary", "sup", "table", "tbody", "td", "th", "thead", "tr", "ul"},
    clean_content_tags={"script", "style"},
    attributes={"a": {"href", "title"}, "abbr": {"title"}, "td": {"style"}, "th": {"style"}},
    filter_style_properties={"text-align"},  # a table column's alignment, nothing else
    url_schemes={"http", "https", "mailto"},
    link_rel="noopener noreferrer nofollow",
)


def render_card(markdown: str) -> SafeString:
    """The card's Markdown as sanitised HTML: only the allowed tags and attributes, links to
    http(s) and mailto only, no script, event handler, style (but a table cell's alignment) or image."""
    return mark_safe(_sanitiser.clean(_markdown.render(markdown)))  # safe: sanitised on this very line


def clean_card(version: ModelVersion, changes: Any) -> dict[str, Any]:
    """The changes as they are stored (the parent as a version), or InvalidInput naming the field."""
    if not isinstance(changes, dict):
        raise InvalidInput(f"send the card as a JSON object with any of: {', '.join(CARD_FIELDS)}")
    unknown = sorted(str(field) for field in changes if field not in CARD_FIELDS)
    if unknown:
        raise InvalidInput(f"unknown card field '{unknown[0]}': a card has {', '.join(CARD_FIELDS)}")
    return {field: _CHECKS[field](version, value) for field, value in changes.items()}


def _text(value: Any, field: str, limit: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > limit or "\x00" in value:
        raise InvalidInput(f"'{field}' must be text of at most {limit} characters, without NUL")
    return value


def _markdown_field(version: ModelVersion, value: Any) -> str:
    return _text(value, "card_markdown", MAX_MARKDOWN_CHARS)


def _metrics(version: ModelVersion, value: Any) -> dict[str, int | float]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput("'metrics' must be an object of metric names and numbers, e.g. {\"accuracy\": 0.93}")
    if len(value) > MAX_METRICS:
        raise InvalidInput(f"'metrics' holds {len(value)} metrics; at most {MAX_METRICS} are allowed")
    for name, number in value.items():
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_METRIC_NAME_CHARS or "\x00" in name:
            raise InvalidInput(f"'metrics': each name must be 1 to {MAX_METRIC_NAME_CHARS} characters, without NUL")
        if not _finite_number(number):
            raise InvalidInput(f"'metrics': the value of '{name}' must be a finite number")
    return {name.strip(): number for name, number in value.items()}


def _finite_number(value: Any) -> bool:
    """A number a reader takes for one: not a bool (an int to Python), not NaN or an infinity (no
    JSON form), not an integer too large for a float (JavaScript and most readers lose it)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def _source_run_url(version: ModelVersion, value: Any) -> str:
    url = _text(value, "source_run_url", MAX_URL_CHARS).strip()
    if url:
        try:
            _http_url(url)
        except ValidationError:
            raise InvalidInput("'source_run_url' must be an http:// or https:// URL") from None
    return url


def _dataset_sha256(version: ModelVersion, value: Any) -> str:
    digest = _text(value, "dataset_sha256", 64).strip()
    if digest and not _SHA256.fullmatch(digest):
        raise InvalidInput("'dataset_sha256' must be 64 hexadecimal characters (a sha256 digest)")
    return digest.lower()


def _parent_version(version: ModelVersion, value: Any) -> ModelVersion | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInput("'parent_version' must be a version number of this model, or null")
    if value == version.number:
        raise InvalidInput(f"'parent_version' must be another version: {value} is this version")
    if value > version.number:
        raise InvalidInput(f"'parent_version' must be older than version {version.number}: {value} is newer")
    parent = ModelVersion.objects.filter(model_id=version.model_id, number=value).first() if value > 0 else None
    if parent is None:
        raise InvalidInput(f"'parent_version': model '{version.model.name}' has no version {value}")
    return parent


_CHECKS = {"card_markdown": _markdown_field, "metrics": _metrics, "source_run_url": _source_run_url,
           "parent_version": _parent_version, "dataset_sha256": _dataset_sha256}


def metrics_from_text(text: str) -> dict[str, int | float]:
    """The console's metrics box, one `name: number` per line (blank lines skipped), as a dict;
    InvalidInput naming the line that is not one."""
    metrics: dict[str, int | float] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, separator, raw = line.partition(":")
        try:
            if not separator or not name.strip():
                raise ValueError(line)
            value: int | float = int(raw) if re.fullmatch(r"\s*[-+]?[0-9]+\s*", raw) else float(raw)
        except ValueError:
            raise InvalidInput(f"'metrics' line {number} must be 'name: number', e.g. 'accuracy: 0.93'") from None
        metrics[name.strip()] = value
    return metrics


def metrics_as_text(metrics: dict[str, Any]) -> str:
    """The metrics as the console's box shows them: one `name: number` per line."""
    return "\n".join(f"{name}: {value}" for name, value in metrics.items())


def update_version_card(*, actor: Actor, version: ModelVersion, changes: dict[str, Any]) -> ModelVersion:
    """Change the fields of a version's model card that `changes` names (registry.cards checks
    them), audited `version.card_updated` with the before and after of the fields that changed;
    nothing is written when none did."""
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update(of=("self",)).select_related(
            "model", "parent_version").get(pk=version.pk)
        cleaned = clean_card(version, changes)
        before = version.card_snapshot()
        for field, value in cleaned.items():
            setattr(version, field, value)
        after = version.card_snapshot()
        changed = [field for field in cleaned if before[field] != after[field]]
        if changed:
            version.save(update_fields=changed)
            record_event(actor=actor, action="version.card_updated", obj=version,
                         before={field: before[field] for field in changed},
                         after={field: after[field] for field in changed})
    return version
