"""Clients that hold connections open cannot lock others out: a header deadline and a bound
per client address (serve/protocol.py), on a real uvicorn server on loopback."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import uvicorn
from fastapi import FastAPI
from uvicorn.protocols.http.h11_impl import H11Protocol

from mishon.serve.protocol import GuardedH11Protocol

LIMIT = 8  # max_connections of the server under test
PER_CLIENT = 5
DEADLINE_S = 0.5


def _serve(protocol: type) -> tuple[uvicorn.Server, threading.Thread, int]:
    app = FastAPI()

    @app.get("/healthz")
    def alive() -> dict[str, str]:
        return {"status": "alive"}

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    GuardedH11Protocol.configure(DEADLINE_S, PER_CLIENT)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, http=protocol, limit_concurrency=LIMIT,
        log_level="error",
    )  # fmt: skip
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not running.started:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return running, thread, port


@contextmanager
def serving(protocol: type) -> Iterator[tuple[uvicorn.Server, int]]:
    """A server on loopback with `protocol` (the guards' test limits), stopped after."""
    running, thread, port = _serve(protocol)
    try:
        yield running, port
    finally:
        running.should_exit = True
        thread.join(timeout=15)
        GuardedH11Protocol.configure(10.0, 32)


@pytest.fixture
def server() -> Iterator[int]:
    with serving(GuardedH11Protocol) as (_, port):
        yield port


def _get(port: int, source: str = "127.0.0.1") -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return s.recv(4096)


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True


def test_idle_connections_are_closed_at_the_header_deadline(server: int) -> None:
    """As many silent connections as the server holds (from several addresses): at first the
    server is full (503), after the deadline they are gone and a request is answered."""
    idle = [
        socket.create_connection(("127.0.0.1", server), source_address=(f"127.0.0.{2 + i // 4}", 0))
        for i in range(LIMIT)
    ]
    time.sleep(0.1)
    assert b" 503 " in _get(server, "127.0.0.99")
    assert all(_closed_within(s, DEADLINE_S * 4) for s in idle)
    assert b" 200 " in _get(server)
    for s in idle:
        s.close()


def test_headers_a_byte_at_a_time_do_not_hold_a_connection(server: int) -> None:
    slow = socket.create_connection(("127.0.0.1", server))
    slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the end of the headers
    assert _closed_within(slow, DEADLINE_S * 4)
    slow.close()
    quick = socket.create_connection(("127.0.0.1", server))
    quick.sendall(b"GET /healthz HTTP/1.1\r\n")
    time.sleep(DEADLINE_S / 4)
    quick.sendall(b"Host: x\r\nConnection: close\r\n\r\n")  # complete within the deadline
    assert b" 200 " in quick.recv(4096)
    quick.close()


def test_one_address_cannot_take_every_connection(server: int) -> None:
    mine = [socket.create_connection(("127.0.0.1", server)) for _ in range(PER_CLIENT)]
    extra = socket.create_connection(("127.0.0.1", server))
    assert _closed_within(extra, 1.0)  # closed at once: over the bound
    assert b" 200 " in _get(server, "127.0.0.7")  # another address is still served
    for s in [*mine, extra]:
        s.close()


@pytest.mark.parametrize("protocol", [GuardedH11Protocol, H11Protocol])
def test_a_connection_accepted_before_a_shutdown_gets_its_first_request_answered(
    protocol: type,
) -> None:
    """A worker replaced while a client connects: the request sent on the fresh connection is
    answered (then the connection closes); uvicorn's own protocol closes it unanswered."""
    with serving(protocol) as (running, port):
        fresh = socket.create_connection(("127.0.0.1", port), timeout=5)
        used = socket.create_connection(("127.0.0.1", port), timeout=5)
        used.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        first = b""
        while not first.endswith(b'{"status":"alive"}'):  # headers and body may come apart
            first += used.recv(4096)
        assert b" 200 " in first  # answered and kept alive: idle now
        time.sleep(0.1)  # both accepted
        running.should_exit = True  # graceful shutdown begins
        time.sleep(0.3)
        fresh.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while chunk := fresh.recv(4096):
            answer += chunk
        if protocol is H11Protocol:
            assert answer == b""  # the failure the guarded protocol repairs
        else:
            assert b" 200 " in answer and answer.endswith(b'{"status":"alive"}')  # then closed
        assert _closed_within(used, 2.0)  # an idle connection that was answered closes at once
        fresh.close()
        used.close()
