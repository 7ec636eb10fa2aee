"""uvicorn's HTTP/1.1 protocol with two guards against clients that hold connections open.

- A header deadline: a connection whose request line and headers have not all arrived
  `header_timeout_s` after it opened (or after its previous answer) is closed. Without it, a
  connection that sends nothing, or a header a byte at a time, is held for ever, and enough of
  them fill `max_connections` so every other client is answered 503.
- A bound per client address: beyond `per_client` open connections from one address, a new
  one is closed at once, so one client cannot take every slot.

And one repair of graceful shutdown: uvicorn closes every connection without a request in
progress, including one it accepted a moment before and whose first request is still on the
way; its client (which sent that request on a fresh connection, so cannot retry it safely)
sees "connection closed without response". That happens whenever a `--workers` process is
replaced (SIGHUP) while requests arrive. Here a connection that has not been answered yet
is left open through the shutdown until its first request is answered, then closed (as
uvicorn closes a connection whose request was in progress); one that sends nothing is closed
by the header deadline.

With `--workers`, each connection also counts on the process's `ConnectionBoard`
(`balance.py`): a process above its share of the open connections closes a connection after
its next answer (`Connection: close`), so the client reconnects and the split evens out.

Limits are class attributes, set by `configure` in each service process before it serves
(`mishon serve` and every `--workers` process).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any, ClassVar, cast

import h11
from uvicorn.protocols.http.flow_control import CLOSE_HEADER
from uvicorn.protocols.http.h11_impl import H11Protocol, RequestResponseCycle

from mishon.serve.balance import ConnectionBoard


class GuardedH11Protocol(H11Protocol):
    """H11Protocol with a header deadline and a per-client connection bound (see module)."""

    header_timeout_s: ClassVar[float] = 10.0
    per_client: ClassVar[int] = 32
    open_by_client: ClassVar[Counter[str]] = Counter()  # this process's connections
    board: ClassVar[ConnectionBoard | None] = None  # with --workers: the shared counts

    @classmethod
    def configure(
        cls, header_timeout_s: float, per_client: int, board: ConnectionBoard | None = None
    ) -> None:
        cls.header_timeout_s = header_timeout_s
        cls.per_client = per_client
        cls.board = board

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._header_timer: asyncio.TimerHandle | None = None
        self._answered = False  # any request answered on this connection
        self._closing = False  # shut down once its first request is answered
        self._judged: RequestResponseCycle | None = None  # the last request `_judge` saw
        self._let_go = False  # closes after its answer to even out the workers' connections
        self._address = self.client[0] if self.client else ""
        self.open_by_client[self._address] += 1
        if self.board is not None:
            self.board.opened()
        if self.open_by_client[self._address] > self.per_client:
            self.logger.warning(
                "closed a connection from %s: more than %d open", self._address, self.per_client
            )
            transport.close()
            return
        self._start_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        self.open_by_client[self._address] -= 1
        if self.open_by_client[self._address] <= 0:
            del self.open_by_client[self._address]
        if self.board is not None:
            self.board.closed(leaving=self._let_go)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # between requests uvicorn's keep-alive timeout closes an idle connection; the first
        # byte of a next request cancels it, and from then the header deadline runs
        if self._header_timer is None and self.conn.their_state is h11.IDLE:
            self._start_header_timer()
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._stop_header_timer()  # the request line and headers are in
        if self.cycle is not None and self.cycle is not self._judged:
            self._judge(self.cycle)

    def _judge(self, cycle: RequestResponseCycle) -> None:
        """Once a request's headers are in: whether its connection closes after the answer
        (shutting down, or above this worker's share of the connections)."""
        self._judged = cycle
        if not self._let_go and self.board is not None:
            self._let_go = self.board.let_go()
        if self._closing or self._let_go:
            cycle.keep_alive = False  # answered, then closed
            # as if the client had asked: uvicorn then announces it (`Connection: close`), so
            # the client opens a new connection rather than reuse this one as it closes
            headers = cast(list[tuple[bytes, bytes]], cycle.scope["headers"])  # uvicorn's list
            if CLOSE_HEADER not in headers:
                headers.append(CLOSE_HEADER)

    def on_response_complete(self) -> None:
        self._answered = True
        super().on_response_complete()

    def shutdown(self) -> None:
        if self.cycle is None and not self._answered and not self.transport.is_closing():
            self._closing = True  # its first request may be on the way (see module)
            return
        super().shutdown()

    def _start_header_timer(self) -> None:
        self._stop_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout_s, self._headers_late)

    def _stop_header_timer(self) -> None:
        timer: Any = getattr(self, "_header_timer", None)
        if timer is not None:
            timer.cancel()
            self._header_timer = None

    def _headers_late(self) -> None:
        self._header_timer = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()
