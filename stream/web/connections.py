"""The web view's connections, bounded so that no number of sockets, however slow, takes the run down.

What uvicorn 0.55 (its h11 protocol) enforces by itself: a request head of at most
`h11_max_incomplete_event_size` bytes, and `timeout_keep_alive` seconds of silence after a response. What
it does not: a connection that never sends a byte, or sends its head one byte a second (Slowloris), stays
open for good (each byte resets the keep-alive timer, and there is no timer before the first request); and
its `limit_concurrency` answers 503 only once a request has arrived, after the socket was accepted, so idle
sockets still pile up. A process holds 1024 files by default: 1100 idle sockets used them all, and the
next camera, model file or lazy import failed with EMFILE and ended the run.

`GuardedH11Protocol` adds, per connection:
- a head deadline: from the moment a connection opens or its last response is sent, the next request's
  whole head must arrive within `head_timeout_s`, whatever arrives meanwhile, else it is closed;
- a write deadline: a client that takes none of its response for `write_stall_s` (the send buffer over
  its high-water mark all that time) is cut. Without it a client that pipelines requests for big answers
  and never reads holds its connection busy for good: a few hundred of them and every new connection,
  a health check's too, was refused;
- a close deadline: a connection closed with data still unsent (its client reads nothing) is aborted
  `CLOSE_GRACE_S` later, since closing waits for the data to go and would hold its file for good;
- a cap on open connections. Over it, the connection idle the longest (no request under way: waiting for
  a head, or kept alive) is dropped to make room, else the one whose client has taken nothing for the
  longest (at least `STALLED_S`); only where every connection is busy and taking its answer is the new
  one refused (503, closed at once). So a flood of idle, slow or stalled sockets cannot keep out a client
  that sends its request, such as a health check.
Refusals and closings are logged, one line per `LOG_EVERY_S` at most. `connection_cap` sizes the cap from
the file limit (raised first to the hard limit where allowed), leaving room for the cameras, model files
and logs, and for the connections accepted in one go before any is looked at.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import resource
import time
from dataclasses import dataclass, field

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

HEAD_TIMEOUT_S = 10.0  # a request line and headers take milliseconds; a modem took a second
WRITE_STALL_S = 15.0  # a client that takes nothing of its answer for this long is gone, or hostile
STALLED_S = 1.0  # taking nothing for this long: a connection to drop when the cap is reached
CLOSE_GRACE_S = 2.0  # a closed connection's unsent data gets this long to go before it is aborted
SWEEP_S = 1.0  # how often the write and close deadlines are looked at
IDLE_TIMEOUT_S = 5  # uvicorn's timeout_keep_alive: silence after a response, before the connection closes
MAX_HEAD_BYTES = 16 * 1024  # h11's own default: a request head (line and headers) is under 1 KiB here
ACCEPT_BURST = 64  # connections asyncio accepts in a row at one wake-up (its `backlog`), before any is seen
FILES_PER_CAMERA = 8  # a camera's sockets, its video file, its reader's pipes (a few in fact)
FILES_RESERVED = 128  # model files, logs, lazy imports, the events file, MQTT, thread pools' pipes
MAX_CONNECTIONS = 4096  # a bound even where the file limit is large
MIN_CONNECTIONS = 16
FILE_LIMIT_CEILING = 1 << 16  # the soft limit raised at most to this (a hard limit may be "unlimited")
LOG_EVERY_S = 10.0


def raise_file_limit() -> int:
    """Raise the soft limit of open files to the hard one (at most FILE_LIMIT_CEILING) where allowed; the
    soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = FILE_LIMIT_CEILING if hard == resource.RLIM_INFINITY else min(hard, FILE_LIMIT_CEILING)
    if soft != resource.RLIM_INFINITY and soft < target:
        with contextlib.suppress(ValueError, OSError):  # not allowed: the cap is sized from what there is
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def open_files() -> int:
    """Files this process has open now (Linux; elsewhere a guess)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 64


def connection_cap(file_limit: int, open_now: int, max_cameras: int) -> int:
    """The most connections at once: what the file limit leaves once the files open now, every camera the
    run may hold, the reserve and one burst of accepted connections are counted."""
    spare = file_limit - open_now - FILES_PER_CAMERA * max_cameras - FILES_RESERVED - ACCEPT_BURST
    return max(MIN_CONNECTIONS, min(MAX_CONNECTIONS, spare))


@dataclass
class ConnectionGuard:
    """One server's connection limits and what they turned away (for the log line)."""

    max_connections: int
    head_timeout_s: float = HEAD_TIMEOUT_S
    write_stall_s: float = WRITE_STALL_S
    refused: int = 0  # new connections refused: every one open was busy
    evicted: int = 0  # idle or stalled connections dropped to make room
    timed_out: int = 0  # connections that did not send a request head in time
    stalled: int = 0  # connections cut at the write deadline, or aborted with their data unsent
    _logged_at: float = field(default=0.0, repr=False)
    _logged: tuple[int, int, int] = field(default=(0, 0, 0), repr=False)
    _sweep: asyncio.TimerHandle | None = field(default=None, repr=False)
    _pending: asyncio.TimerHandle | None = field(default=None, repr=False)  # a line held back by the rate

    def protocol(self) -> type[GuardedH11Protocol]:
        """uvicorn's `Config(http=...)`: the protocol class bound to this guard."""
        return type("GuardedH11Protocol", (GuardedH11Protocol,), {"guard": self})

    def note(self) -> None:
        """One log line of what was dropped and refused, LOG_EVERY_S at most: what comes sooner is told
        when that time is up (a burst just after a line is never left untold)."""
        now = time.monotonic()
        if now - self._logged_at < LOG_EVERY_S:
            if self._pending is None and self._counts() != self._logged:
                with contextlib.suppress(RuntimeError):  # not on the server's loop: told at the next one
                    wait = self._logged_at + LOG_EVERY_S - now
                    self._pending = asyncio.get_running_loop().call_later(wait, self._told_late)
            return
        refused, evicted, stalled = (a - b for a, b in zip(self._counts(), self._logged, strict=True))
        if refused or evicted:
            log.warning(
                "web view: %d connections at the cap of %d: %d idle or stalled ones dropped and %d new ones "
                "refused since the last such line",
                self.max_connections, self.max_connections, evicted, refused,
            )  # fmt: skip
        elif stalled:
            log.warning(
                "web view: %d connections cut since the last such line: their clients took nothing of "
                "their answers for %g s",
                stalled, self.write_stall_s,
            )  # fmt: skip
        else:
            return
        self._logged_at, self._logged = now, self._counts()

    def _told_late(self) -> None:
        self._pending = None
        self.note()

    def _counts(self) -> tuple[int, int, int]:
        return self.refused, self.evicted, self.stalled

    def watch(self, loop: asyncio.AbstractEventLoop, connections: set) -> None:
        """Look at `connections`' write and close deadlines every SWEEP_S while there are any."""
        if self._sweep is None:
            self._sweep = loop.call_later(SWEEP_S, self._look, loop, connections)

    def _look(self, loop: asyncio.AbstractEventLoop, connections: set) -> None:
        self._sweep = None
        now = time.monotonic()
        for connection in list(connections):
            if isinstance(connection, GuardedH11Protocol):
                connection.check_deadlines(now)
        if connections:
            self.watch(loop, connections)


_REFUSED_BODY = json.dumps({"error": "too many connections to the web view: try again shortly"}).encode()
_REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\n"
    b"connection: close\r\ncontent-length: " + str(len(_REFUSED_BODY)).encode() + b"\r\n\r\n" + _REFUSED_BODY
)


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the head deadline and the connection cap of the module's docstring."""

    guard: ConnectionGuard  # set on the class `ConnectionGuard.protocol()` makes

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def, override]
        super().connection_made(transport)
        self._deadline: object | None = None
        self._idle_since = time.monotonic()
        self._stalled_since: float | None = None  # writes paused (over the high-water mark) since
        self._closing_since: float | None = None
        self.guard.watch(self.loop, self.connections)
        if len(self.connections) > self.guard.max_connections and not self._make_room():
            self.guard.refused += 1
            self.guard.note()
            self.connections.discard(self)
            transport.write(_REFUSED)
            transport.close()
            return
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._busy():
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # may start a pipelined request
        if not self._busy() and not self.transport.is_closing():
            self._idle_since = time.monotonic()
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def pause_writing(self) -> None:
        super().pause_writing()
        self._stalled_since = time.monotonic()

    def resume_writing(self) -> None:
        super().resume_writing()
        self._stalled_since = None

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request h11 cannot parse (a head over the size cap...), as JSON."""
        body = json.dumps({"error": f"bad HTTP request: {msg}"}).encode()
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        response = h11.Response(status_code=400, headers=headers, reason=b"Bad Request")
        for event in (response, h11.Data(data=body), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event) or b"")
        self.transport.close()

    # -- the head deadline and the cap -------------------------------------------------------------------
    def _busy(self) -> bool:
        """A request is under way: its head arrived and its response is not all sent."""
        return self.cycle is not None and not self.cycle.response_complete

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.guard.head_timeout_s, self._head_too_late)

    def _disarm(self) -> None:
        deadline = getattr(self, "_deadline", None)
        if deadline is not None:
            deadline.cancel()  # type: ignore[attr-defined]
            self._deadline = None

    def _head_too_late(self) -> None:
        self._deadline = None
        if not self._busy() and not self.transport.is_closing():
            self.guard.timed_out += 1
            self._close_idle()

    def _close_idle(self) -> None:
        """Close at once: gracefully where nothing is left to send, else dropped (an abort)."""
        if self.conn.our_state is not h11.ERROR:
            with contextlib.suppress(h11.LocalProtocolError):
                self.conn.send(h11.ConnectionClosed())
        if self.transport.get_write_buffer_size():
            self.transport.abort()  # closing would wait for a client that reads nothing
        else:
            self.transport.close()

    def _stalled_for(self, now: float) -> float:
        return now - self._stalled_since if self._stalled_since is not None else 0.0

    def check_deadlines(self, now: float) -> None:
        """The write deadline (a stalled client) and the close deadline (a closed one, data unsent)."""
        if self.transport.is_closing():
            if self._closing_since is None:
                self._closing_since = now
            elif now - self._closing_since >= CLOSE_GRACE_S:
                self.guard.stalled += 1
                self.guard.note()
                self.transport.abort()
        elif self._stalled_for(now) >= self.guard.write_stall_s:
            self.guard.stalled += 1
            self.guard.note()
            self.transport.abort()  # the response under way ends (uvicorn's connection_lost)

    def _make_room(self) -> bool:
        """Drop the connection idle the longest (not this one), else the one stalled the longest (for at
        least STALLED_S); False where every other one is busy and its client taking its answer."""
        others = [
            c
            for c in self.connections
            if isinstance(c, GuardedH11Protocol) and c is not self and not c.transport.is_closing()
        ]
        now = time.monotonic()
        idle = [c for c in others if not c._busy()]
        stalled = [c for c in others if c._busy() and c._stalled_for(now) >= STALLED_S]
        if idle:
            min(idle, key=lambda c: c._idle_since)._close_idle()
        elif stalled:
            max(stalled, key=lambda c: c._stalled_for(now)).transport.abort()
        else:
            return False
        self.guard.evicted += 1
        self.guard.note()
        return True
