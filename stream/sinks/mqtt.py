"""MQTT events: each camera's events and status, published to a broker (Mosquitto, Home Assistant's, the
one Frigate uses), so home automations can act on what the cameras see.

Topics, under a prefix (default "glanet"):
  <prefix>/availability     "online" / "offline", retained; "offline" is also the last will, so a crashed or
                            killed run reads as offline
  <prefix>/<camera>/events  one JSON object per event, `Event.to_dict()` plus "seq": 1, 2, ... per camera,
                            so a consumer can spot a gap (dropped) or a repeat (delivered twice)
  <prefix>/<camera>/status  {"camera", "status", "message", "time"}, retained: the newest status is there
                            for a consumer that connects later

Everything is QoS 1. The broker may go away and come back: paho reconnects on its own, and what was
published meanwhile is held (bounded by `MqttConfig.queue`) and sent after the reconnection, in order.
`write` never waits for the network: it runs on the runtime's sink thread, next to the window and files.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import paho.mqtt.client as paho

from stream.errors import StreamError
from stream.hostport import AddressError, HostPort, parse_host_port

if TYPE_CHECKING:
    from stream.output import Output

log = logging.getLogger(__name__)

DEFAULT_PORT = 1883
PASSWORD_ENV = "GLANET_MQTT_PASSWORD"
AVAILABILITY = "availability"
REMOVED = "removed"  # the status of a camera taken out of the run
TERMINAL = frozenset({"ended", "failed", "stopped", REMOVED})  # statuses after which nothing comes
KEEPALIVE_S = 30  # the broker notices a silently dead client (and sends the will) after 1.5x this
CLOSE_DRAIN_S = 3.0  # how long `close` waits for the broker to take the last messages
MAX_QUEUE = 60000  # paho numbers the messages it holds with 16 bits
_NOT_AUTHORISED = frozenset({134, 135})  # "bad user name or password", "not authorized" (MQTT v3 4 and 5)

# what a message is, for the counters: only events and statuses count as `published`, and only events are
# ever dropped (a status is retained, newest wins: one per camera is held, however long the outage)
_EVENT, _STATUS, _AVAILABILITY = "event", "status", "availability"


class MqttError(StreamError):
    """The broker address is wrong, or the broker cannot be reached or refuses us: one line, no password."""


def parse_address(text: str) -> HostPort:
    """A broker address, HOST or HOST:PORT (an IPv6 address in brackets: [::1]:1883) -> (host, port)."""
    what = f"MQTT broker address {text!r}"
    address = text.strip()
    if "://" in address:
        raise MqttError(f"{what}: give HOST or HOST:PORT, without a scheme such as mqtt://")
    try:
        return parse_host_port(address, form="HOST or HOST:PORT", default_port=DEFAULT_PORT)
    except AddressError as error:
        raise MqttError(f"{what}: {error}") from None


def password_from_env() -> str | None:
    """The broker password from GLANET_MQTT_PASSWORD (not a command-line option: those show in `ps`)."""
    return os.environ.get(PASSWORD_ENV) or None


def _check_topic_prefix(topic: str) -> None:
    if not topic or topic.startswith("/") or topic.endswith("/") or "//" in topic:
        raise MqttError(f"MQTT topic prefix {topic!r}: give levels such as 'glanet' or 'home/glanet'")
    if any(c in topic for c in "+#\0"):
        raise MqttError(f"MQTT topic prefix {topic!r}: '+' and '#' are wildcards, not allowed in a topic")


@dataclass(frozen=True)
class MqttConfig:
    host: str
    port: int = DEFAULT_PORT
    user: str | None = None
    password: str | None = field(default=None, repr=False)  # never shown: repr, logs, errors
    topic: str = "glanet"  # the prefix of every topic
    queue: int = 10000  # the most messages held while the broker is away (further events are dropped)
    connect_timeout_s: float = 10.0
    client_id: str | None = None  # None: a fresh one per run ("glanet-<pid>-<random>")

    def __post_init__(self) -> None:
        if not self.host:
            raise MqttError("MQTT broker host is empty")
        if not 1 <= self.port <= 65535:
            raise MqttError(f"MQTT broker port {self.port} is not in 1..65535")
        _check_topic_prefix(self.topic)
        if not 1 <= self.queue <= MAX_QUEUE:
            raise MqttError(f"MQTT queue {self.queue} must be in 1..{MAX_QUEUE}")
        if not self.connect_timeout_s > 0:
            raise MqttError(f"MQTT connect timeout {self.connect_timeout_s} s must be positive")
        if self.password is not None and self.user is None:
            raise MqttError(f"an MQTT password ({PASSWORD_ENV}) needs a user name (--mqtt-user)")

    @property
    def where(self) -> str:
        return str(HostPort(self.host, self.port))


def _utc_now() -> str:
    now = datetime.datetime.now(datetime.UTC)
    return now.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _level(camera: str) -> str:
    """A camera name as one topic level (names are letters, digits, '_' and '-' already; this is a guard)."""
    name = "".join("_" if c in "/+#\0" else c for c in camera)
    return name or "camera"


@dataclass
class _Held:
    topic: str
    payload: bytes
    retain: bool
    kind: str


class MqttSink:
    """A sink that publishes each camera's events and status changes; make it with `MqttSink.connect`.

    Why it holds messages itself, although paho queues: paho 2.2 keeps a QoS 1 message published while
    disconnected (publish() answers MQTT_ERR_NO_CONN and leaves it in its outgoing messages), but one
    published between the new connection's CONNECT and the broker's CONNACK goes out at once, ahead of the
    older ones paho resends only when the CONNACK comes: out of order. So from a lost connection until the
    reconnection's `on_connect`, messages wait here; `on_connect` takes back what paho still holds
    (`drop_out_messages`, the oldest) and publishes it, then what waited here, in order, before any new one.

    Locks: `_lock` orders publishing (writes, `on_connect`'s flush); it is held while calling paho, so paho's
    callbacks that run under paho's own locks (`on_publish`, `on_disconnect`) never take it: the counters
    have their own `_count` lock, and the connection flag is a plain attribute.
    """

    def __init__(self, config: MqttConfig, client: paho.Client) -> None:
        self.config = config
        self.published = 0  # events and statuses the broker acknowledged
        self.dropped = 0  # events not sent: the queue was full, or still held when closed
        self._client = client
        self._prefix = config.topic
        self._availability = f"{config.topic}/{AVAILABILITY}"
        self._lock = threading.Lock()
        self._count = threading.Condition()
        self._online = False  # connected, and what was held since the last connection is sent
        self._held: deque[_Held] = deque()  # waiting for the broker, oldest first
        self._held_events = 0
        self._unacked: dict[int, str] = {}  # paho's message id -> kind, until the broker acknowledges
        self._early: set[int] = set()  # acknowledged before `_send` had noted the id (another thread)
        self._unacked_data = 0  # events and statuses among `_unacked` (what counts towards `queue`)
        self._seq: dict[str, int] = {}
        self._status: dict[str, tuple[str, str]] = {}  # camera -> (status, message) last published
        self._first = threading.Event()  # the first CONNACK came (or the connection failed)
        self._refusal: str | None = None
        self._outage = False  # a connection was lost and is not back yet
        self._warned_full = False  # once per outage
        self._warned_refused = False  # once per outage
        self._closed = False

    @classmethod
    def connect(cls, config: MqttConfig) -> MqttSink:
        """Connect to the broker and start paho's network thread; MqttError if it cannot be reached within
        `config.connect_timeout_s` or refuses us (bad user name or password)."""
        client_id = config.client_id or f"glanet-{os.getpid()}-{secrets.token_hex(3)}"
        client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=True, protocol=paho.MQTTv311
        )
        if config.user is not None:
            client.username_pw_set(config.user, config.password)
        client.will_set(f"{config.topic}/{AVAILABILITY}", "offline", qos=1, retain=True)
        client.reconnect_delay_set(min_delay=0.5, max_delay=5)  # type: ignore[arg-type]
        client.connect_timeout = config.connect_timeout_s
        client.max_queued_messages_set(0)  # unbounded in paho: the bound is ours (events only, see `write`)
        sink = cls(config, client)
        client.on_connect = sink._on_connect
        client.on_disconnect = sink._on_disconnect
        client.on_publish = sink._on_publish
        deadline = time.monotonic() + config.connect_timeout_s
        where = config.where
        try:
            client.connect(config.host, config.port, keepalive=KEEPALIVE_S)
        except socket.gaierror as e:
            raise MqttError(f"MQTT broker {where}: cannot resolve {config.host!r} ({e.strerror})") from None
        except TimeoutError:
            raise MqttError(f"MQTT broker {where}: no answer within {config.connect_timeout_s:g} s") from None
        except OSError as e:
            raise MqttError(f"cannot reach MQTT broker {where}: {e.strerror or e}") from None
        client.loop_start()
        if not sink._first.wait(max(0.0, deadline - time.monotonic())):
            sink._stop()
            raise MqttError(
                f"MQTT broker {where}: no answer to CONNECT within {config.connect_timeout_s:g} s"
            )
        if sink._refusal is not None:
            sink._stop()
            raise MqttError(f"MQTT broker {where} refused the connection: {sink._refusal}")
        return sink

    @property
    def connected(self) -> bool:
        """Connected to the broker, with what was held during an outage handed over."""
        return self._online

    # --- the Sink protocol -----------------------------------------------------------------------------

    def write(self, output: Output) -> None:
        """Queue the output's events, and its status where it changed; returns without waiting."""
        if self._closed:
            return
        camera = output.camera
        with self._lock:
            if getattr(output, "removed", False):  # the camera's last output: it was taken out of the run
                self._publish_status(camera, REMOVED, "")
            else:
                self._publish_status(camera, output.status.status.value, output.status.message)
            for event in output.events:
                seq = self._seq[camera] = self._seq.get(camera, 0) + 1
                payload = json.dumps({**event.to_dict(), "seq": seq}).encode()
                self._queue(f"{self._prefix}/{_level(camera)}/events", payload, False, _EVENT)

    def idle(self) -> None:
        pass

    def remove(self, camera: str) -> None:
        """A camera taken out of the run: its status becomes "removed" (retained)."""
        with self._lock:
            if not self._closed:
                self._publish_status(camera, REMOVED, "")

    def close(self) -> None:
        """Mark every camera still going as stopped, say "offline", give the broker up to ~3 s to take what
        is still queued (the last events of a run), then disconnect. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for camera, (status, _) in list(self._status.items()):
                if status not in TERMINAL:
                    self._publish_status(camera, "stopped", "")
            self._queue(self._availability, b"offline", True, _AVAILABILITY)
        deadline = time.monotonic() + CLOSE_DRAIN_S
        with self._count:
            while (self._held or self._unacked) and time.monotonic() < deadline:
                self._count.wait(0.05)
            lost = self._held_events + sum(kind == _EVENT for kind in self._unacked.values())
        if lost:
            self.dropped += lost
            log.warning(
                "MQTT broker %s: %d events not delivered (the broker is away)", self.config.where, lost
            )
        self._stop()

    # --- publishing (under `_lock`) --------------------------------------------------------------------

    def _publish_status(self, camera: str, status: str, message: str) -> None:
        if self._status.get(camera) == (status, message):
            return
        self._status[camera] = (status, message)
        payload = {"camera": camera, "status": status, "message": message, "time": _utc_now()}
        self._queue(f"{self._prefix}/{_level(camera)}/status", json.dumps(payload).encode(), True, _STATUS)

    def _queue(self, topic: str, payload: bytes, retain: bool, kind: str) -> None:
        """Send now, or hold while the broker is away; an event over the bound is dropped (counted)."""
        if kind == _EVENT and self._held_events + self._unacked_data >= self.config.queue:
            self.dropped += 1
            if not self._warned_full:
                self._warned_full = True
                log.warning(
                    "MQTT broker %s: %d messages wait for it; further events are dropped until it is back",
                    self.config.where, self.config.queue,
                )  # fmt: skip
            return
        if self._online and not self._held:
            self._send(topic, payload, retain, kind)
            return
        if kind != _EVENT:  # retained, the newest wins: an older one of the same topic need not be sent
            for held in self._held:
                if held.topic == topic:
                    self._held.remove(held)
                    break
        else:
            self._held_events += 1
        self._held.append(_Held(topic, payload, retain, kind))

    def _send(self, topic: str, payload: bytes, retain: bool, kind: str) -> None:
        """Hand one message to paho. If the connection has just gone, paho keeps it (MQTT_ERR_NO_CONN) and
        `_on_connect` takes it back for resending."""
        info = self._client.publish(topic, payload, qos=1, retain=retain)
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):  # not expected: paho is unbounded
            if kind == _EVENT:
                self.dropped += 1
            log.warning("MQTT broker %s: a message to %s was not queued (%s)", self.config.where, topic,
                        paho.error_string(info.rc))  # fmt: skip
            return
        with self._count:
            if info.mid in self._early:  # acknowledged already
                self._early.discard(info.mid)
                self._acknowledged(kind)
            else:
                self._unacked[info.mid] = kind
                self._unacked_data += kind != _AVAILABILITY

    # --- paho's callbacks (its network thread) ---------------------------------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        if reason_code.is_failure:
            refusal = "not authorised (check the user name and GLANET_MQTT_PASSWORD)"
            if reason_code.value not in _NOT_AUTHORISED:
                refusal = str(reason_code).lower()
            if not self._first.is_set():
                self._refusal = refusal
                self._first.set()
            elif not self._warned_refused:
                self._warned_refused = True
                log.warning("MQTT broker %s refused to reconnect: %s; retrying", self.config.where, refusal)
            return
        with self._lock:
            # what paho still holds is older than what waits here: it goes first, with new message ids
            resend = []
            for message in client.drop_out_messages():
                with self._count:
                    kind = self._unacked.pop(message.mid, None)
                    self._unacked_data -= kind not in (None, _AVAILABILITY)
                if kind is not None and message.topic != self._availability:
                    resend.append(_Held(message.topic, message.payload, message.retain, kind))
            self._send(self._availability, b"offline" if self._closed else b"online", True, _AVAILABILITY)
            held, self._held = [*resend, *self._held], deque()
            for message in held:
                self._send(message.topic, message.payload, message.retain, message.kind)
            with self._count:
                self._held_events = 0
                self._count.notify_all()
            self._online = True
            if self._outage:
                log.info("MQTT broker %s: connected again; %d messages resent", self.config.where, len(held))
            self._outage = self._warned_full = self._warned_refused = False
        self._first.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        """Runs under paho's locks (also from inside `publish`): no `_lock` here."""
        was_online, self._online = self._online, False
        if was_online and not self._closed:
            self._outage = True
            log.warning(
                "MQTT broker %s: connection lost (%s); reconnecting, holding up to %d events meanwhile",
                self.config.where, str(reason_code).lower(), self.config.queue,
            )  # fmt: skip

    def _on_publish(self, client, userdata, mid, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        with self._count:
            kind = self._unacked.pop(mid, None)
            if kind is None:
                self._early.add(mid)
            else:
                self._unacked_data -= kind != _AVAILABILITY
                self._acknowledged(kind)
            self._count.notify_all()

    def _acknowledged(self, kind: str) -> None:
        if kind != _AVAILABILITY:
            self.published += 1

    def _stop(self) -> None:
        """Disconnect and end paho's thread, waiting a little: it may be inside a reconnection attempt, which
        ends only at its connect timeout (the thread is a daemon: it does not keep the process alive)."""
        self._online = False
        self._client.disconnect()
        stopper = threading.Thread(target=self._client.loop_stop, name="mqtt-stop", daemon=True)
        stopper.start()
        stopper.join(2.0)
