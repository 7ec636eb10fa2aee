"""One writer per run directory: a second is refused, a lock left by a killed process is not."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mishon.errors import MishonError
from mishon.locks import LOCK_FILE, exclusive_writer
from mishon.train.run import train_model

from .planted import planted_dataset, small_settings

HOLD = "from mishon.locks import exclusive_writer; import pathlib, sys, time\n" \
       "with exclusive_writer(pathlib.Path(sys.argv[1])):\n" \
       "    print('held', flush=True); time.sleep(600)\n"  # fmt: skip


def test_a_second_writer_is_refused_and_a_dead_holders_lock_is_taken(tmp_path: Path) -> None:
    dataset = planted_dataset(tmp_path / "ds")
    run = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(MishonError, match=rf"is being written by process {holder.pid} on "):
            train_model(dataset, small_settings(epochs=1), run)
        assert not (run / "model.safetensors").exists()
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # as kill -9 of a training would
        holder.wait()
    assert (run / LOCK_FILE).read_text().startswith(f"process {holder.pid} ")  # left behind
    train_model(dataset, small_settings(epochs=1), run)  # the dead holder blocks nothing
    assert (run / "model.safetensors").is_file()


def test_the_lock_is_released_when_the_writer_ends(tmp_path: Path) -> None:
    with exclusive_writer(tmp_path / "run"):
        pass
    started = time.monotonic()
    with exclusive_writer(tmp_path / "run"):
        assert time.monotonic() - started < 1
    with exclusive_writer(tmp_path / "run"), pytest.raises(MishonError):  # noqa: SIM117
        with exclusive_writer(tmp_path / "run"):
            pass
