"""The package as users get it: a wheel and an sdist that build, install and run alone.

The slow tests build both distributions with ``python -m build`` (the wheel from the
sdist, so the sdist must be complete), install the wheel into a fresh virtual
environment with nothing else in it (its dependencies come from the package index, so a
missing dependency fails here), and run the command from there.
"""

from __future__ import annotations

import email
import os
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

import pytest

import webex_tokens
from webex_tokens.registry import ENTRY_POINT_GROUP, registry

ROOT = Path(__file__).resolve().parent.parent


# -- the installed (editable) package ----------------------------------------------------


def test_builtin_backends_are_registered_as_entry_points_too() -> None:
    """The entry points repeat the registry's built-in table exactly."""
    registered = {
        ep.name: ep.value
        for ep in entry_points(group=ENTRY_POINT_GROUP)
        if ep.dist is not None and ep.dist.name == "webex-tokens"
    }
    assert registered == {scheme: spec.target for scheme, spec in registry.items()}


def test_builtin_entry_points_load_the_registry_classes() -> None:
    from webex_tokens.registry import backend_class

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.dist is not None and ep.dist.name == "webex-tokens":
            assert ep.load() is backend_class(f"{ep.name}://"), ep.name


def test_python_dash_m_runs_the_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "webex_tokens", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"webex-tokens, version {webex_tokens.__version__}"


# -- built distributions -----------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    wheel: Path
    sdist: Path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,) = out.glob("webex_tokens-*.whl")
    (sdist,) = out.glob("webex_tokens-*.tar.gz")
    return Built(wheel, sdist)


@pytest.mark.slow
def test_wheel_holds_the_package_typed_and_no_tests(built: Built) -> None:
    with zipfile.ZipFile(built.wheel) as wheel:
        names = wheel.namelist()
        dist_info = next(n.split("/")[0] for n in names if ".dist-info/" in n)
        metadata = email.message_from_bytes(wheel.read(f"{dist_info}/METADATA"))
        entry_points_txt = wheel.read(f"{dist_info}/entry_points.txt").decode()
    assert "webex_tokens/py.typed" in names
    assert "webex_tokens/testing/conformance.py" in names
    assert not [n for n in names if n.startswith(("tests/", "docs/", "benchmarks/"))]
    assert not [n for n in names if "/test_" in n or n.endswith((".pyc", ".orig"))]
    assert f"{dist_info}/licenses/LICENSE" in names

    assert metadata["Name"] == "webex-tokens"
    assert metadata["Version"] == webex_tokens.__version__
    assert metadata["License-Expression"] == "MIT"
    assert metadata["Requires-Python"] == ">=3.10"
    urls = {url.split(", ", 1)[0] for url in metadata.get_all("Project-URL") or []}
    assert {"Homepage", "Documentation", "Repository", "Issues", "Changelog"} <= urls
    assert "Typing :: Typed" in (metadata.get_all("Classifier") or [])
    assert "webex" in metadata["Keywords"]
    assert "webex-tokens = webex_tokens.cli:main" in entry_points_txt
    assert "webex_tokens = webex_tokens.testing.plugin" in entry_points_txt
    assert f"[{ENTRY_POINT_GROUP}]" in entry_points_txt


@pytest.mark.slow
def test_sdist_holds_what_a_contributor_needs(built: Built) -> None:
    with tarfile.open(built.sdist) as sdist:
        names = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    for needed in (
        "pyproject.toml",
        "README.md",
        "CHANGELOG.md",
        "CONTRIBUTING.md",
        "LICENSE",
        "mkdocs.yml",
        "docs/index.md",
        "tests/conftest.py",
        "webex_tokens/py.typed",
    ):
        assert needed in names, needed


@pytest.fixture(scope="module")
def fresh_venv(built: Built, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtual environment holding only the wheel and its dependencies."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    # This environment's pip installs into the new one (`pip --python`), which saves
    # bootstrapping pip there; dependencies still come from the index, not from here.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--quiet",
            "--disable-pip-version-check",
            str(built.wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return venv


def _run_in(venv: Path, home: Path, *command: str) -> subprocess.CompletedProcess[str]:
    """Run ``command`` from the venv's bin directory with a clean, private environment."""
    home.mkdir(exist_ok=True)
    env = {
        "PATH": f"{venv / 'bin'}{os.pathsep}/usr/bin:/bin",
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "config"),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CACHE_HOME": str(home / "cache"),
        "TMPDIR": str(home),
        "LANG": "C.UTF-8",
    }
    executable = venv / "bin" / command[0]
    return subprocess.run(
        [str(executable), *command[1:]],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.slow
def test_installed_wheel_runs_alone(fresh_venv: Path, tmp_path: Path) -> None:
    where = _run_in(
        fresh_venv, tmp_path, "python", "-c", "import webex_tokens; print(webex_tokens.__file__)"
    )
    assert where.returncode == 0, where.stderr
    assert where.stdout.strip().startswith(str(fresh_venv)), where.stdout
    assert not where.stdout.strip().startswith(str(ROOT))

    for command in (("webex-tokens", "--version"), ("python", "-m", "webex_tokens", "--version")):
        result = _run_in(fresh_venv, tmp_path, *command)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"webex-tokens, version {webex_tokens.__version__}"

    # Every module the core install promises imports without an extra.
    modules = _run_in(
        fresh_venv,
        tmp_path,
        "python",
        "-c",
        "import webex_tokens.backends.fernet, webex_tokens.backends.keyring, "
        "webex_tokens.backends.sql, webex_tokens.client, webex_tokens.migration, "
        "webex_tokens.callback, webex_tokens.testing.fake_webex",
    )
    assert modules.returncode == 0, modules.stderr


@pytest.mark.slow
def test_installed_wheel_runs_the_demo(fresh_venv: Path, tmp_path: Path) -> None:
    result = _run_in(fresh_venv, tmp_path, "webex-tokens", "demo")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Demo done" in result.stdout and "webex-tokens login --device" in result.stdout
    # The demo ran in a temporary store: the default store was not even created.
    assert not (tmp_path / "data" / "webex-tokens" / "tokens.db").exists()
