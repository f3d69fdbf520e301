"""The public API: every name in __all__ resolves, the list is sorted, and nothing leaks."""

from __future__ import annotations

import subprocess
import sys

import pytest

import webex_tokens


def test_all_is_sorted_and_unique() -> None:
    assert webex_tokens.__all__ == sorted(set(webex_tokens.__all__))


def test_every_public_name_resolves() -> None:
    for name in webex_tokens.__all__:
        assert getattr(webex_tokens, name) is not None, name


def test_every_public_class_and_function_is_exported_and_documented() -> None:
    for name in webex_tokens.__all__:
        value = getattr(webex_tokens, name)
        if callable(value):
            assert (value.__doc__ or "").strip(), f"{name} has no docstring"


def test_lazy_names_are_in_all() -> None:
    lazy = set(webex_tokens._LAZY)
    assert lazy <= set(webex_tokens.__all__)
    assert set(dir(webex_tokens)) >= set(webex_tokens.__all__)


def test_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_name"):
        webex_tokens.no_such_name  # noqa: B018 - the access is the test


def test_import_stays_light() -> None:
    """Importing the package must not pull in the OAuth, SQL or keyring stacks."""
    code = (
        "import sys, webex_tokens; "
        "heavy = [m for m in ('sqlalchemy', 'authlib', 'keyring', 'cryptography', 'rich') "
        "if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
