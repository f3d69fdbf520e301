"""The documentation site builds strictly, offline, and covers what the code has.

``mkdocs build --strict`` fails on any warning: a broken link or anchor, a page missing
from the navigation, an API reference entry that does not resolve, or a CLI command
without its reference section (the docs hook generates each command's help from the
click command itself, so the reference cannot drift from the code).
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import webex_tokens
from webex_tokens import errors, settings
from webex_tokens.cli import cli

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Build the site once for this module; the build must not warn or reach the network."""
    out = tmp_path_factory.mktemp("site")
    env = {
        **os.environ,
        # Any attempt to fetch something (web fonts, remote images) fails at once.
        "HTTP_PROXY": "http://127.0.0.1:9",
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "NO_PROXY": "",
        "NO_MKDOCS_2_WARNING": "1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNING" not in output, output
    return out


def _page(site: Path, page: str) -> str:
    return (site / page / "index.html").read_text(encoding="utf-8")


def test_site_has_every_page_of_the_navigation(site: Path) -> None:
    for page in (
        "getting-started",
        "concepts",
        "configuration",
        "backends/memory",
        "backends/file",
        "backends/fernet",
        "backends/keyring",
        "backends/sql",
        "backends/writing-a-backend",
        "accounts-and-environments",
        "migration",
        "cli",
        "api",
        "async",
        "web-apps",
        "security",
        "performance",
        "troubleshooting",
        "faq",
        "changelog",
    ):
        assert (site / page / "index.html").is_file(), page
    assert (site / "index.html").is_file()


def test_site_loads_nothing_from_other_hosts(site: Path) -> None:
    for html in site.rglob("*.html"):
        text = html.read_text(encoding="utf-8")
        assert "fonts.googleapis.com" not in text, html
        assert "fonts.gstatic.com" not in text, html


def test_cli_reference_is_generated_from_every_command(site: Path) -> None:
    page = _page(site, "cli")
    assert "Usage: webex-tokens [OPTIONS] COMMAND [ARGS]" in page
    for name, command in cli.commands.items():
        assert f"Usage: webex-tokens {name} " in page, name
        for param in command.params:
            for option in param.opts:
                if option.startswith("-"):
                    assert option in page, f"{name} {option}"


def test_api_reference_documents_every_public_name(site: Path) -> None:
    index = _page(site, "api")
    for name in webex_tokens.__all__:
        assert f"<code>{name}</code>" in index, name
    # Each row links into a reference page (autorefs fails the strict build otherwise).
    assert 'href="stores/#webex_tokens.token.Token"' in index


def test_changelog_page_holds_the_changelog(site: Path) -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    release = re.search(r"^## \[(?P<version>\d[^\]]*)\] - \d{4}-\d\d-\d\d$", changelog, re.M)
    assert release is not None, "CHANGELOG.md has no released version"
    assert f"{release.group('version')}</a> - " in _page(site, "changelog")


# -- coverage of the reference pages, read from the code --------------------------------


def _headings(page: str) -> str:
    return "\n".join(
        line for line in (DOCS / page).read_text(encoding="utf-8").splitlines() if line[:1] == "#"
    )


def test_troubleshooting_covers_every_error_class() -> None:
    headings = _headings("troubleshooting.md")
    for name in errors.__all__:
        assert f"### `{name}`" in headings, name


LEGACY_GUIDE_ERRORS = [
    "redirect_uri_mismatch",
    "TypeError: a bytes-like object is required, not 'str'",
    "Using direct access token (no refresh support)",
    "Browser doesn't open",
    "Insufficient parameters for OAuth2 callback",
    "Connection refused",
    "Failed to exchange code for token",
]


@pytest.mark.parametrize("error", LEGACY_GUIDE_ERRORS)
def test_troubleshooting_covers_every_error_of_the_legacy_guide(error: str) -> None:
    assert error in _headings("troubleshooting.md")


def _environment_variables() -> set[str]:
    """Every ``WEBEX_*`` variable name the package reads (string constants in its code)."""
    found: set[str] = set()
    for path in (ROOT / "webex_tokens").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and re.fullmatch(r"WEBEX_[A-Z_]+", node.value)
            ):
                found.add(node.value)
    return found


def test_configuration_reference_lists_every_variable() -> None:
    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    variables = _environment_variables()
    assert {"WEBEX_CLIENT_ID", "WEBEX_TOKENS_STORE", "WEBEX_TOKENS_KEY"} <= variables
    for variable in sorted(variables):
        assert f"`{variable}`" in page, variable


def test_configuration_reference_lists_every_settings_key() -> None:
    page = (DOCS / "configuration.md").read_text(encoding="utf-8")
    keys = (
        *settings._TOP_KEYS,
        *settings._STORE_KEYS,
        *settings._INTEGRATION_KEYS,
        *settings._NAMED_INTEGRATION_KEYS,
    )
    for key in keys:
        assert f"| `{key}` |" in page, key


@pytest.mark.parametrize("backend", ["memory", "file", "fernet", "keyring", "sql"])
def test_every_backend_page_answers_the_same_questions(backend: str) -> None:
    headings = _headings(f"backends/{backend}.md")
    for section in ("## When to choose it", "## URL forms", "## Security properties", "## Limits"):
        assert section in headings, f"{backend}: {section}"
