"""The shape of the code, checked: small rooms, documented public names, the data plane apart
from the control side, and errors as kinds (docs/architecture.md, "Where does X live")."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ["console", "registry", "serving", "workers", "webhooks", "paddock_cli", "bench"]
MAX_MODULE_LINES = 400
# What the data plane may import from the rest of Paddock: errors, the rows it routes by, the
# token check it shares with the API, and the figures it counts. Never pages, services or rollouts.
DATA_PLANE_MAY_IMPORT = {"console.errors", "console.authentication", "console.models", "serving.models",
                         "serving.livestats", "serving.metrics", "registry.models", "registry.choices",
                         "registry.datatypes"}


def modules() -> list[Path]:
    found = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            relative = path.relative_to(ROOT)
            if "migrations" in relative.parts or any(part.startswith(".") for part in relative.parts):
                continue
            found.append(path)
    return sorted(found)


def public_defs(tree: ast.AST) -> list[ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef]:
    return [node for node in ast.walk(tree)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            and not node.name.startswith("_")]


def test_no_module_is_a_big_room() -> None:
    sizes = {str(path.relative_to(ROOT)): len(path.read_text().splitlines()) for path in modules()}
    assert {name: lines for name, lines in sizes.items() if lines > MAX_MODULE_LINES} == {}


def test_most_public_names_say_what_they_are_for() -> None:
    documented = total = 0
    for path in modules():
        for node in public_defs(ast.parse(path.read_text())):
            total += 1
            documented += ast.get_docstring(node) is not None
    assert documented / total >= 0.5, f"{documented} of {total} public defs have a docstring"


@pytest.mark.parametrize("path", sorted((ROOT / "serving" / "v2").glob("*.py")), ids=lambda p: p.name)
def test_the_data_plane_reads_no_control_code(path: Path) -> None:
    imported: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            imported.update(f"{node.module}.{alias.name}" if node.module in PACKAGES else node.module
                            for alias in node.names)
        elif isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
    paddock = {name for name in imported if name.split(".")[0] in PACKAGES}
    outside = {name for name in paddock if not name.startswith("serving.v2")} - DATA_PLANE_MAY_IMPORT
    assert outside == set(), f"{path.name} imports {sorted(outside)}"


def test_every_module_says_what_it_holds() -> None:
    missing = [str(path.relative_to(ROOT)) for path in modules()
               if path.read_text().strip() and ast.get_docstring(ast.parse(path.read_text())) is None]
    assert missing == []
