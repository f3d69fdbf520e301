"""The terminal pictures of the docs show what the commands print today.

``scripts/pictures.py`` runs ``demo``, ``list``, ``refresh --all`` and ``doctor`` on a
pseudo-terminal and draws their output as SVG; here it draws them again and compares
with docs/images/ byte for byte. And the code blocks of the docs fit a 1280 px window.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
CSS = ROOT / "docs" / "stylesheets" / "extra.css"


def load_pictures() -> ModuleType:
    spec = importlib.util.spec_from_file_location("pictures", ROOT / "scripts" / "pictures.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["pictures"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pictures() -> ModuleType:
    return load_pictures()


@pytest.fixture(scope="module")
def drawn(pictures: ModuleType) -> dict[str, str]:
    result: dict[str, str] = pictures.draw()
    return result


def test_the_pictures_in_the_docs_are_up_to_date(
    pictures: ModuleType, drawn: dict[str, str]
) -> None:
    stale = [
        name
        for name, text in drawn.items()
        if not (pictures.IMAGES / name).exists() or (pictures.IMAGES / name).read_text() != text
    ]
    assert not stale, (
        f"docs/images/{', '.join(stale)} no longer show what the commands print: "
        "run python scripts/pictures.py (and look at the new pictures before committing)"
    )


def test_the_check_reports_a_stale_picture(
    pictures: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("demo", "list", "refresh-all", "doctor"):
        (tmp_path / f"{name}.svg").write_text((pictures.IMAGES / f"{name}.svg").read_text())
    (tmp_path / "list.svg").write_text("<svg/>")
    monkeypatch.setattr(pictures, "IMAGES", tmp_path)
    said: list[str] = []
    assert pictures.main(["--check"], write=said.append) == 1
    assert said == ["docs/images/list.svg is out of date: run python scripts/pictures.py"]


def test_nothing_that_varies_between_runs_is_drawn(drawn: dict[str, str]) -> None:
    everything = "\n".join(drawn.values())
    assert "/tmp/wt" not in everything
    shown_links = ("https://www.textualize.io", "https://developer.webex.com/my-apps")
    for link in shown_links:  # rich's credit, and the demo's next step
        everything = everything.replace(link, "")
    assert "cdnjs" not in everything and "https://" not in everything
    listed = drawn["list.svg"]
    for word in ("alice@example.com", "log&#160;in&#160;again", "expired", "due"):
        assert word in listed, word


def test_every_picture_is_shown_in_the_docs(drawn: dict[str, str]) -> None:
    pages = "\n".join(path.read_text() for path in (ROOT / "docs").rglob("*.md"))
    for name in drawn:
        assert f"](images/{name})" in pages, name


def test_code_blocks_fit_a_1280_pixel_window() -> None:
    """At 1280 px the content column leaves about 664 px for a code block's text (the
    Material theme: a 61 rem grid of 20 px rems, two 12.1 rem sidebars, the content's
    margins and the block's padding); the stylesheet's code size must fit the widest
    block the docs generate, the CLI help, and longer lines must wrap, not be cut off."""
    sys.path.insert(0, str(ROOT / "docs" / "_hooks"))
    try:
        import generate
    finally:
        sys.path.remove(str(ROOT / "docs" / "_hooks"))
    css = CSS.read_text()
    rule = re.search(r"\.md-typeset pre > code \{(?P<body>[^}]*)\}", css)
    assert rule is not None
    size = re.search(r"font-size:\s*([\d.]+)em", rule["body"])
    assert size is not None
    column_px = 0.6 * float(size[1]) * 16
    assert 88 * column_px <= 664
    assert generate._WIDTH <= 88
    assert "white-space: pre-wrap" in rule["body"]
    assert "stylesheets/extra.css" in (ROOT / "mkdocs.yml").read_text()
