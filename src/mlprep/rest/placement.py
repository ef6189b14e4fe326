"""Where ``pre_processing`` runs: on the event loop (inline) or in the bounded thread pool.

Handing a request to a thread and back costs more than an identity ``pre_processing`` itself (about half
the throughput of a small record, and a few milliseconds at p99), but code that blocks (a sleep, a call
to another service) must not run on the event loop, where it would freeze every other request and
``/health``. So with ``API_INLINE=auto`` (the default) every function starts in the pool, where each
request is timed, and moves to the event loop only once it has shown it is fast:

* at least ``PROVE_RECORDS`` records measured in the pool, at most ``FAST_RECORD_S`` of CPU a record on
  average (CPU time of the thread: in the pool, wall time mostly measures the wait for the GIL; for the
  model endpoints ``MODEL_CALL_S``, since one record there pays a whole model call), and no
  blocking call seen: while it is measured in the pool a profile hook of the thread watches its calls
  (``time.sleep``, ``select``, a socket's connect, send or receive), and a Python audit hook watches
  for socket connections and look-ups, HTTP sends and subprocesses at any time (the hook sees
  ``time.sleep`` too from Python 3.12);
* then a request runs inline when its body is small and its records are expected to take at most
  ``INLINE_BUDGET_S``; larger batches still go to the pool;
* a blocking call made inline, or ``SLOW_STRIKES`` inline requests over ``INLINE_LIMIT_S`` among
  ``STRIKE_WINDOW`` (one is not enough: on a busy machine the OS alone can hold a thread that long),
  sends the function back to the pool for the life of the process (those requests have held the loop).

``API_INLINE=always`` runs every small request inline (fastest, for code known not to block);
``API_INLINE=never`` keeps the pool for everything (the timeouts of ``REQUEST_TIMEOUT_S`` then apply
to every request).
"""

from __future__ import annotations

import logging
import select
import socket
import sys
import threading
import time
from types import FrameType
from typing import Any, Literal

Mode = Literal["auto", "always", "never"]
PROVE_RECORDS = 1000
FAST_RECORD_S = 0.0002
INLINE_BUDGET_S = 0.002
# A model call costs a fixed few hundred microseconds (input checks, one predict) even for one record.
MODEL_CALL_S = INLINE_BUDGET_S / 2
INLINE_LIMIT_S = 0.02
INLINE_BODY_BYTES = 256 * 1024
BATCH_RECORDS = 10
SLOW_STRIKES = 3
STRIKE_WINDOW = 1000
# Audit events of calls that wait on something outside the process (see Python's audit events table).
BLOCKING_EVENTS = frozenset(
    {
        "time.sleep",
        "socket.connect",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.gethostbyaddr",
        "socket.sendto",
        "http.client.connect",
        "http.client.send",
        "subprocess.Popen",
        "os.system",
        "os.posix_spawn",
        "os.fork",
    }
)
# Calls that wait (C functions, as a profile hook sees them), while a function is measured in the pool.
BLOCKING_FUNCTIONS = {time.sleep: "time.sleep", select.select: "select.select"}
BLOCKING_METHODS = frozenset({"connect", "connect_ex", "accept", "recv", "recv_into", "recvfrom", "send", "sendall"})
log = logging.getLogger("mlprep.rest")
_watched = threading.local()  # .placement: the Placement whose pre_processing this thread is running


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event in BLOCKING_EVENTS:
        placement = getattr(_watched, "placement", None)
        if placement is not None:
            placement.blocking_call(event)


def _profile(frame: FrameType, event: str, arg: Any) -> None:
    if event != "c_call":
        return
    name = BLOCKING_FUNCTIONS.get(arg) if type(arg) is type(time.sleep) else None
    if name is None and isinstance(getattr(arg, "__self__", None), socket.socket) and arg.__name__ in BLOCKING_METHODS:
        name = f"socket.{arg.__name__}"
    if name is not None:
        placement = getattr(_watched, "placement", None)
        if placement is not None:
            placement.blocking_call(name)


_hook_lock = threading.Lock()
_hooked = False


def _install_hook() -> None:
    """Audit hooks cannot be removed, so one hook serves every Placement of the process."""
    global _hooked
    with _hook_lock:
        if not _hooked:
            sys.addaudithook(_audit)
            _hooked = True


class Placement:
    """The decision for one loaded ``pre_processing``, and the measurements it rests on."""

    def __init__(self, mode: Mode, fast_record_s: float = FAST_RECORD_S) -> None:
        self.mode = mode
        self.fast_record_s = fast_record_s  # the CPU a record may take on average to move inline
        self.inline = mode == "always"
        self.reason = {
            "auto": f"measuring: inline once {PROVE_RECORDS} records have shown it is fast",
            "always": "API_INLINE=always",
            "never": "API_INLINE=never",
        }[mode]
        self.records = 0  # measured records (pool and inline)
        self.seconds = 0.0  # their time
        # The same for requests of BATCH_RECORDS or more: a record costs less in a batch than alone (the
        # request's own costs are shared), so batches are planned from these once there are some.
        self.batch_records = 0
        self.batch_seconds = 0.0
        self.demoted = False
        self.inline_requests = 0  # since the window began
        self.strikes = 0  # inline requests over INLINE_LIMIT_S in this window
        self.blocking: str | None = None  # the first blocking call seen
        self._lock = threading.Lock()
        if mode == "auto":
            _install_hook()

    def runs_inline(self, records: int, body_bytes: int) -> bool:
        """True when this request's records should run on the event loop."""
        if not self.inline or body_bytes > INLINE_BODY_BYTES:
            return False
        return self.mode == "always" or records * self.per_record() <= INLINE_BUDGET_S

    def per_record(self) -> float:
        """Seconds a record takes, from batches when enough were measured."""
        if self.batch_records >= PROVE_RECORDS:
            return self.batch_seconds / self.batch_records
        return self.seconds / self.records if self.records else 0.0

    def watch(self, profile: bool = False) -> bool:
        """Mark this thread as running ``pre_processing`` for this placement (until ``unwatch``); with
        ``profile`` (a pool thread), also watch its calls while the function is still being measured.
        True when the profile hook was set (to pass to ``unwatch``)."""
        if self.mode != "auto":
            return False
        _watched.placement = self
        if profile and not self.inline and not self.demoted:
            sys.setprofile(_profile)
            return True
        return False

    def unwatch(self, profiled: bool = False) -> None:
        _watched.placement = None
        if profiled:
            sys.setprofile(None)

    def observe(self, records: int, seconds: float, inline: bool) -> None:
        """Account one request's records and time (CPU in the pool, wall inline); may move the function."""
        if self.mode != "auto" or records == 0:
            return
        with self._lock:
            self.records += records
            self.seconds += seconds
            if records >= BATCH_RECORDS:
                self.batch_records += records
                self.batch_seconds += seconds
            if inline:
                self.inline_requests += 1
                if self.inline_requests > STRIKE_WINDOW:
                    self.inline_requests = self.strikes = 0
                if seconds > INLINE_LIMIT_S:
                    self.strikes += 1
                    if self.strikes >= SLOW_STRIKES:
                        limit = f"{INLINE_LIMIT_S * 1000:g} ms"
                        last = f"{seconds * 1000:.0f} ms"
                        self._to_pool(f"{self.strikes} requests took over {limit} inline, the last {last}")
            elif (
                not self.inline
                and self.blocking is None
                and self.records >= PROVE_RECORDS
                and self.per_record() <= self.fast_record_s
                and not self.demoted
            ):
                self.inline = True
                self.reason = (
                    f"inline: {self.records} records measured at {self.per_record() * 1e6:.0f} us each, "
                    "no blocking call"
                )
                log.info("pre_processing runs on the event loop from now on (%s)", self.reason)

    def blocking_call(self, event: str) -> None:
        """A blocking call made by ``pre_processing``: the pool for good."""
        with self._lock:
            if self.blocking is None:
                self.blocking = event
                self._to_pool(f"pre_processing made a blocking call ({event})")

    def _to_pool(self, why: str) -> None:
        was_inline = self.inline
        self.inline = False
        self.demoted = True
        self.reason = f"in the pool: {why}"
        if was_inline:
            log.warning("pre_processing runs in the thread pool from now on: %s", why)

    def state(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "inline": self.inline,
            "reason": self.reason,
            "records_measured": self.records,
            "mean_record_seconds": round(self.per_record(), 7),
        }
