"""StrictModes for token, lock and SQLite files, OS errors with a fix, read-only opening."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from webex_tokens.backends.file import FileStore
from webex_tokens.cli import cli
from webex_tokens.errors import StoreError, StoreNotFound
from webex_tokens.registry import open_url
from webex_tokens.testing import make_token

OTHER_UID = 54321
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


@as_root
def test_a_token_file_of_another_user_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    FileStore(path).put("alice", make_token())
    os.chown(path, OTHER_UID, -1)
    with pytest.raises(StoreError, match=r"belongs to uid 54321, not to root.*chown root"):
        FileStore(path)


@as_root
def test_a_lock_file_of_another_user_is_refused(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "tokens.json")
    store.put("alice", make_token())
    os.chown(store.lock_path, OTHER_UID, -1)
    with pytest.raises(StoreError, match=r"refusing to use the lock file .*belongs to uid 54321"):
        store.put("bob", make_token())


def test_a_directory_others_can_write_is_refused_unless_sticky(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(StoreError, match=r"other users can write to the directory .*chmod go-w"):
        FileStore(shared / "tokens.json")
    with pytest.raises(StoreError, match="other users can write"):
        open_url(f"sqlite:///{shared}/t.db")
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)
    FileStore(sticky / "tokens.json").put("alice", make_token())


def test_sqlite_refuses_a_symlink_and_keeps_its_file_0600(tmp_path: Path) -> None:
    real = tmp_path / "real.db"
    open_url(f"sqlite:///{real}").close()
    (tmp_path / "link.db").symlink_to(real)
    with pytest.raises(StoreError, match="it is a symlink"):
        open_url(f"sqlite:///{tmp_path}/link.db")
    real.chmod(0o644)
    open_url(f"sqlite:///{real}").close()
    assert real.stat().st_mode & 0o777 == 0o600


def test_a_lock_directory_that_cannot_be_created_says_how_to_fix_it(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "tokens.json")
    (tmp_path / "tokens.json.locks").write_text("not a directory")
    with pytest.raises(StoreError, match=r"cannot open the lock file .*fix the path"):
        store.put("alice", make_token())


@pytest.mark.parametrize(
    "url",
    [
        "file://{d}/typo/tokens.json",
        "fernet+file://{d}/typo/tokens.json",
        "sqlite:///{d}/typo/t.db",
    ],
)
def test_read_only_commands_create_nothing(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBEX_TOKENS_KEY", "x" * 43 + "=")
    store = url.format(d=tmp_path)
    with pytest.raises(StoreNotFound, match="nothing was created"):
        open_url(store.replace("fernet+", ""), create=False)
    runner = CliRunner()
    listed = runner.invoke(cli, ["--store", store, "list"])
    assert listed.exit_code == 0 and "does not exist" not in listed.stdout
    assert "no tokens stored: there is no" in listed.stderr
    for args in (["show", "alice"], ["token", "alice"]):
        result = runner.invoke(cli, ["--store", store, *args])
        assert result.exit_code == 1 and "nothing was created" in result.stderr
    assert runner.invoke(cli, ["--store", store, "doctor"]).exit_code in (0, 1)
    runner.invoke(cli, ["--store", store, "stores"])
    assert list(tmp_path.iterdir()) == []  # no directory, no database, no table, no key file
