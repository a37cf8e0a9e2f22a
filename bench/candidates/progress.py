"""Progress of a candidate process, written to a JSON file the harness polls.

A candidate calls `mark_first()` when its first input record reaches its code and `add(n)`
after n records are fully processed (folded into the aggregate and, where it sends, handed to
its producer). A daemon thread rewrites the file every 100 ms: count, wall-clock time of the
first and of the latest processed record, the process CPU seconds (all threads) at the first
record and now, and the peak RSS. Stdlib only: it runs in both venvs.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import threading
import time

__all__ = ["Progress"]

_PERIOD_S = 0.1


class Progress:
    """Counts processed records; `path` None makes every call a no-op."""

    def __init__(self, path: str | None) -> None:
        self.path = path
        self.count = 0
        self.first: float | None = None
        self.last: float | None = None
        self.cpu_first: float | None = None
        self.counters: dict[str, int] = {}  # what a candidate chooses to count (in the JSON)
        if path:
            threading.Thread(target=self._loop, name="bench-progress", daemon=True).start()

    @classmethod
    def from_env(cls) -> Progress:
        """The reporter named by BENCH_PROGRESS (`{pid}` in it becomes this process id)."""
        path = os.environ.get("BENCH_PROGRESS")
        return cls(path.replace("{pid}", str(os.getpid())) if path else None)

    def mark_first(self) -> None:
        if self.first is None:
            self.cpu_first = time.process_time()
            self.first = time.time()

    def add(self, n: int = 1) -> None:
        if self.first is None:
            self.mark_first()
        self.count += n
        self.last = time.time()

    def bump(self, name: str, n: int = 1) -> None:
        """Add `n` to the candidate's counter `name` (in the JSON, `counters`)."""
        self.counters[name] = self.counters.get(name, 0) + n

    def snapshot(self) -> dict[str, object]:
        return {
            "pid": os.getpid(),
            "count": self.count,
            "first": self.first,
            "last": self.last,
            "cpu_first": self.cpu_first,
            "cpu": time.process_time(),
            "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "at": time.time(),
            "counters": dict(self.counters),
        }

    def write(self) -> None:
        if not self.path:
            return
        tmp = f"{self.path}.tmp"
        with open(tmp, "w") as fh:
            json.dump(self.snapshot(), fh)
        os.replace(tmp, self.path)

    def _loop(self) -> None:
        while True:
            with contextlib.suppress(OSError):
                self.write()
            time.sleep(_PERIOD_S)
