"""What the service checks before any work: body size and arrival time, user ids, the
container of an upload (from its bytes), and the bearer token that guards writes."""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import HTTPException

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

USER_ID = re.compile(r"[\w.@:+-]{1,200}")
USER_ID_RULE = "user_id: 1 to 200 letters, digits or . _ @ : + -"


def valid_user_id(text: str) -> bool:
    """The one user-id rule of every endpoint (the whole string: no trailing line break)."""
    return USER_ID.fullmatch(text) is not None


def sniff_container(head: bytes) -> str | None:
    """The container of a video from its first bytes: mp4, mov, webm, mkv, or None."""
    if len(head) >= 12 and head[4:8] == b"ftyp":
        return "mov" if head[8:12] == b"qt  " else "mp4"
    if len(head) >= 8 and head[4:8] in (b"moov", b"mdat", b"wide", b"free"):
        return "mov"  # an old QuickTime file without ftyp
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML: Matroska or its WebM profile
        return "webm" if b"webm" in head[:64] else "mkv"
    return None


def is_loopback(host: str) -> bool:
    """Whether binding `host` keeps the service on this machine (`localhost`, with or without
    its root dot; any loopback address, in any spelling the resolver takes: `127.1`)."""
    name = host.strip().lower().rstrip(".")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        pass
    try:  # the short IPv4 forms inet_aton reads as the resolver does: 127.1, 2130706433
        return ipaddress.IPv4Address(socket.inet_aton(name)).is_loopback
    except OSError:
        return False


def check_token(
    expected: str | None, authorization: str | None, what: str = "recording posts"
) -> None:
    """Refuse (401) a request without `Authorization: Bearer <expected>` where a token is set."""
    if expected is None:
        return
    scheme, _, given = (authorization or "").partition(" ")
    # The server decodes header bytes as latin-1: encoding back gives the bytes the client
    # sent, which for a token beyond ASCII are its UTF-8 (what clients send).
    given_bytes = given.strip().encode("latin-1", "replace")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given_bytes, expected.encode("utf-8")):
        raise HTTPException(
            401,
            f"{what} needs Authorization: Bearer <token>",
            {"WWW-Authenticate": "Bearer"},
        )


class BodyLimits:
    """ASGI middleware: a body larger than its path's limit is refused with 413 as soon as that
    is known (from Content-Length before anything is read, else while it streams in); a body
    that has not fully arrived `timeout_s` after the request began is refused with 408."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str], int], timeout_s: float) -> None:
        self.app = app
        self.limit_for = limit_for
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await _answer(send, 413, f"the request body is larger than {limit:,} bytes")
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout_s
        received = 0

        async def bounded_receive() -> Message:
            nonlocal received
            try:
                message = await asyncio.wait_for(receive(), max(deadline - loop.time(), 0.0))
            except TimeoutError:
                raise HTTPException(
                    408, f"the request body did not arrive within {self.timeout_s:g} s"
                ) from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise HTTPException(413, f"the request body is larger than {limit:,} bytes")
            return message

        await self.app(scope, bounded_receive, send)


async def _answer(send: Send, status: int, detail: str) -> None:
    body = ('{"detail": "' + detail + '"}').encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
