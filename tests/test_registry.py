from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from webex_tokens import (
    BackendUnavailable,
    ConfigError,
    InvalidStoreURL,
    StoreError,
    open_store,
)
from webex_tokens.backends.file import FileStore
from webex_tokens.backends.memory import MemoryStore
from webex_tokens.registry import (
    ENTRY_POINT_GROUP,
    backend_class,
    install_hint,
    is_store_url,
    known_schemes,
    registry,
)
from webex_tokens.store import redact_url
from webex_tokens.testing import make_token

# -- built-in schemes -----------------------------------------------------------------


def test_memory_url_opens_a_memory_store() -> None:
    store = open_store("memory://")
    assert isinstance(store, MemoryStore)
    assert store.url == "memory://"


def test_absolute_file_url(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "tokens.json"
    store = open_store(f"file://{path}")
    assert isinstance(store, FileStore)
    assert store.path == path
    assert store.url == f"file://{path}"
    store.put("alice", make_token())
    assert path.is_file()


def test_file_url_with_localhost(tmp_path: Path) -> None:
    store = open_store(f"file://localhost{tmp_path}/tokens.json")
    assert isinstance(store, FileStore) and store.path == tmp_path / "tokens.json"


def test_relative_file_url_is_taken_from_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("file:state/tokens.json")
    assert isinstance(store, FileStore)
    assert store.path == tmp_path / "state" / "tokens.json"
    store.put("alice", make_token())
    assert (tmp_path / "state" / "tokens.json").is_file()


def test_relative_file_url_stays_put_when_the_directory_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store("file:tokens.json")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    store.put("alice", make_token())
    assert (tmp_path / "tokens.json").is_file()
    assert not (tmp_path / "elsewhere" / "tokens.json").exists()


def test_home_file_url_is_under_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    store = open_store("file://~/.config/app/tokens.json")
    assert isinstance(store, FileStore)
    assert store.path == tmp_path / ".config" / "app" / "tokens.json"


def test_percent_escapes_in_file_url_are_decoded(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}/my%20tokens.json")
    assert isinstance(store, FileStore) and store.path == tmp_path / "my tokens.json"


def test_lock_timeout_option(tmp_path: Path) -> None:
    store = open_store(f"file://{tmp_path}/t.json?lock_timeout=2.5")
    assert isinstance(store, FileStore) and store.lock_timeout == 2.5


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file://example.com/tokens.json", "names a host; write file:///"),
        ("file:", "has no file name; write e.g. file:///"),
        ("file:///var/lib/app/", "has no file name"),
        ("file://~/", "has no file name"),
        ("file:///tmp/t.json?timeout=3", "option 'timeout'.*unknown.*options.* are lock_timeout"),
        ("file:///tmp/t.json?lock_timeout=soon", r"seconds; write e.g. \?lock_timeout=\d+"),
        ("file:///tmp/t.json?lock_timeout=", "lock_timeout.*number of seconds"),
        ("file:///tmp/t.json?lock_timeout=0", "lock_timeout.*positive"),
        ("file:///tmp/t.json?lock_timeout=-3", "lock_timeout.*positive"),
        ("file:///tmp/t.json?lock_timeout=nan", "lock_timeout.*positive"),
        ("file:///tmp/t.json?lock_timeout=inf", "lock_timeout.*positive"),
    ],
)
def test_bad_file_url_says_how_to_fix_it(url: str, message: str) -> None:
    with pytest.raises(InvalidStoreURL, match=message) as info:
        open_store(url)
    assert isinstance(info.value, ValueError) and isinstance(info.value, StoreError)


def test_bad_memory_url() -> None:
    with pytest.raises(InvalidStoreURL, match="write memory:// or memory://LABEL"):
        open_store("memory://label/path")


def test_unknown_scheme_lists_the_known_ones() -> None:
    with pytest.raises(InvalidStoreURL, match="unknown store scheme 'mongodb'") as info:
        open_store("mongodb://localhost:27017/tokens")
    message = str(info.value)
    for scheme in ("file", "keyring", "memory", "mysql", "postgresql", "sqlite", "fernet"):
        assert scheme in message


def test_unknown_scheme_message_hides_the_password() -> None:
    with pytest.raises(InvalidStoreURL) as info:
        open_store("mongodb://user:hunter2@localhost/tokens")
    assert "hunter2" not in str(info.value)
    assert "user:***@" in str(info.value)


@pytest.mark.parametrize("url", ["postgres://u@h/db", "postgres+psycopg2://u:pw@h/db"])
def test_postgres_scheme_suggests_postgresql(url: str) -> None:
    with pytest.raises(InvalidStoreURL, match=r"write postgresql\+psycopg://USER@HOST/DB") as info:
        open_store(url)
    assert ":pw@" not in str(info.value)


def test_web_address_is_not_a_store() -> None:
    with pytest.raises(InvalidStoreURL, match="not a web address"):
        open_store("https://webexapis.com/v1")


def test_target_without_scheme_is_a_store_name() -> None:
    assert is_store_url("file:x.json") and is_store_url("postgresql+psycopg://h/db")
    assert not is_store_url("production") and not is_store_url("")
    with pytest.raises(ConfigError, match=r"production.*not configured.*store URL"):
        open_store("production")


def test_no_target_uses_webex_tokens_store(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBEX_TOKENS_STORE", "memory://")
    assert isinstance(open_store(), MemoryStore)


def test_install_hint_and_registry_are_read_only() -> None:
    assert install_hint("keyring") == "pip install keyring"
    assert install_hint("postgresql+psycopg://u@h/db") == "pip install 'webex-tokens[postgres]'"
    assert install_hint("file") is None
    with pytest.raises(TypeError):
        registry["evil"] = registry["file"]  # type: ignore[index]
    assert "evil" not in known_schemes()


# -- third-party backends through real entry points -------------------------------------

FAKE_BACKEND = '''
"""A third-party backend, installed as a distribution with an entry point."""
from webex_tokens.backends.memory import MemoryStore


class FakeStore(MemoryStore):
    @classmethod
    def from_url(cls, url):
        store = cls()
        store.url = url
        return store
'''


def install_fake_distribution(
    site: Path, monkeypatch: pytest.MonkeyPatch, entry_points: str, modules: dict[str, str]
) -> None:
    """Lay out an installed distribution in ``site`` and put ``site`` on ``sys.path``."""
    for name, source in modules.items():
        (site / f"{name}.py").write_text(textwrap.dedent(source))
        monkeypatch.delitem(sys.modules, name, raising=False)
    info = site / "fakepkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakepkg\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{entry_points}\n")
    monkeypatch.syspath_prepend(str(site))


@pytest.fixture
def fake_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_fake_distribution(
        tmp_path,
        monkeypatch,
        "fakescheme = fakepkg_backend:FakeStore\n"
        "brokenscheme = fakepkg_broken:BrokenStore\n"
        "missingscheme = fakepkg_backend:NoSuchStore\n"
        "file = fakepkg_backend:FakeStore\n",
        {
            "fakepkg_backend": FAKE_BACKEND,
            "fakepkg_broken": "import fakepkg_dependency_that_is_not_installed\n",
        },
    )
    # Whatever happens in the test, the plugin modules must not leak into later tests.
    for name in ("fakepkg_backend", "fakepkg_broken"):
        monkeypatch.delitem(sys.modules, name, raising=False)


@pytest.mark.usefixtures("fake_plugins")
def test_plugin_backend_is_found_through_its_entry_point() -> None:
    assert "fakescheme" in known_schemes()
    store = open_store("fakescheme://somewhere")
    assert type(store).__name__ == "FakeStore"
    assert type(store).__module__ == "fakepkg_backend"
    assert store.url == "fakescheme://somewhere"
    store.put("alice", make_token())
    assert store.get("alice") == make_token()


@pytest.mark.usefixtures("fake_plugins")
def test_plugin_is_imported_only_when_its_scheme_is_used() -> None:
    sys.modules.pop("fakepkg_backend", None)
    open_store("memory://")
    known_schemes()
    assert "fakepkg_backend" not in sys.modules
    backend_class("fakescheme://x")
    assert "fakepkg_backend" in sys.modules


@pytest.mark.usefixtures("fake_plugins")
def test_plugin_cannot_replace_a_builtin_scheme(tmp_path: Path) -> None:
    assert isinstance(open_store(f"file://{tmp_path}/t.json"), FileStore)


@pytest.mark.usefixtures("fake_plugins")
def test_plugin_whose_module_fails_to_import() -> None:
    with pytest.raises(BackendUnavailable, match="brokenscheme") as info:
        open_store("brokenscheme://x")
    message = str(info.value)
    assert "fakepkg_broken:BrokenStore" in message
    assert "fakepkg_dependency_that_is_not_installed" in message
    assert "reinstall" in message


@pytest.mark.usefixtures("fake_plugins")
def test_plugin_naming_a_missing_class() -> None:
    with pytest.raises(BackendUnavailable, match=r"missingscheme.*reinstall"):
        open_store("missingscheme://x")


# -- built-in backends whose import fails -------------------------------------------------

BUILTIN_URLS = {
    "keyring": "keyring://",
    "fernet": "fernet+memory://",
    "sqlite": "sqlite:///tokens.db",
    "postgresql": "postgresql+psycopg://u:hunter2@h/db",
    "mysql": "mysql+pymysql://u@h/db",
    "mariadb": "mariadb+pymysql://u@h/db",
}


@pytest.mark.parametrize("scheme", sorted(BUILTIN_URLS))
def test_builtin_backend_that_cannot_be_imported_says_what_to_install(
    scheme: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = registry[scheme]
    assert spec.install is not None
    monkeypatch.setitem(sys.modules, spec.target.partition(":")[0], None)
    with pytest.raises(BackendUnavailable) as info:
        open_store(BUILTIN_URLS[scheme])
    message = str(info.value)
    assert message.endswith(f"run: {spec.install}")
    assert "hunter2" not in message


def test_every_builtin_scheme_names_an_importable_class() -> None:
    for scheme, spec in registry.items():
        module, _, name = spec.target.partition(":")
        assert module.startswith("webex_tokens.backends."), scheme
        cls = backend_class(f"{scheme}://x")
        assert cls.__name__ == name and callable(cls.from_url), scheme


# -- redact_url -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("postgresql+psycopg://app:s3cret@db.example.com:5432/tokens",
         "postgresql+psycopg://app:***@db.example.com:5432/tokens"),
        ("mysql+pymysql://root:p%40ss@127.0.0.1/test?charset=utf8mb4",
         "mysql+pymysql://root:***@127.0.0.1/test?charset=utf8mb4"),
        ("postgresql://:onlypass@h/db", "postgresql://:***@h/db"),
        ("redis://h/0?password=s3cret&db=1", "redis://h/0?password=***&db=1"),
        ("x://h/?token=s3cret&key=s3cret&secret=s3cret",
         "x://h/?token=***&key=***&secret=***"),
        ("postgresql://app@h/db", "postgresql://app@h/db"),
        ("file:///tmp/tokens.json", "file:///tmp/tokens.json"),
        ("memory://", "memory://"),
        ("sqlite:///tokens.db?key=s3cret", "sqlite:///tokens.db?key=***"),
        ("fernet+file:///t.json?secret=s3cret#frag", "fernet+file:///t.json?secret=***#frag"),
        ("memory://?password=s3cret", "memory://?password=***"),
        ("keyring://webex-tokens", "keyring://webex-tokens"),
    ],
)  # fmt: skip
def test_redact_url_hides_passwords(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_url_of_garbage_shows_nothing() -> None:
    assert redact_url("http://[::1:bad/x:pw@") == "<unparsable URL>"
