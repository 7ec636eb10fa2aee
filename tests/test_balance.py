"""`mishon serve --workers N` shares kept-alive connections out evenly (serve/balance.py) and
admits waiting requests first come, first served (serve/fifo.py)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mishon.serve.balance import ConnectionBoard, board_path
from mishon.serve.fifo import FifoSemaphore
from mishon.serve.protocol import GuardedH11Protocol

from .test_connections import serving


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(done.stdout)


def test_a_worker_above_its_share_lets_go_only_of_its_excess(tmp_path: Path) -> None:
    path = board_path(tmp_path, 8000)
    busy, idle = ConnectionBoard(path), ConnectionBoard(path)  # two workers' slots
    assert (busy.slot, idle.slot) == (0, 1)
    for _ in range(7):
        busy.opened()
    idle.opened()
    # 8 connections, 2 workers: a share of 4; the busy one lets 3 go, one judgement each
    assert [busy.let_go() for _ in range(5)] == [True, True, True, False, False]
    assert not idle.let_go()
    for _ in range(3):  # closed after their answers; the clients come back to the other
        busy.closed(leaving=True)
        idle.opened()
    assert (busy.open, busy.leaving, idle.open) == (4, 0, 4)
    assert not busy.let_go() and not idle.let_go()  # even: nobody lets go


def test_a_gone_workers_slot_counts_for_nothing_and_is_taken_again(tmp_path: Path) -> None:
    path = board_path(tmp_path, 8000)
    board = ConnectionBoard(path)
    board._slots[1] = (_dead_pid(), 50)  # killed outright: its slot was never freed
    board.opened()
    board.opened()
    assert not board.let_go()  # alone alive: its share is every connection
    assert ConnectionBoard(path).slot == 1
    board.leave()
    assert ConnectionBoard(path).slot == 0


def test_an_answer_says_connection_close_when_the_worker_is_above_its_share(
    tmp_path: Path,
) -> None:
    board = ConnectionBoard(tmp_path / "board")
    ConnectionBoard(tmp_path / "board")  # a second live worker (this process) with none
    with serving(GuardedH11Protocol) as (_, port):
        GuardedH11Protocol.board = board
        first = socket.create_connection(("127.0.0.1", port), timeout=5)
        second = socket.create_connection(("127.0.0.1", port), timeout=5)
        time.sleep(0.2)
        assert board.open == 2  # a share of 1 of the 2
        answers = [_ask(connection).lower() for connection in (first, second)]
        assert b"connection: close" in answers[0]  # let go: the client reconnects
        assert b"connection: close" not in answers[1]  # kept: the excess has gone
        assert first.recv(1) == b""  # closed by the server after its answer
        assert b"200 OK" in _ask(second)
        first.close()
        second.close()


def _ask(connection: socket.socket) -> bytes:
    """One GET /healthz on a kept-alive connection; its whole answer (headers and body may
    come apart)."""
    connection.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    answer = b""
    while not answer.endswith(b'{"status":"alive"}'):
        chunk = connection.recv(4096)
        assert chunk, f"closed before the answer was whole: {answer!r}"
        answer += chunk
    return answer


def test_waiting_threads_get_the_slot_in_the_order_they_asked() -> None:
    gate = FifoSemaphore(1)
    gate.acquire()
    order: list[str] = []
    holding = threading.Event()
    let_go = threading.Event()

    def waiter(name: str) -> None:
        with gate:
            order.append(name)
            if name == "first":
                holding.set()
                let_go.wait()

    threads = []
    for name in ("first", "second", "third"):
        threads.append(threading.Thread(target=waiter, args=(name,)))
        threads[-1].start()
        while len(gate._waiting) < len(threads):  # queued before the next one starts
            time.sleep(0.001)
    gate.release()
    assert holding.wait(5)
    late = threading.Thread(target=waiter, args=("late",))
    late.start()
    late.join(0.2)
    assert late.is_alive() and order == ["first"]  # a newcomer does not jump the queue
    let_go.set()
    for thread in [*threads, late]:
        thread.join(5)
    assert order == ["first", "second", "third", "late"]


def test_a_semaphore_needs_a_slot() -> None:
    with pytest.raises(ValueError, match="at least one slot"):
        FifoSemaphore(0)


def test_the_board_is_private_to_its_owner(tmp_path: Path) -> None:
    ConnectionBoard(tmp_path / "board")
    assert (os.stat(tmp_path / "board").st_mode & 0o777) == 0o600
