"""The loopback callback server, its request handler and parse_callback_url, over real HTTP."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import ipaddress
import logging
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlencode

import pytest
import requests

from webex_tokens.callback import (
    PAGE_HEADERS,
    CallbackResult,
    CallbackServer,
    handle_callback_query,
    parse_callback_url,
)
from webex_tokens.errors import AuthorizationDenied, CallbackError, OAuthError
from webex_tokens.testing.fake_webex import FakeWebex

STATE = "expected-state-" + "x" * 20
PATH = "/oauth/webex/callback"


@pytest.fixture
def server() -> Iterator[CallbackServer]:
    with CallbackServer(f"http://localhost:0{PATH}", STATE, timeout=5) as callback:
        yield callback


def url_of(server: CallbackServer, query: dict[str, str] | str = "", path: str = PATH) -> str:
    text = query if isinstance(query, str) else urlencode(query)
    return f"http://127.0.0.1:{server.port}{path}" + (f"?{text}" if text else "")


def get(url: str) -> requests.Response:
    return requests.get(url, allow_redirects=False, timeout=5)


def wait_in_thread(server: CallbackServer) -> tuple[threading.Thread, list[object]]:
    """Run server.wait() in a thread; the list gets its result or exception."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(server.wait())
        except OAuthError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


def assert_page(response: requests.Response, status: int) -> None:
    assert response.status_code == status
    assert not 300 <= response.status_code < 400
    assert "Location" not in response.headers
    for name, value in PAGE_HEADERS:
        assert response.headers[name] == value
    assert response.content.startswith(b"<!doctype html>")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def non_loopback_address() -> str | None:
    """An IPv4 address of this machine that is not loopback, if it has one."""
    candidates: list[str] = []
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.connect(("192.0.2.1", 9))  # TEST-NET-1: no packet is sent by a UDP connect
        candidates.append(udp.getsockname()[0])
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        candidates += subprocess.run(
            ["hostname", "-I"], capture_output=True, text=True, timeout=5, check=False
        ).stdout.split()
    for address in candidates:
        if ":" not in address and not address.startswith(("127.", "0.")):
            return address
    return None


# -- a full run with the emulator -----------------------------------------------------


def test_full_browser_run_with_fake_webex(fake_webex: FakeWebex) -> None:
    state = secrets.token_urlsafe(24)
    verifier = secrets.token_urlsafe(48)
    challenge = (
        base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    )
    with CallbackServer(f"http://localhost:0{PATH}", state, timeout=10) as callback:
        assert callback.redirect_uri == f"http://localhost:{callback.port}{PATH}"
        fake_webex.add_redirect_uri(callback.redirect_uri)
        authorize = (
            fake_webex.authorize_url
            + "?"
            + urlencode(
                {
                    "client_id": fake_webex.client_id,
                    "response_type": "code",
                    "redirect_uri": callback.redirect_uri,
                    "scope": "spark:all",
                    "state": state,
                    "code_challenge": challenge,
                    "code_challenge_method": "S256",
                }
            )
        )
        assert fake_webex.open_browser(authorize) is True
        result = callback.wait()
    assert fake_webex.last_callback_status == 200
    assert "sign-in complete" in (fake_webex.last_callback_page or "")
    assert result.state == state
    assert result.code not in (fake_webex.last_callback_page or "")
    assert result.code not in repr(result)
    # The code really is the emulator's: it exchanges for a token.
    response = requests.post(
        fake_webex.token_url,
        data={
            "grant_type": "authorization_code",
            "code": result.code,
            "redirect_uri": callback.redirect_uri,
            "code_verifier": verifier,
            "client_id": fake_webex.client_id,
            "client_secret": fake_webex.client_secret,
        },
        timeout=10,
    )
    assert response.status_code == 200
    with pytest.raises(requests.ConnectionError):
        get(url_of(callback, {"code": "again", "state": state}))  # stopped after success


def test_denied_in_the_browser_raises_authorization_denied(fake_webex: FakeWebex) -> None:
    fake_webex.deny_next_authorization()
    with CallbackServer(f"http://localhost:0{PATH}", STATE, timeout=10) as callback:
        fake_webex.add_redirect_uri(callback.redirect_uri)
        authorize = (
            fake_webex.authorize_url
            + "?"
            + urlencode(
                {
                    "client_id": fake_webex.client_id,
                    "response_type": "code",
                    "redirect_uri": callback.redirect_uri,
                    "scope": "spark:all",
                    "state": STATE,
                    "code_challenge": "A" * 43,
                    "code_challenge_method": "S256",
                }
            )
        )
        fake_webex.open_browser(authorize)
        with pytest.raises(AuthorizationDenied, match="run the login again"):
            callback.wait()
    assert fake_webex.last_callback_status == 400
    assert "declined" in (fake_webex.last_callback_page or "").lower()


# -- the served page ------------------------------------------------------------------


def test_success_page_is_bytes_with_safe_headers(server: CallbackServer) -> None:
    thread, outcome = wait_in_thread(server)
    response = get(url_of(server, {"code": "the-code-value", "state": STATE}))
    thread.join()
    assert_page(response, 200)
    assert b"sign-in complete" in response.content
    assert b"the-code-value" not in response.content
    assert STATE.encode() not in response.content
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert int(response.headers["Content-Length"]) == len(response.content)
    [result] = outcome
    assert isinstance(result, CallbackResult)
    assert (result.code, result.state) == ("the-code-value", STATE)


@pytest.mark.parametrize(
    "path", ["/", "/oauth/webex/callback/", "/oauth/webex", "/favicon.ico", "/OAUTH/webex/callback"]
)
def test_other_paths_are_404(server: CallbackServer, path: str) -> None:
    response = get(url_of(server, {"code": "c", "state": STATE}, path=path))
    assert_page(response, 404)
    assert b"Not found" in response.content
    assert server.refused == 0
    # A wrong path never ends the wait: the real callback still succeeds.
    thread, outcome = wait_in_thread(server)
    assert get(url_of(server, {"code": "c", "state": STATE})).status_code == 200
    thread.join()
    assert isinstance(outcome[0], CallbackResult)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "HEAD"])
def test_only_get_is_served(server: CallbackServer, method: str) -> None:
    response = requests.request(
        method, url_of(server, {"code": "c", "state": STATE}), allow_redirects=False, timeout=5
    )
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET"
    assert server.refused == 0
    thread, outcome = wait_in_thread(server)
    get(url_of(server, {"code": "c", "state": STATE}))
    thread.join()
    assert isinstance(outcome[0], CallbackResult)


def test_state_mismatch_is_400_and_the_real_callback_still_succeeds(
    server: CallbackServer,
) -> None:
    thread, outcome = wait_in_thread(server)
    wrong = get(url_of(server, {"code": "forged", "state": "not-the-state"}))
    missing = get(url_of(server, {"code": "forged"}))
    for response in (wrong, missing):
        assert_page(response, 400)
        assert b"state mismatch" in response.content
        assert b"forged" not in response.content
    assert thread.is_alive()
    good = get(url_of(server, {"code": "real", "state": STATE}))
    thread.join()
    assert_page(good, 200)
    [result] = outcome
    assert isinstance(result, CallbackResult) and result.code == "real"
    assert server.refused == 2


def test_replayed_callback_after_success_is_refused(server: CallbackServer) -> None:
    first = get(url_of(server, {"code": "real", "state": STATE}))
    assert first.status_code == 200
    replay = get(url_of(server, {"code": "real", "state": STATE}))
    assert_page(replay, 400)
    assert b"already" in replay.content
    assert server.wait().code == "real"  # the first success is the one kept
    with pytest.raises(requests.ConnectionError):
        get(url_of(server, {"code": "real", "state": STATE}))


def test_error_description_is_escaped(server: CallbackServer) -> None:
    script = "<script>alert(1)</script>"
    response = get(
        url_of(server, {"error": "server_error", "error_description": script, "state": STATE})
    )
    assert_page(response, 400)
    assert b"<script>" not in response.content
    assert b"&lt;script&gt;alert(1)&lt;/script&gt;" in response.content
    with pytest.raises(CallbackError, match="server_error") as caught:
        server.wait()
    assert not isinstance(caught.value, AuthorizationDenied)


def test_error_with_a_wrong_state_does_not_end_the_flow(server: CallbackServer) -> None:
    thread, outcome = wait_in_thread(server)
    response = get(url_of(server, {"error": "access_denied", "state": "wrong"}))
    assert response.status_code == 400
    assert thread.is_alive()
    get(url_of(server, {"code": "real", "state": STATE}))
    thread.join()
    assert isinstance(outcome[0], CallbackResult)


def test_access_denied_raises_authorization_denied(server: CallbackServer) -> None:
    query = {"error": "access_denied", "error_description": "nope", "state": STATE}
    assert get(url_of(server, query)).status_code == 400
    with pytest.raises(AuthorizationDenied, match="declined") as caught:
        server.wait()
    assert "nope" in str(caught.value)


def test_missing_code_is_insufficient_parameters(server: CallbackServer) -> None:
    response = get(url_of(server, {"state": STATE, "foo": "bar"}))
    assert_page(response, 400)
    with pytest.raises(CallbackError, match="Insufficient parameters") as caught:
        server.wait()
    message = str(caught.value)
    assert "foo" in message and "bar" not in message  # names only, never values
    assert "run the login again" in message


def test_extra_parameters_are_ignored(server: CallbackServer) -> None:
    query = {"code": "real", "state": STATE, "extra": "<b>", "scope": "spark:all"}
    response = get(url_of(server, query))
    assert_page(response, 200)
    assert server.wait().code == "real"


def test_repeated_code_is_refused_without_ending_the_flow(server: CallbackServer) -> None:
    thread, outcome = wait_in_thread(server)
    response = get(url_of(server, f"code=a&code=b&state={STATE}"))
    assert response.status_code == 400
    assert thread.is_alive()
    get(url_of(server, {"code": "real", "state": STATE}))
    thread.join()
    assert isinstance(outcome[0], CallbackResult)


def test_never_logs_the_code(server: CallbackServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="webex_tokens")
    get(url_of(server, {"code": "secret-code-123", "state": STATE}))
    server.wait()
    assert PATH in caplog.text
    assert "secret-code-123" not in caplog.text
    assert STATE not in caplog.text


# -- binding --------------------------------------------------------------------------


def test_not_reachable_on_a_non_loopback_address(server: CallbackServer) -> None:
    address = non_loopback_address()
    if address is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    with socket.socket() as client:
        client.settimeout(2)
        with pytest.raises((ConnectionRefusedError, TimeoutError)):
            client.connect((address, server.port))
    assert all(ipaddress.ip_address(a).is_loopback for a in server.addresses)


def test_127_0_0_1_binds_that_address_only() -> None:
    with CallbackServer("http://127.0.0.1:0/cb", STATE) as callback:
        assert callback.addresses == ("127.0.0.1",)
        assert callback.redirect_uri == f"http://127.0.0.1:{callback.port}/cb"


def test_localhost_keeps_its_name_in_the_redirect_uri() -> None:
    with CallbackServer("http://localhost:0/cb", STATE) as callback:
        assert "127.0.0.1" in callback.addresses
        assert callback.redirect_uri == f"http://localhost:{callback.port}/cb"


def test_ipv6_loopback_redirect_uri() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 support in this Python")
    try:
        callback = CallbackServer("http://[::1]:0/cb", STATE, timeout=5)
    except CallbackError as exc:
        pytest.skip(f"IPv6 loopback unavailable: {exc}")
    with callback:
        assert callback.redirect_uri == f"http://[::1]:{callback.port}/cb"
        response = get(f"http://[::1]:{callback.port}/cb?code=c&state={STATE}")
        assert response.status_code == 200
        assert callback.wait().code == "c"


def test_port_argument_overrides_the_redirect_uri_port() -> None:
    port = free_port()
    with CallbackServer("http://localhost:8000/cb", STATE, port=port) as callback:
        assert callback.port == port
        assert callback.redirect_uri == f"http://localhost:{port}/cb"


def test_port_in_use_names_the_port_and_the_fixes() -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(CallbackError) as caught:
            CallbackServer(f"http://localhost:{port}/cb", STATE)
    message = str(caught.value)
    assert str(port) in message
    assert "already in use" in message
    assert "--port" in message and "register" in message


def test_port_taken_on_all_interfaces_is_detected() -> None:
    with socket.socket() as holder:
        holder.bind(("0.0.0.0", 0))  # noqa: S104 - the other program listens everywhere
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(CallbackError, match=str(port)):
            CallbackServer(f"http://127.0.0.1:{port}/cb", STATE)


@pytest.mark.parametrize(
    "uri",
    [
        "https://localhost:8000/cb",
        "http://example.com:8000/cb",
        "http://0.0.0.0:8000/cb",
        "http://192.168.1.2:8000/cb",
        "http://localhost:notaport/cb",
        "localhost:8000/cb",
    ],
)
def test_non_loopback_or_bad_redirect_uri_is_refused(uri: str) -> None:
    with pytest.raises(CallbackError, match="--no-browser"):
        CallbackServer(uri, STATE)


def test_empty_expected_state_is_refused() -> None:
    with pytest.raises(CallbackError, match="state"):
        CallbackServer("http://localhost:0/cb", "")


def test_timeout_raises_callback_error_with_the_fix() -> None:
    callback = CallbackServer("http://localhost:0/cb", STATE, timeout=0.3)
    started = time.monotonic()
    with pytest.raises(CallbackError) as caught:
        callback.wait()
    assert time.monotonic() - started < 3
    message = str(caught.value)
    assert "0.3 seconds" in message
    assert "run the login again" in message
    with pytest.raises(requests.ConnectionError):  # stopped: the port is free again
        get(f"http://127.0.0.1:{callback.port}/cb")


def test_timeout_mentions_refused_callbacks() -> None:
    with CallbackServer("http://localhost:0/cb", STATE, timeout=0.5) as callback:
        get(f"http://127.0.0.1:{callback.port}/cb?code=x&state=wrong")
        with pytest.raises(CallbackError, match="1 callback"):
            callback.wait()


def test_stopped_server_cannot_restart() -> None:
    callback = CallbackServer("http://localhost:0/cb", STATE)
    callback.stop()
    callback.stop()
    with pytest.raises(CallbackError, match="create a new one"):
        callback.start()


def test_port_is_free_again_after_stop() -> None:
    callback = CallbackServer("http://localhost:0/cb", STATE).start()
    port = callback.port
    callback.stop()
    with CallbackServer(f"http://localhost:{port}/cb", STATE) as again:
        assert again.port == port


def test_idle_connection_does_not_block_the_callback(server: CallbackServer) -> None:
    # A browser may open speculative connections that send nothing.
    with socket.create_connection(("127.0.0.1", server.port)):
        response = get(url_of(server, {"code": "real", "state": STATE}))
        assert response.status_code == 200
    assert server.wait().code == "real"


# -- the reusable handler and parse_callback_url ---------------------------------------


def test_handle_callback_query_without_io() -> None:
    ok = handle_callback_query(f"code=abc&state={STATE}", STATE)
    assert (ok.status, ok.final, ok.error) == (200, True, None)
    assert ok.raise_for_error() == CallbackResult("abc", STATE)
    assert isinstance(ok.page, bytes)
    assert ok.headers == PAGE_HEADERS
    refused = handle_callback_query("code=abc&state=other", STATE)
    assert (refused.status, refused.final) == (400, False)
    assert isinstance(refused.error, CallbackError)
    denied = handle_callback_query(f"error=access_denied&state={STATE}", STATE)
    assert denied.final and isinstance(denied.error, AuthorizationDenied)


def test_handle_callback_query_survives_odd_input() -> None:
    for query in ["", "&&&", "state", "%ff%fe=%00", "state=%ff" + "x" * 10000, "a=1;b=2"]:
        outcome = handle_callback_query(query, STATE)
        assert outcome.status == 400
    non_ascii = handle_callback_query("code=c&state=%C3%A9t%C3%A9", STATE)
    assert non_ascii.status == 400 and not non_ascii.final


def test_error_message_drops_control_characters() -> None:
    outcome = handle_callback_query(
        f"error=server_error&error_description=bad%1b%5b31mred%0anew&state={STATE}", STATE
    )
    assert outcome.error is not None
    assert "\x1b" not in str(outcome.error) and "\n" not in str(outcome.error)


def test_parse_callback_url_good() -> None:
    url = f"  http://localhost:8000/oauth/webex/callback?code=abc&state={STATE}\n"
    result = parse_callback_url(url, STATE)
    assert (result.code, result.state) == ("abc", STATE)
    assert (
        parse_callback_url(
            url, STATE, redirect_uri="http://localhost:8000/oauth/webex/callback"
        ).code
        == "abc"
    )


@pytest.mark.parametrize(
    "text", ["", "abc", "code=abc", "http://localhost:8000/oauth/webex/callback"]
)
def test_parse_callback_url_bad(text: str) -> None:
    with pytest.raises(CallbackError, match="whole address"):
        parse_callback_url(text, STATE)


def test_parse_callback_url_state_mismatch() -> None:
    with pytest.raises(CallbackError, match="state does not match"):
        parse_callback_url("http://localhost:8000/cb?code=abc&state=other", STATE)


def test_parse_callback_url_missing_code_and_denied() -> None:
    with pytest.raises(CallbackError, match="Insufficient parameters"):
        parse_callback_url(f"http://localhost:8000/cb?state={STATE}", STATE)
    with pytest.raises(AuthorizationDenied):
        parse_callback_url(f"http://localhost:8000/cb?error=access_denied&state={STATE}", STATE)


def test_parse_callback_url_elsewhere() -> None:
    url = f"https://evil.example/cb?code=abc&state={STATE}"
    with pytest.raises(CallbackError, match="not to the redirect URI") as caught:
        parse_callback_url(url, STATE, redirect_uri="http://localhost:8000/cb")
    assert "abc" not in str(caught.value)


# -- every address of localhost, and no other program on them (issue 12 #11) ----------


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not ipv6_loopback(), reason="this machine has no ::1")


@needs_ipv6
def test_localhost_is_served_on_ipv4_and_ipv6_loopback() -> None:
    with CallbackServer(f"http://localhost:0{PATH}", STATE, timeout=5) as callback:
        assert set(callback.addresses) >= {"127.0.0.1", "::1"}
        v6 = get(f"http://[::1]:{callback.port}{PATH}?code=c&state=wrong")
        assert v6.status_code == 400 and b"state mismatch" in v6.content
        v4 = get(url_of(callback, {"code": "real", "state": STATE}))
        assert v4.status_code == 200
        assert callback.wait().code == "real"


@needs_ipv6
def test_another_program_on_ipv6_loopback_port_is_refused_clearly() -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import socket, sys\n"
            "s = socket.socket(socket.AF_INET6)\n"
            "s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)\n"
            "s.bind(('::1', 0)); s.listen()\n"
            "print(s.getsockname()[1], flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        port = int(holder.stdout.readline())
        with pytest.raises(CallbackError) as caught:
            CallbackServer(f"http://localhost:{port}{PATH}", STATE)
        message = str(caught.value)
        assert "::1" in message and f"port {port}" in message and "already in use" in message
        assert "--port" in message
        # Nothing of ours is left listening on 127.0.0.1 for that port.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))
    finally:
        assert holder.stdin is not None and holder.stdout is not None
        holder.stdin.close()
        holder.wait(timeout=10)
        holder.stdout.close()


# -- a robust server: idle, slow, many and huge (issue 12 #12) ---------------------------


@pytest.fixture
def quick() -> Iterator[CallbackServer]:
    """A server that gives each connection 0.5 s and holds at most 8 at once."""
    with CallbackServer(
        f"http://localhost:0{PATH}", STATE, timeout=10, connection_timeout=0.5, max_connections=8
    ) as callback:
        yield callback


@pytest.fixture
def thread_errors(monkeypatch: pytest.MonkeyPatch) -> list[BaseException | None]:
    """Exceptions that escaped any thread during the test."""
    seen: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_value))
    return seen


def test_idle_connection_is_closed_quietly(
    quick: CallbackServer,
    thread_errors: list[BaseException | None],
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="webex_tokens")
    with socket.create_connection(("127.0.0.1", quick.port)) as idle:
        idle.settimeout(5)
        started = time.monotonic()
        assert idle.recv(100) == b""  # closed by the server, nothing sent
        assert time.monotonic() - started < 3
    time.sleep(0.2)
    assert thread_errors == []
    assert "Traceback" not in capfd.readouterr().err
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert get(url_of(quick, {"code": "real", "state": STATE})).status_code == 200


def test_slow_loris_is_cut_off_at_the_connection_timeout(
    quick: CallbackServer, thread_errors: list[BaseException | None]
) -> None:
    request = f"GET {PATH}?code=c&state={STATE} HTTP/1.1\r\nHost: localhost\r\n".encode()
    with socket.create_connection(("127.0.0.1", quick.port)) as slow:
        started = time.monotonic()
        closed_after = None
        for byte in request * 20:
            try:
                slow.send(bytes([byte]))
            except OSError:
                closed_after = time.monotonic() - started
                break
            time.sleep(0.05)
            if time.monotonic() - started > 5:
                break
        if closed_after is None:  # the kernel may still accept bytes: the read says it
            slow.settimeout(2)
            with contextlib.suppress(OSError):
                assert slow.recv(100) == b""
            closed_after = time.monotonic() - started
    assert closed_after < 3
    assert thread_errors == []
    assert quick.inbox.refused == 0  # a request never completed is not a callback


def test_a_flood_of_connections_is_bounded_and_the_callback_still_gets_through(
    quick: CallbackServer,
    thread_errors: list[BaseException | None],
    capfd: pytest.CaptureFixture[str],
) -> None:
    before = threading.active_count()
    flood = [socket.create_connection(("127.0.0.1", quick.port)) for _ in range(100)]
    try:
        time.sleep(0.3)
        assert threading.active_count() - before <= 8 + 2
        thread, outcome = wait_in_thread(quick)
        # The newest connection is served: the idle flood is evicted to make room.
        response = get(url_of(quick, {"code": "real", "state": STATE}))
        assert response.status_code == 200
        thread.join(5)
        assert isinstance(outcome[0], CallbackResult)
    finally:
        for connection in flood:
            connection.close()
    assert thread_errors == []
    assert "Traceback" not in capfd.readouterr().err


def test_a_request_line_over_64_kib_is_answered_414(
    quick: CallbackServer, thread_errors: list[BaseException | None]
) -> None:
    line = f"GET {PATH}?code={'a' * 70 * 1024}&state={STATE} HTTP/1.1\r\n\r\n".encode()
    with socket.create_connection(("127.0.0.1", quick.port)) as client:
        client.settimeout(5)
        client.sendall(line)
        answer = b""
        with contextlib.suppress(OSError):
            while chunk := client.recv(65536):
                answer += chunk
    assert answer.startswith(b"HTTP/1.")
    assert b" 414 " in answer.split(b"\r\n", 1)[0]
    assert b"Content-Security-Policy" in answer and b"<!doctype html>" in answer
    assert b"aaaaaaaa" not in answer
    assert thread_errors == []
    assert quick.inbox.refused == 0
    assert get(url_of(quick, {"code": "real", "state": STATE})).status_code == 200


def test_too_many_headers_are_answered_431(quick: CallbackServer) -> None:
    headers = "".join(f"X-{n}: {n}\r\n" for n in range(200))
    request = f"GET {PATH}?code=c&state={STATE} HTTP/1.1\r\n{headers}\r\n".encode()
    with socket.create_connection(("127.0.0.1", quick.port)) as client:
        client.settimeout(5)
        client.sendall(request)
        status_line = client.recv(65536).split(b"\r\n", 1)[0]
    assert b" 431 " in status_line
