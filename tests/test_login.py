"""The interactive login (webex_tokens.login) against FakeWebex over real HTTP: what the
person is told, through notify only, and how pasted input is read."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from webex_tokens.errors import CallbackError
from webex_tokens.login import Notice, browser_login, read_line, stderr_notify
from webex_tokens.oauth import WebexOAuth
from webex_tokens.testing.fake_webex import FakeWebex


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def oauth(fake_webex: FakeWebex) -> WebexOAuth:
    uri = f"http://localhost:{free_port()}/oauth/webex/callback"
    fake_webex.add_redirect_uri(uri)
    return WebexOAuth(
        fake_webex.client_id,
        fake_webex.client_secret,
        redirect_uri=uri,
        base_url=fake_webex.base_url,
        timeout=5,
    )


def test_browser_route_tells_through_notify_only(
    oauth: WebexOAuth, fake_webex: FakeWebex, capfd: pytest.CaptureFixture[str]
) -> None:
    notices: list[Notice] = []
    token = oauth.login(open_browser=fake_webex.open_browser, timeout=10, notify=notices.append)
    assert token.account == fake_webex.user
    assert [n.kind for n in notices] == ["browser_opened"]
    [notice] = notices
    assert notice.url is not None and notice.url.startswith(fake_webex.authorize_url + "?")
    assert notice.url in notice.message and str(notice) == notice.message
    assert notice.redirect_uri == oauth.redirect_uri
    assert not notice.expects_paste
    assert capfd.readouterr() == ("", "")


def test_paste_route_tells_through_notify_only(
    oauth: WebexOAuth, fake_webex: FakeWebex, capfd: pytest.CaptureFixture[str]
) -> None:
    notices: list[Notice] = []
    questions: list[str] = []

    def paste(question: str) -> str:
        questions.append(question)
        if len(questions) == 1:
            return "not a url"
        [url] = [n.url for n in notices if n.kind == "open_url"]
        assert url is not None
        return fake_webex.approve(url)

    token = browser_login(oauth, open_browser=None, timeout=10, prompt=paste, notify=notices.append)
    assert token.account == fake_webex.user
    assert [n.kind for n in notices] == ["open_url", "paste_refused"]
    assert all(n.expects_paste for n in notices)
    assert "whole address" in notices[1].message
    assert questions == ["Redirect URL: ", "Redirect URL: "]
    assert capfd.readouterr() == ("", "")


def test_without_notify_the_notices_go_to_stderr_as_before(
    oauth: WebexOAuth, fake_webex: FakeWebex, capfd: pytest.CaptureFixture[str]
) -> None:
    oauth.login(open_browser=fake_webex.open_browser, timeout=10)
    out, err = capfd.readouterr()
    assert out == ""
    assert "Log in to Webex in the browser window that opened" in err
    assert fake_webex.authorize_url + "?" in err


def test_stderr_notify_shows_the_paste_prompt(capsys: pytest.CaptureFixture[str]) -> None:
    stderr_notify(Notice("browser_opened", "Log in there."))
    stderr_notify(Notice("open_url", "Open it, then paste."))
    assert capsys.readouterr() == ("", "Log in there.\nOpen it, then paste.\nRedirect URL: ")


def test_read_line_reads_standard_input_and_writes_nothing(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("http://localhost/cb?code=c&state=s\n"))
    assert read_line("Redirect URL: ") == "http://localhost/cb?code=c&state=s\n"
    with pytest.raises(EOFError):
        read_line("Redirect URL: ")
    monkeypatch.setattr(sys, "stdin", None)
    with pytest.raises(EOFError):
        read_line("Redirect URL: ")
    closed = io.StringIO()
    closed.close()
    monkeypatch.setattr(sys, "stdin", closed)
    with pytest.raises(EOFError):
        read_line("Redirect URL: ")
    assert capfd.readouterr() == ("", "")


def test_a_whole_login_in_a_fresh_process_writes_nothing(tmp_path: Path) -> None:
    """No logging configured, as in a script: with a notify, neither the login nor the
    library's log records reach stdout or stderr."""
    uri = f"http://localhost:{free_port()}/oauth/webex/callback"
    script = textwrap.dedent(
        f"""
        import json, pathlib
        from webex_tokens.oauth import WebexOAuth
        from webex_tokens.testing.fake_webex import FakeWebex
        notices = []
        with FakeWebex(redirect_uris=[{uri!r}]) as fake:
            oauth = WebexOAuth(fake.client_id, fake.client_secret, redirect_uri={uri!r},
                               base_url=fake.base_url)
            token = oauth.login(open_browser=fake.open_browser, timeout=10,
                                notify=notices.append)
        pathlib.Path("result.json").write_text(
            json.dumps([token.account, [n.kind for n in notices]]))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert (done.stdout, done.stderr) == ("", "")
    result = json.loads((tmp_path / "result.json").read_text())
    assert result == ["alice@example.com", ["browser_opened"]]


def test_a_pasted_redirect_url_is_delivered_in_process_not_over_http(
    oauth: WebexOAuth, fake_webex: FakeWebex, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.DEBUG, logger="webex_tokens.callback")
    notices: list[Notice] = []

    def paste(question: str) -> str:
        [url] = [n.url for n in notices if n.kind == "open_url"]
        assert url is not None
        return fake_webex.approve(url)

    token = oauth.login(open_browser=None, timeout=10, prompt=paste, notify=notices.append)
    assert token.account == fake_webex.user
    # The callback server logs every HTTP request it gets: none came.
    assert "callback GET" not in caplog.text


# -- nothing to read, junk, and the timeout (issue 16 #1) -----------------------------------


@pytest.fixture
def closed_stdin(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Standard input at its end, as under cron, systemd or `docker run` without -i."""
    import os

    read, write = os.pipe()
    os.close(write)
    with os.fdopen(read) as stream:
        monkeypatch.setattr(sys, "stdin", stream)
        yield
        monkeypatch.undo()


@pytest.mark.usefixtures("closed_stdin")
@pytest.mark.parametrize("opener", ["no-browser", "browser-fails"])
def test_nothing_to_read_fails_at_once_saying_what_to_do(
    oauth: WebexOAuth, fake_webex: FakeWebex, opener: str
) -> None:
    open_browser = None if opener == "no-browser" else (lambda url: False)
    started = time.monotonic()
    with pytest.raises(CallbackError) as caught:
        oauth.login(open_browser=open_browser, timeout=300, notify=lambda notice: None)
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert "nothing can be read from standard input" in message
    assert "run the login in a terminal" in message
    if opener == "no-browser":
        assert "without --no-browser" in message
    else:
        assert "--no-browser" not in message
    assert fake_webex.calls["access_token"] == 0


@pytest.mark.usefixtures("closed_stdin")
def test_nothing_to_read_with_a_remote_redirect_uri_fails_at_once(fake_webex: FakeWebex) -> None:
    remote = "https://app.example.com/oauth/webex/callback"
    oauth = WebexOAuth(fake_webex.client_id, fake_webex.client_secret, remote,
                       base_url=fake_webex.base_url)  # fmt: skip
    with pytest.raises(CallbackError, match="nothing can be read"):
        oauth.login(open_browser=None, timeout=300, notify=lambda notice: None)


def test_junk_is_refused_a_few_times_then_the_login_ends(oauth: WebexOAuth) -> None:
    notices: list[Notice] = []
    pasted: list[str] = []

    def junk(question: str) -> str:
        pasted.append("5e1d")
        return "5e1d"

    started = time.monotonic()
    with pytest.raises(CallbackError, match="5 pasted texts in a row") as caught:
        oauth.login(open_browser=None, timeout=300, prompt=junk, notify=notices.append)
    assert time.monotonic() - started < 5
    assert len(pasted) == 5
    refused = [n for n in notices if n.kind == "paste_refused"]
    assert len(refused) == 4 and "whole address" in refused[0].message
    assert "4 more tries" in refused[0].message and "1 more try" in refused[-1].message
    assert "--no-browser" not in str(caught.value)


def test_an_older_logins_url_is_refused_and_the_right_one_accepted(
    oauth: WebexOAuth, fake_webex: FakeWebex
) -> None:
    notices: list[Notice] = []
    older = oauth.authorization_request()
    stale = fake_webex.approve(older.url)
    answers = [stale]

    def paste(question: str) -> str:
        if answers:
            return answers.pop()
        [url] = [n.url for n in notices if n.kind == "open_url"]
        assert url is not None
        return fake_webex.approve(url)

    token = oauth.login(open_browser=None, timeout=10, prompt=paste, notify=notices.append)
    assert token.account == fake_webex.user
    [refusal] = [n for n in notices if n.kind == "paste_refused"]
    assert "does not belong to this login" in refusal.message


def test_timeout_after_a_browser_opened_names_the_likely_causes(oauth: WebexOAuth) -> None:
    port = urlsplit(oauth.redirect_uri).port
    with pytest.raises(CallbackError) as caught:
        oauth.login(open_browser=lambda url: True, timeout=0.3, notify=lambda notice: None)
    message = str(caught.value)
    assert "within 0.3 seconds" in message
    assert "browser did not open or was closed" in message
    assert "redirect_uri_mismatch" in message and "not registered exactly" in message
    assert "developer.webex.com" in message and "WEBEX_REDIRECT_URI" in message
    assert f"another program on port {port}" in message and "firewall" in message
    assert "--no-browser" in message  # a browser was used: the paste route is the way out


def test_timeout_with_no_browser_does_not_suggest_no_browser(oauth: WebexOAuth) -> None:
    never = threading.Event()

    def silent(question: str) -> str:
        never.wait(10)
        raise EOFError

    with pytest.raises(CallbackError) as caught:
        oauth.login(open_browser=None, timeout=0.3, prompt=silent, notify=lambda notice: None)
    never.set()
    message = str(caught.value)
    assert "was not pasted here" in message and "redirect_uri_mismatch" in message
    assert "--no-browser" not in message
