"""The public API: every name in __all__ resolves, the list is sorted, and nothing leaks."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

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


# -- every public name of every module is documented ---------------------------------------


def _modules() -> list[ModuleType]:
    found = [webex_tokens]
    for info in pkgutil.walk_packages(webex_tokens.__path__, "webex_tokens."):
        if not info.name.endswith("__main__"):
            found.append(importlib.import_module(info.name))
    return found


def _own_members(cls: type) -> Iterator[tuple[str, Any]]:
    """The public methods and properties ``cls`` itself defines (not inherited ones)."""
    for attribute, value in vars(cls).items():
        if attribute.startswith("_") or attribute.startswith("test_"):
            continue  # private, or a test of the shared conformance suite
        if isinstance(value, property):
            yield attribute, value.fget
        elif isinstance(value, (classmethod, staticmethod)):
            yield attribute, value.__func__
        elif inspect.isfunction(value):
            yield attribute, value


def test_every_module_has_a_docstring() -> None:
    for module in _modules():
        assert (module.__doc__ or "").strip(), f"{module.__name__} has no docstring"


def test_every_public_name_of_every_module_is_documented() -> None:
    undocumented = []
    for module in _modules():
        for name in getattr(module, "__all__", []):
            value = getattr(module, name)
            if not (inspect.isclass(value) or inspect.isfunction(value)):
                continue
            if not (value.__doc__ or "").strip():
                undocumented.append(f"{module.__name__}.{name}")
            if inspect.isclass(value) and value.__module__.startswith("webex_tokens"):
                for attribute, member in _own_members(value):
                    if not (getattr(member, "__doc__", None) or "").strip():
                        undocumented.append(f"{module.__name__}.{name}.{attribute}")
    assert undocumented == []


def test_package_exports_every_public_object_it_holds() -> None:
    """A class or function bound in the package namespace is listed in ``__all__``."""
    for name, value in vars(webex_tokens).items():
        if name.startswith("_") or isinstance(value, ModuleType):
            continue
        if (inspect.isclass(value) or inspect.isfunction(value)) and value.__module__.startswith(
            "webex_tokens"
        ):
            assert name in webex_tokens.__all__, name


def test_every_error_and_builtin_backend_is_exported() -> None:
    from webex_tokens import errors
    from webex_tokens.registry import registry

    assert set(errors.__all__) <= set(webex_tokens.__all__)
    for spec in registry.values():
        class_name = spec.target.rsplit(":", 1)[1]
        assert class_name in webex_tokens.__all__, class_name


def test_lazy_functions_survive_the_import_of_every_submodule() -> None:
    """A public function must not share its name with a submodule: importing the
    submodule would rebind the package attribute to the module."""
    code = (
        "import importlib, inspect, pkgutil, webex_tokens\n"
        "for info in pkgutil.walk_packages(webex_tokens.__path__, 'webex_tokens.'):\n"
        "    if '.web.' not in info.name and not info.name.endswith('__main__'):\n"
        "        importlib.import_module(info.name)\n"
        "bad = [n for n in webex_tokens.__all__ if inspect.ismodule(getattr(webex_tokens, n))]\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


@pytest.mark.parametrize(
    "name",
    [
        "atomic_write",
        "fsync_directory",
        "glob_escape",
        "json_loads_strict",
        "read_private_file",
        "remove_stale_temp_files",
    ],
)
def test_file_helpers_moved_from_store_still_import_with_a_warning(name: str) -> None:
    import webex_tokens.store
    from webex_tokens.backends import files

    with pytest.warns(DeprecationWarning, match=f"webex_tokens.backends.files.{name}"):
        moved = getattr(webex_tokens.store, name)
    assert moved is getattr(files, name)
    with pytest.raises(AttributeError):
        webex_tokens.store.no_such_helper  # noqa: B018
