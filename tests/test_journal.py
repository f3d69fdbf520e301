"""The rescue journal: a token Webex answered is never lost to a failed store write.

Real stores (file, fernet+file, SQLite, Redis) and real HTTP against FakeWebex with
rotating refresh tokens and reuse detection: presenting a spent refresh token again
revokes the login, so every test also counts the refreshes and the revoked families.
"""

from __future__ import annotations

import json
import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from write_faults import WriteFails

from webex_tokens.backends.fernet import FernetStore, generate_key
from webex_tokens.backends.file import FileStore
from webex_tokens.errors import DecryptionError, StoreCorrupted, StoreUnavailable
from webex_tokens.journal import RescueJournal, default_journal, journal_directory, supersedes
from webex_tokens.keeper import Keeper
from webex_tokens.oauth import WebexOAuth
from webex_tokens.refresh import ensure_fresh
from webex_tokens.registry import open_url
from webex_tokens.store import BaseStore
from webex_tokens.testing import make_token
from webex_tokens.testing.fake_webex import FakeWebex
from webex_tokens.token import Token

NAME = "alice@example.com"


@pytest.fixture
def fake(fake_webex: FakeWebex) -> FakeWebex:
    fake_webex.rotate_refresh_tokens = True
    return fake_webex


@pytest.fixture
def oauth(fake: FakeWebex) -> WebexOAuth:
    return WebexOAuth(fake.client_id, fake.client_secret, base_url=fake.base_url, backoff=0)


def expired(fake: FakeWebex) -> Token:
    month_ago = datetime.now(timezone.utc) - timedelta(days=30)
    return Token.from_response(
        fake.issue_token(NAME), now=month_ago, client_id=fake.client_id, account=NAME
    )


def journal_files() -> list[Path]:
    directory = journal_directory()
    return sorted(directory.glob("*.json")) if directory.exists() else []


def refreshes(fake: FakeWebex) -> int:
    return fake.calls["refresh_token"]


def test_the_journal_lives_in_the_user_state_directory(tmp_path: Path) -> None:
    # conftest points XDG_STATE_HOME into the test's home.
    assert journal_directory().parts[-2:] == ("webex-tokens", "journal")
    assert str(journal_directory()).startswith(str(tmp_path.parent))
    assert default_journal().directory == journal_directory()


@pytest.mark.parametrize("encrypted", [False, True], ids=["file", "fernet+file"])
def test_a_refresh_whose_write_fails_waits_in_the_journal_then_the_next_operation_stores_it(
    fake: FakeWebex,
    oauth: WebexOAuth,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    encrypted: bool,
) -> None:
    monkeypatch.setenv("WEBEX_TOKENS_KEY", generate_key())
    url = f"{'fernet+' if encrypted else ''}file://{tmp_path}/tokens.json"
    with open_url(url) as real:
        real.put(NAME, expired(fake))
    inner = WriteFails(FileStore(tmp_path / "tokens.json"), failures=2)  # and the retry
    broken: BaseStore = FernetStore(inner) if encrypted else inner
    assert broken.url == url
    with pytest.raises(StoreUnavailable) as caught:
        ensure_fresh(broken, NAME, oauth)
    message = str(caught.value)
    assert "injected fault" in message and "not lost" in message
    assert "rescue journal" in message and f"webex-tokens refresh {NAME}" in message
    assert refreshes(fake) == 1 and inner.refused == 2

    (path,) = journal_files()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    document = json.loads(path.read_text())
    assert (document["account"], document["store"], document["reason"]) == (
        NAME,
        url,
        "refresh",
    )
    assert document["encrypted"] is encrypted
    text = path.read_text()

    # The next operation, through another keeper as another process would: the rescued
    # token is stored before anything else, so the spent refresh token is never sent.
    with Keeper(url, oauth=oauth) as keeper:
        token = keeper.current(NAME)
    assert not token.is_expired() and journal_files() == []
    assert token.refresh_token is not None
    assert (token.refresh_token in text) is not encrypted
    assert (token.access_token in text) is not encrypted
    with open_url(url) as real:
        assert real.get(NAME) == token
    assert refreshes(fake) == 1
    # The login is alive: its current refresh token refreshes it.
    with Keeper(url, oauth=oauth) as keeper:
        keeper.refresh(NAME)
    assert refreshes(fake) == 2 and fake.revoked_families == 0


def test_without_the_journal_the_same_fault_revokes_the_login(
    fake: FakeWebex, oauth: WebexOAuth, tmp_path: Path
) -> None:
    # What the journal prevents: the store keeps the spent refresh token, the next
    # refresh presents it, and reuse detection revokes the whole login.
    store = FileStore(tmp_path / "tokens.json")
    store.put(NAME, expired(fake))
    with pytest.raises(StoreUnavailable):
        ensure_fresh(WriteFails(store, failures=2), NAME, oauth)
    for path in journal_files():
        path.unlink()
    with pytest.raises(Exception, match="log in again"):
        ensure_fresh(store, NAME, oauth)
    assert fake.revoked_families == 1


def test_a_write_that_fails_once_is_stored_at_once_from_the_journal(
    fake: FakeWebex, oauth: WebexOAuth, tmp_path: Path
) -> None:
    store = FileStore(tmp_path / "tokens.json")
    store.put(NAME, expired(fake))
    flaky = WriteFails(store, failures=1)
    token = ensure_fresh(flaky, NAME, oauth)
    assert flaky.refused == 1 and store.get(NAME) == token and not token.is_expired()
    assert journal_files() == []
    assert refreshes(fake) == 1 and fake.revoked_families == 0


def test_a_refresh_whose_write_succeeds_leaves_nothing_in_the_journal(
    fake: FakeWebex, oauth: WebexOAuth, tmp_path: Path
) -> None:
    store = open_url(f"sqlite:///{tmp_path}/tokens.db")
    store.put(NAME, expired(fake))
    token = ensure_fresh(store, NAME, oauth)
    assert store.get(NAME) == token and journal_files() == []
    assert not journal_directory().exists() or not any(journal_directory().iterdir())
    store.close()


def test_a_replay_never_overwrites_a_newer_token(
    fake: FakeWebex, oauth: WebexOAuth, tmp_path: Path
) -> None:
    store = FileStore(tmp_path / "tokens.json")
    store.put(NAME, expired(fake))
    with pytest.raises(StoreUnavailable):
        ensure_fresh(WriteFails(store, failures=2), NAME, oauth)
    assert len(journal_files()) == 1
    newer = Token.from_response(fake.issue_token(NAME), client_id=fake.client_id, account=NAME)
    store.put(NAME, newer)  # a new login, stored after the refresh that failed
    with Keeper(store, oauth=oauth) as keeper:
        assert keeper.stored(NAME) == newer
    assert store.get(NAME) == newer and journal_files() == []


def test_a_token_already_stored_is_simply_removed_from_the_journal(tmp_path: Path) -> None:
    # The process died after the commit and before removing its journal file.
    store = FileStore(tmp_path / "tokens.json")
    old, new = make_token("old"), make_token("new")
    store.put(NAME, new)
    journal = RescueJournal()
    journal.keep(store, NAME, new, previous=old)
    assert journal.replay(store, NAME) is True
    assert journal_files() == [] and store.get(NAME) == new


def test_supersedes_follows_the_refresh_rules() -> None:
    old = make_token("old")
    new = make_token("new").replace(saved_at=old.saved_at + timedelta(seconds=1))
    from webex_tokens.journal import _fingerprint

    assert supersedes(new, _fingerprint(old), None)  # nothing stored
    assert supersedes(new, _fingerprint(old), old)  # still the token it was refreshed from
    assert not supersedes(new, _fingerprint(old), new)  # stored already
    later = make_token("later").replace(saved_at=new.saved_at + timedelta(seconds=1))
    assert not supersedes(new, _fingerprint(old), later)  # a newer token stands
    earlier = make_token("earlier").replace(saved_at=old.saved_at - timedelta(days=1))
    assert supersedes(new, None, earlier)  # a login waiting, an older token stored


def test_a_login_whose_write_fails_waits_in_the_journal(fake: FakeWebex, tmp_path: Path) -> None:
    store = FileStore(tmp_path / "tokens.json")
    login = Token.from_response(fake.issue_token(NAME), client_id=fake.client_id, account=NAME)
    with (
        Keeper(WriteFails(store, failures=1)) as keeper,
        pytest.raises(StoreUnavailable, match=r"not lost.*rescue journal"),
    ):
        keeper.save_login(login, name=NAME)
    (path,) = journal_files()
    assert json.loads(path.read_text())["reason"] == "login"
    with Keeper(store) as keeper:
        assert keeper.stored(NAME) == login
    assert journal_files() == []


def test_a_journal_file_that_cannot_be_read_stops_the_account_with_the_fix(
    tmp_path: Path,
) -> None:
    store = FileStore(tmp_path / "tokens.json")
    store.put(NAME, make_token("old"))
    entry = RescueJournal().keep(store, NAME, make_token("new"), previous=make_token("old"))
    assert entry is not None
    entry.path.write_text("{not json")
    with Keeper(store) as keeper, pytest.raises(StoreCorrupted) as caught:
        keeper.stored(NAME)
    assert str(entry.path) in str(caught.value) and "move it away" in str(caught.value)
    assert store.get(NAME) == make_token("old")


def test_an_encrypted_entry_needs_the_stores_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key, other = generate_key(), generate_key()
    path = tmp_path / "tokens.json"
    store = FernetStore(FileStore(path), keys=key)
    store.put(NAME, make_token("old"))
    entry = RescueJournal().keep(store, NAME, make_token("new"), previous=make_token("old"))
    assert entry is not None and entry.encrypted
    assert "access-new" not in entry.path.read_text()
    rotated = FernetStore(FileStore(path), keys=[other, key])  # rotation keeps it readable
    assert RescueJournal().replay(rotated, NAME)
    assert rotated.get(NAME) == make_token("new")
    entry = RescueJournal().keep(store, NAME, make_token("newer"), previous=make_token("new"))
    assert entry is not None
    with pytest.raises(DecryptionError, match=r"rescue journal file|key-check record"):
        RescueJournal().replay(FernetStore(FileStore(path), keys=other), NAME)


def test_a_store_that_lives_in_the_process_keeps_no_journal() -> None:
    store = open_url("memory://")
    assert RescueJournal().keep(store, NAME, make_token()) is None
    assert journal_files() == []


def test_a_journal_that_cannot_be_written_does_not_stop_the_store_write(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    store = FileStore(tmp_path / "tokens.json")
    RescueJournal(blocker / "journal").put(store, NAME, make_token())
    assert store.get(NAME) == make_token()
    assert "could not write the rescue journal" in caplog.text


def test_a_lost_redis_lease_leaves_the_refreshed_token_to_the_journal(
    fake: FakeWebex, oauth: WebexOAuth, redis_url: str
) -> None:
    import redis

    from webex_tokens.backends.redis import RedisStore
    from webex_tokens.testing.fake_webex import RequestRecord

    url = redis_url + ("&" if "?" in redis_url else "?") + "lock_timeout=0.3"
    store = RedisStore.from_url(url)
    store.put(NAME, expired(fake))
    prefix = store.prefix
    client = redis.Redis.from_url(redis_url.partition("?")[0])

    def take_over(record: RequestRecord) -> None:
        if record.grant_type == "refresh_token" and record.status == 200:
            # Webex has answered; before the answer arrives, the lease lapses and another
            # owner takes it (for longer than this process waits for it).
            client.set(f"{prefix}:lease:{NAME}", "other-host/1/abc", px=2_000)

    fake.on_request = take_over
    try:
        with pytest.raises(Exception, match=r"nothing was written.*not lost") as caught:
            ensure_fresh(store, NAME, oauth)
    finally:
        fake.on_request = None
    assert type(caught.value).__name__ in ("LockLost", "LockTimeout")
    assert len(journal_files()) == 1 and refreshes(fake) == 1
    client.delete(f"{prefix}:lease:{NAME}")  # the other owner is done
    with Keeper(store, oauth=oauth, owns_store=True) as keeper:
        token = keeper.current(NAME)
    assert not token.is_expired() and journal_files() == []
    assert refreshes(fake) == 1 and fake.revoked_families == 0
    client.close()


# -- doctor shows what waits ------------------------------------------------------------


def test_doctor_lists_what_waits_and_the_command_that_stores_it(
    fake: FakeWebex, oauth: WebexOAuth, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import shlex

    from click.testing import CliRunner

    from webex_tokens.cli import cli
    from webex_tokens.cli.schemas import problems

    url = f"file://{tmp_path}/tokens.json"
    store = FileStore(tmp_path / "tokens.json")
    store.put(NAME, expired(fake))
    with pytest.raises(StoreUnavailable):
        ensure_fresh(WriteFails(store, failures=2), NAME, oauth)
    (path,) = journal_files()
    secrets_in_it = json.loads(json.loads(path.read_text())["payload"])["token"]
    for variable, value in fake.environment().items():
        monkeypatch.setenv(variable, value)
    runner = CliRunner()

    result = runner.invoke(cli, ["--store", url, "doctor"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    section = lines[lines.index("rescue journal:") + 1 :]
    (waiting,) = [line for line in section if line.strip().startswith("warning")]
    assert f"the new token of {NAME!r} for {url} has waited" in waiting
    assert "(refresh, not encrypted" in waiting and path.name in waiting
    command = f"webex-tokens --store {shlex.quote(url)} refresh {NAME}"
    assert waiting.endswith(f"any operation on the account stores it, or now: {command}")
    for secret in (secrets_in_it["access_token"], secrets_in_it["refresh_token"]):
        assert secret not in result.output

    report = runner.invoke(cli, ["--store", url, "doctor", "--json"], catch_exceptions=False)
    document = json.loads(report.stdout)
    assert problems(document, "doctor") == []
    journal = document["journal"]
    assert journal["directory"] == str(journal_directory())
    (entry,) = journal["waiting"]
    assert (entry["account"], entry["store_url"], entry["reason"]) == (NAME, url, "refresh")
    assert entry["encrypted"] is False and 0 <= entry["age"] < 60
    assert secrets_in_it["refresh_token"] not in report.stdout

    # The command doctor printed stores the waiting token, then refreshes it normally.
    done = runner.invoke(cli, shlex.split(command)[1:], catch_exceptions=False)
    assert done.exit_code == 0, done.output
    assert journal_files() == [] and refreshes(fake) == 2 and fake.revoked_families == 0
    after = runner.invoke(cli, ["--store", url, "doctor"], catch_exceptions=False)
    assert f"nothing waits in {journal_directory()}" in after.output


def test_doctor_reports_an_unreadable_journal_file_as_a_problem(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from webex_tokens.cli import cli

    store = FileStore(tmp_path / "tokens.json")
    entry = RescueJournal().keep(store, NAME, make_token("new"))
    assert entry is not None
    entry.path.write_text("[]")
    result = CliRunner().invoke(cli, ["--store", store.url, "doctor"], catch_exceptions=False)
    assert result.exit_code == 1
    assert f"the rescue journal file {entry.path} cannot be read" in result.output
