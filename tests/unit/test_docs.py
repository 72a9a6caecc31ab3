"""The documentation stays short, linked, self-contained and in step with the code.

README.md and docs/*.md: the README fits in 10 000 characters, every relative link resolves to a
file of this repository, no page cites design notes or issue numbers kept elsewhere,
docs/parameters.md is what the DAGs' Params render today, and docs/architecture.md names every
module of the three packages (and no module that is gone).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
README = REPO_ROOT / "README.md"
DOCS_DIR = REPO_ROOT / "docs"
ARCHITECTURE = DOCS_DIR / "architecture.md"
RENDERER = REPO_ROOT / "scripts" / "render_param_docs.py"
README_MAX_CHARS = 10_000

# Package folder -> the name it is imported by (pyproject.toml's package-dir).
PACKAGE_DIRS = {
    "spark_apps/nbknn": "nbknn",
    "plugins/nbknn_airflow": "nbknn_airflow",
    "scripts/nbknn_local": "nbknn_local",
}

MARKDOWN_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|#)", re.IGNORECASE)
FORBIDDEN = {
    "design notes file": re.compile(r"DESIGN\.md", re.IGNORECASE),
    "issue number": re.compile(r"\b(?:issue|bug|ticket|PR|pull request)s?\s*#?\s*\d+", re.IGNORECASE),
    "bare #number": re.compile(r"(?<![\w&/])#\d+\b"),
}


def doc_pages() -> list[Path]:
    return [README, *sorted(DOCS_DIR.glob("*.md"))]


def module_files() -> list[str]:
    """Every module file of the three packages, as ``<package>/<path>.py`` (e.g. nbknn/knn/topk.py)."""
    names = []
    for folder, package in PACKAGE_DIRS.items():
        root = REPO_ROOT / folder
        names += [f"{package}/{path.relative_to(root).as_posix()}" for path in sorted(root.rglob("*.py"))]
    return names


def load_renderer():
    spec = importlib.util.spec_from_file_location("render_param_docs", RENDERER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_is_short():
    size = len(README.read_text(encoding="utf-8"))
    assert size <= README_MAX_CHARS, f"README.md has {size} characters (at most {README_MAX_CHARS}): move detail to docs/"


@pytest.mark.parametrize("page", doc_pages(), ids=lambda page: page.relative_to(REPO_ROOT).as_posix())
def test_relative_links_resolve_inside_the_repository(page: Path):
    broken = []
    for target in MARKDOWN_LINK.findall(page.read_text(encoding="utf-8")):
        if EXTERNAL.match(target):
            continue
        resolved = (page.parent / target.split("#")[0]).resolve()
        if not resolved.exists() or not resolved.is_relative_to(REPO_ROOT):
            broken.append(target)
    assert not broken, f"{page.name}: links to missing files or outside the repository: {broken}"


@pytest.mark.parametrize("page", doc_pages(), ids=lambda page: page.relative_to(REPO_ROOT).as_posix())
def test_pages_stand_alone(page: Path):
    text = page.read_text(encoding="utf-8")
    found = {what: pattern.findall(text) for what, pattern in FORBIDDEN.items()}
    assert not any(found.values()), f"{page.name} cites material outside the repository: {found}"


def test_parameters_page_is_current():
    # tests/conftest.py has pointed Airflow at dags/ and an isolated AIRFLOW_HOME already.
    assert load_renderer().is_current(), "docs/parameters.md is out of date: run scripts/render_param_docs.py"


def test_architecture_names_every_module():
    text = ARCHITECTURE.read_text(encoding="utf-8")
    missing = [name for name in module_files() if f"`{name}`" not in text]
    assert not missing, f"docs/architecture.md does not describe: {missing}"


def test_architecture_names_no_missing_module():
    text = ARCHITECTURE.read_text(encoding="utf-8")
    packages = "|".join(PACKAGE_DIRS.values())
    named = set(re.findall(rf"`((?:{packages})/[\w/]+\.py)`", text))
    gone = sorted(named - set(module_files()))
    assert not gone, f"docs/architecture.md describes modules that do not exist: {gone}"
