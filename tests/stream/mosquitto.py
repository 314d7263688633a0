"""A real MQTT broker for the tests: Mosquitto on 127.0.0.1, stopped and started again at will on the same
port with the same persistence folder (retained messages and persistent sessions outlive a restart), and
a subscriber that collects what the broker delivers."""

from __future__ import annotations

import contextlib
import getpass
import json
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as paho
import pytest

HOST = "127.0.0.1"
SKIP_REASON = "mosquitto not installed (bash .ci/run installs it) — this test has NOT run"


def mosquitto_path() -> str | None:
    return shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).is_file()), None
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def wait_until(check: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        time.sleep(0.02)


class Broker:
    """One mosquitto process; `stop` (SIGTERM: it saves its database) and `start` again keep the port."""

    def __init__(self, folder: Path, users: dict[str, str] | None = None) -> None:
        exe = mosquitto_path()
        if exe is None:
            pytest.skip(SKIP_REASON)
        self.exe = exe
        self.folder = folder
        self.port = free_port()
        self.log = folder / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None
        lines = [
            f"listener {self.port} {HOST}",
            "persistence true",
            f"persistence_location {folder}/",
            f"log_dest file {self.log}",
            "log_type all",
            f"user {getpass.getuser()}",  # as root it would switch to "mosquitto", who cannot write here
        ]
        if users:
            passwords = folder / "passwords"
            for i, (user, password) in enumerate(users.items()):
                passwd = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
                flags = ["-b", "-c"] if i == 0 else ["-b"]
                subprocess.run([passwd, *flags, str(passwords), user, password], check=True, timeout=10)
            lines += ["allow_anonymous false", f"password_file {passwords}"]
        else:
            lines.append("allow_anonymous true")
        self.config = folder / "mosquitto.conf"
        self.config.write_text("\n".join(lines) + "\n")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        assert not self.running
        self.proc = subprocess.Popen(
            [self.exe, "-c", str(self.config)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection((HOST, self.port), timeout=0.5).close()
                return
            except OSError as e:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                    self.stop()
                    why = f"mosquitto on {HOST}:{self.port} did not start ({e}): {err}{self.tail()}"
                    raise RuntimeError(why) from None
                time.sleep(0.02)

    def stop(self) -> None:
        """SIGTERM (mosquitto saves retained messages and sessions) and reap it."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()

    def tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n--- mosquitto log ---\n" + self.log.read_text(errors="replace")[-3000:]
        return ""


class Subscriber:
    """Everything under `topic`, QoS 1, as (topic, payload text, retain). With `persistent`, a fixed client
    id and no clean session: the broker keeps its subscription and queues for it across a restart.

    A message the broker sends again with the DUP flag, identical to one that came already, is counted in
    `redelivered` and left out: it is the broker's resend to us of one whose PUBACK it did not get before it
    stopped (QoS 1 is at least once), not a repeat by the publisher, which is what the tests look for."""

    def __init__(
        self, broker: Broker, name: str, *, persistent: bool = True, topic: str = "glanet/#",
        user: str | None = None, password: str | None = None,
    ) -> None:  # fmt: skip
        self.messages: list[tuple[str, str, bool]] = []
        self.redelivered = 0
        self._seen: set[tuple[str, bytes]] = set()
        self._lock = threading.Lock()
        self.topic = topic
        self.subscribed = threading.Event()
        self.client = paho.Client(
            paho.CallbackAPIVersion.VERSION2, client_id=f"test-{name}-{broker.port}",
            clean_session=not persistent, protocol=paho.MQTTv311,
        )  # fmt: skip
        if user is not None:
            self.client.username_pw_set(user, password)
        self.client.reconnect_delay_set(min_delay=0.1, max_delay=0.5)  # type: ignore[arg-type]
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(HOST, broker.port, keepalive=10)
        self.client.loop_start()
        if not self.subscribed.wait(5):
            self.close()
            raise AssertionError(f"subscriber {name}: no SUBACK within 5 s{broker.tail()}")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:  # type: ignore[no-untyped-def]
        # again where the broker forgot us (it would send the retained messages again otherwise)
        if not reason_code.is_failure and not flags.session_present:
            client.subscribe(self.topic, qos=1)

    def _on_message(self, client, userdata, message) -> None:  # type: ignore[no-untyped-def]
        key = (message.topic, message.payload)
        with self._lock:
            if message.dup and key in self._seen:
                self.redelivered += 1
                return
            self._seen.add(key)
            self.messages.append((message.topic, message.payload.decode(), bool(message.retain)))

    def on(self, topic: str) -> list[tuple[str, bool]]:
        """The payloads (with their retain flags) that came on `topic`, in arrival order."""
        with self._lock:
            return [(payload, retain) for t, payload, retain in self.messages if t == topic]

    def json(self, topic: str) -> list[dict[str, object]]:
        return [json.loads(payload) for payload, _ in self.on(topic)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
