"""A small progress bar on stderr for batch files (only when stderr is a terminal)."""

from __future__ import annotations

import time
from typing import TextIO


class Progress:
    """Bytes read of a file, records so far and their rate; redrawn at most 5 times a second."""

    def __init__(self, stream: TextIO, label: str, total_bytes: int) -> None:
        self.stream = stream
        self.label = label
        self.total = max(total_bytes, 1)
        self.started = time.monotonic()
        self._last = 0.0

    def update(self, done_bytes: int, records: int, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < 0.2:
            return
        self._last = now
        fraction = min(done_bytes / self.total, 1.0)
        width = 30
        filled = int(width * fraction)
        rate = records / max(now - self.started, 1e-6)
        bar = "#" * filled + "-" * (width - filled)
        self.stream.write(f"\r{self.label} [{bar}] {fraction:6.1%} {records:,} records {rate:,.0f}/s")
        self.stream.flush()

    def close(self, records: int) -> None:
        self.update(self.total, records, force=True)
        self.stream.write("\n")
        self.stream.flush()
