"""README and docs/: every relative link and anchor resolves; the configuration reference is
the code's (regenerated and compared); the README stays a front door."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[`*_]", "", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    found: set[str] = set()
    in_code = False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and (m := re.match(r"^#{1,6} (.*)$", line)):
            found.add(slug(m.group(1)))
    return found


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_and_anchor_resolves(page):
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.DOTALL)
    broken = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z]+://|^mailto:", target):
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists() or (anchor and file.suffix == ".md" and anchor not in anchors(file)):
            broken.append(target)
    assert not broken, f"{page.name}: {broken}"


def test_slugs_follow_github():
    assert slug("Speaker adaptation, and which sessions the numbers are for") == (
        "speaker-adaptation-and-which-sessions-the-numbers-are-for"
    )
    assert slug("`default`") == "default" and slug("[serve]") == "serve"


def test_configuration_reference_matches_the_code():
    check = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "config_reference.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr


def test_readme_is_a_front_door():
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    for page in ("usage", "configuration", "output", "serving", "model", "training", "api"):
        assert f"docs/{page}.md" in readme, page


def test_model_cards_match_their_manifests():
    bundles = [str(REPO / "models" / name) for name in ("default", "small")]
    check = subprocess.run(
        [sys.executable, "-m", "ser_train.model_card", *bundles, "--check"],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    assert check.returncode == 0, check.stderr
    card = (REPO / "models" / "default" / "README.md").read_text()
    for section in ("Intended use", "Out of scope", "Data and licences", "Results", "Calibration"):
        assert f"## {section}" in card
    assert "By kind of session" in card and "held" in card
