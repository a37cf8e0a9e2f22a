"""The README's run command, driven in a pseudo-terminal: a live view with insights within a
minute, and Ctrl-C stops everything it started."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import select
import signal
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from streams.cli.embedded import free_port

pytestmark = pytest.mark.integration

ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")


def descendants(pid: int) -> set[int]:
    """Every process below `pid`, from /proc."""
    found: set[int] = set()
    todo = [pid]
    while todo:
        parent = todo.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            children = (
                (task / "children").read_text().split() if (task / "children").exists() else []
            )
            for child in map(int, children):
                if child not in found:
                    found.add(child)
                    todo.append(child)
    return found


def _controlling_terminal() -> None:
    """In the child: a session of its own whose controlling terminal is the pty (stdin), so
    that ^C typed into the pty becomes SIGINT for it, as in a terminal."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


def test_demo_shows_insights_within_a_minute_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INSIGHTS_", "KAFKA_"))}
    env.update(
        INSIGHTS_WEB_PORT=str(free_port()),
        INSIGHTS_METRICS_PORT=str(free_port()),
        INSIGHTS_DATA_DIR=str(tmp_path),
        COLUMNS="120",
        LINES="60",
    )
    main, child = pty.openpty()
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "streams", "demo", "--rate", "300"],
        stdin=child, stdout=child, stderr=child, env=env, preexec_fn=_controlling_terminal,
    )  # fmt: skip
    os.close(child)
    screen = b""
    insights_at = None
    family: set[int] = set()
    try:
        while time.monotonic() - started < 90:
            ready, _, _ = select.select([main], [], [], 0.5)
            if ready:
                try:
                    screen += os.read(main, 65536)
                except OSError:
                    break
            family |= descendants(process.pid)
            counts = [
                int(n) for n in re.findall(rb"insights (\d+)", ANSI.sub(b"", screen[-20000:]))
            ]
            if counts and max(counts) > 0:
                insights_at = time.monotonic() - started
                break
        assert insights_at is not None, ANSI.sub(b"", screen[-3000:]).decode(errors="replace")
        assert insights_at < 60, f"first insights after {insights_at:.1f}s"
        family |= descendants(process.pid)
        assert len(family) >= 2  # the embedded broker and the worker
        os.write(main, b"\x03")  # Ctrl-C, as a person would
        deadline = time.monotonic() + 45
        while process.poll() is None and time.monotonic() < deadline:
            ready, _, _ = select.select([main], [], [], 0.5)
            if ready:
                with contextlib.suppress(OSError):
                    screen += os.read(main, 65536)
        assert process.poll() == 0, ANSI.sub(b"", screen[-3000:]).decode(errors="replace")
        assert b"demo stopped: worker exited with 0" in ANSI.sub(b"", screen)
        leftovers = [pid for pid in family if alive(pid)]
        assert leftovers == [], f"left behind: {leftovers}"
        print(f"\ndemo: first insights on screen after {insights_at:.1f}s")  # noqa: T201
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        for pid in family:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        os.close(main)
