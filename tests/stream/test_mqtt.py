"""MQTT events against a real Mosquitto on 127.0.0.1 (tests/stream/mosquitto.py): the topics and
payloads, the retained status and availability, the last will of a killed run, an outage of the broker
(nothing lost, out of order or twice), the bound on what is held meanwhile, credentials, a broker that
cannot be reached."""

from __future__ import annotations

import collections
import json
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pytest
from mosquitto import HOST, Broker, Subscriber, free_port, wait_until

from stream.output import Output
from stream.sinks.mqtt import MqttConfig, MqttError, MqttSink, parse_address, password_from_env
from stream.types import Event, Frame, SourceStatus, StatsSnapshot, StatusUpdate

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]


def output(
    camera: str, events: Sequence[Event] = (), status: SourceStatus = SourceStatus.LIVE, message: str = ""
) -> Output:
    frame = Frame(np.zeros((8, 8, 3), np.uint8), 0, 0.0, 0.0, camera=camera)
    return Output(camera, frame, None, False, StatusUpdate(status, message), StatsSnapshot(), list(events))


def event(camera: str, i: int) -> Event:
    kind = "start" if i % 2 == 0 else "end"
    end = None if kind == "start" else i + 0.5
    return Event(
        kind, f"action{i}", i, "rtsp://cam", float(i), end, 0.9, i + 0.25, 10 * i, camera, time.time()
    )


def expected(events: Sequence[Event]) -> list[dict[str, object]]:
    return [{**e.to_dict(), "seq": i} for i, e in enumerate(events, 1)]


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path)
    b.start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def subscribe(broker: Broker) -> Iterator[Callable[..., Subscriber]]:
    made: list[Subscriber] = []

    def make(name: str = "sub", **kwargs: object) -> Subscriber:
        made.append(Subscriber(broker, name, **kwargs))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for sub in made:
        sub.close()


def test_events_status_and_availability_for_two_cameras(broker, subscribe):
    sub = subscribe()
    sink = MqttSink.connect(MqttConfig(HOST, broker.port))
    assert sink.connected
    front = [event("front", i) for i in range(3)]
    back = [event("back", i) for i in range(2)]
    sink.write(output("front", front[:2]))
    sink.write(output("back", back))
    sink.write(output("front", front[2:]))
    sink.write(output("front"))  # no change: no status message
    sink.write(output("front", status=SourceStatus.RECONNECTING, message="no frame for 5 s; retry in 1 s"))
    sink.write(output("side"))
    sink.remove("side")
    wait_until(lambda: len(sub.on("glanet/front/events")) == 3 and len(sub.on("glanet/back/events")) == 2, 5,
               "the events")  # fmt: skip
    assert sub.json("glanet/front/events") == expected(front)
    assert sub.json("glanet/back/events") == expected(back)
    assert not any(retain for _, retain in sub.on("glanet/front/events"))
    wait_until(lambda: len(sub.on("glanet/side/status")) == 2, 5, "side's statuses")
    statuses = sub.json("glanet/front/status")
    assert [(s["camera"], s["status"], s["message"]) for s in statuses] == [
        ("front", "live", ""), ("front", "reconnecting", "no frame for 5 s; retry in 1 s"),
    ]  # fmt: skip
    assert all(str(s["time"]).endswith("Z") and "T" in str(s["time"]) for s in statuses)
    assert [s["status"] for s in sub.json("glanet/side/status")] == ["live", "removed"]
    assert sub.on("glanet/availability") == [("online", False)]

    late = subscribe("late", persistent=False)  # connects afterwards: gets what is retained
    wait_until(lambda: len(late.messages) >= 4, 5, "the retained messages")
    time.sleep(0.2)
    assert late.on("glanet/availability") == [("online", True)]
    assert [retain for _, retain in late.on("glanet/front/status")] == [True]
    assert [s["status"] for s in late.json("glanet/front/status")] == ["reconnecting"]
    assert [s["status"] for s in late.json("glanet/back/status")] == ["live"]
    assert [s["status"] for s in late.json("glanet/side/status")] == ["removed"]
    assert late.on("glanet/front/events") == []  # events are not retained

    sink.write(output("back", status=SourceStatus.ENDED, message="end of file"))
    sink.close()
    sink.close()  # idempotent
    assert not sink.connected
    wait_until(lambda: ("offline", False) in sub.on("glanet/availability"), 5, "offline")
    assert sub.on("glanet/availability") == [("online", False), ("offline", False)]
    # the camera still going is stopped; the ended one and the removed one keep their status
    assert [s["status"] for s in sub.json("glanet/front/status")] == ["live", "reconnecting", "stopped"]
    assert [s["status"] for s in sub.json("glanet/back/status")] == ["live", "ended"]
    assert [s["status"] for s in sub.json("glanet/side/status")] == ["live", "removed"]
    assert sink.published == 5 + 7 and sink.dropped == 0  # 5 events, 7 statuses


_HOLD_OPEN = """
import sys, time
from stream.sinks.mqtt import MqttConfig, MqttSink
sink = MqttSink.connect(MqttConfig("127.0.0.1", int(sys.argv[1])))
print("READY", flush=True)
time.sleep(60)
"""


def test_a_killed_run_reads_offline_by_its_last_will(broker, subscribe):
    sub = subscribe()
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD_OPEN, str(broker.port)], cwd=REPO, stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 20)
        assert ready and proc.stdout.readline().strip() == b"READY", "the sink process did not connect"
        wait_until(lambda: sub.on("glanet/availability") == [("online", False)], 5, "online")
        proc.send_signal(signal.SIGKILL)  # no DISCONNECT: the broker sends the will
        proc.wait(timeout=5)
        wait_until(lambda: len(sub.on("glanet/availability")) == 2, 5, f"the will{broker.tail()}")
        assert sub.on("glanet/availability") == [("online", False), ("offline", False)]
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=5)
        if proc.stdout is not None:
            proc.stdout.close()


def test_an_outage_of_the_broker_loses_nothing_and_keeps_the_order(broker, subscribe, caplog):
    sub = subscribe()
    sink = MqttSink.connect(MqttConfig(HOST, broker.port))
    cameras = ("front", "back")
    sent: dict[str, list[Event]] = {c: [] for c in cameras}

    def burst(n: int) -> None:
        for camera in cameras:
            events = [event(camera, len(sent[camera]) + k) for k in range(n)]
            sent[camera] += events
            sink.write(output(camera, events))

    # and a camera written to all along, every few ms: some of it lands in the reconnection itself
    stream: list[Event] = []
    stop = threading.Event()

    def steady() -> None:
        while not stop.is_set():
            stream.append(event("steady", len(stream)))
            sink.write(output("steady", stream[-1:]))
            time.sleep(0.003)

    writer = threading.Thread(target=steady)
    try:
        burst(5)
        wait_until(lambda: sink.published >= 12, 5, "the first events acknowledged")
        wait_until(lambda: len(sub.messages) >= 13, 5, "the first events delivered")
        writer.start()
        time.sleep(0.2)
        with caplog.at_level(logging.INFO, logger="stream.sinks.mqtt"):
            broker.stop()
            wait_until(lambda: not sink.connected, 5, "the sink sees the broker gone")
            burst(5)
            time.sleep(0.3)
            broker.start()
            burst(5)  # most likely before the sink is back
            back_at = time.monotonic()
            wait_until(lambda: sink.connected, 8, "the sink reconnects")
            time.sleep(0.2)
            stop.set()
            writer.join(5)
            for camera in cameras:
                wait_until(lambda c=camera: len(sub.on(f"glanet/{c}/events")) >= 15, 8, f"{camera}'s events")
            wait_until(lambda: len(sub.on("glanet/steady/events")) >= len(stream), 8, "the steady events")
            assert time.monotonic() - back_at < 8
        time.sleep(0.3)  # a duplicate would come by now
        for camera in cameras:
            assert sub.json(f"glanet/{camera}/events") == expected(sent[camera])  # in order, none twice
        # the steady camera had messages in flight when the broker went: one it took but never sent the
        # PUBACK of (mosquitto logs "Sending PUBACK", then exits) comes again, QoS 1 being at least once.
        # So: every event, in the order of its first arrival, and a repeat only of one of those in flight
        # (paho's window is 20), never one acknowledged.
        seqs = [m["seq"] for m in sub.json("glanet/steady/events")]
        first = list(dict.fromkeys(seqs))
        assert first == list(range(1, len(stream) + 1)), f"{len(seqs)} messages for {len(stream)} events"
        repeated = sorted(seq for seq, n in collections.Counter(seqs).items() if n > 1)
        assert len(repeated) <= 20 and (not repeated or repeated[-1] - repeated[0] < 20), seqs
        assert sink.dropped == 0
        messages = [r.getMessage() for r in caplog.records if r.name == "stream.sinks.mqtt"]
        assert sum("connection lost" in m for m in messages) == 1, messages
        assert sum("connected again" in m for m in messages) == 1, messages
    finally:
        stop.set()
        if writer.is_alive():
            writer.join(5)
        sink.close()


def test_while_the_broker_is_away_at_most_queue_events_are_held(broker, subscribe, caplog):
    sub = subscribe()
    sink = MqttSink.connect(MqttConfig(HOST, broker.port, queue=5))
    try:
        sink.write(output("cam"))
        wait_until(lambda: sink.published == 1 and sub.on("glanet/cam/status"), 5, "the status acknowledged")
        broker.stop()
        wait_until(lambda: not sink.connected, 5, "the sink sees the broker gone")
        events = [event("cam", i) for i in range(20)]
        with caplog.at_level(logging.WARNING, logger="stream.sinks.mqtt"):
            for e in events:
                sink.write(output("cam", [e]))
            sink.write(output("cam", status=SourceStatus.RECONNECTING))  # a status is never dropped
        assert sink.dropped == 15
        warnings = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
        assert len(warnings) == 1, warnings
        broker.start()
        wait_until(lambda: len(sub.on("glanet/cam/events")) >= 5, 8, "the held events")
        wait_until(lambda: len(sub.on("glanet/cam/status")) >= 2, 5, "the held status")
        time.sleep(0.3)
        assert sub.json("glanet/cam/events") == expected(events[:5])  # the oldest are kept
        assert [s["status"] for s in sub.json("glanet/cam/status")] == ["live", "reconnecting"]
        # back to normal: new events go out again (their seq shows the gap)
        sink.write(output("cam", [event("cam", 20)]))
        wait_until(lambda: len(sub.on("glanet/cam/events")) == 6, 5, "an event after the outage")
        assert sub.json("glanet/cam/events")[-1]["seq"] == 21
    finally:
        sink.close()


def test_close_gives_the_broker_a_few_seconds_for_the_last_events(broker, subscribe, caplog):
    sub = subscribe()
    sink = MqttSink.connect(MqttConfig(HOST, broker.port))
    broker.stop()
    wait_until(lambda: not sink.connected, 5, "the sink sees the broker gone")
    events = [event("cam", i) for i in range(2)]
    sink.write(output("cam", events))
    back = threading.Timer(0.3, broker.start)  # comes back while close waits
    back.start()
    try:
        sink.close()
    finally:
        back.join()
    assert sink.dropped == 0 and sink.published == 3  # two events, the status
    wait_until(lambda: len(sub.on("glanet/cam/events")) == 2, 5, "the last events")
    assert sub.json("glanet/cam/events") == expected(events)
    # "live" and "stopped" were both held: only the newest of a retained topic is sent
    wait_until(lambda: sub.on("glanet/cam/status"), 5, "the stopped status")
    time.sleep(0.2)
    assert [s["status"] for s in sub.json("glanet/cam/status")] == ["stopped"]


def test_close_gives_up_on_a_broker_that_stays_away(broker, caplog):
    sink = MqttSink.connect(MqttConfig(HOST, broker.port))
    broker.stop()
    wait_until(lambda: not sink.connected, 5, "the sink sees the broker gone")
    sink.write(output("cam", [event("cam", 0), event("cam", 1)]))
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="stream.sinks.mqtt"):
        sink.close()
    assert 2.5 < time.monotonic() - t0 < 6
    assert sink.dropped == 2 and sink.published == 0
    assert "2 events not delivered" in caplog.text


def test_credentials(tmp_path, caplog):
    password = "s3cret-Pa55"
    broker = Broker(tmp_path, users={"glanet": password})
    broker.start()
    try:
        right = MqttConfig(HOST, broker.port, user="glanet", password=password)
        assert password not in repr(right) and password not in str(right)
        sub = Subscriber(broker, "auth", user="glanet", password=password)
        try:
            sink = MqttSink.connect(right)
            sink.write(output("cam", [event("cam", 0)]))
            sink.close()
            wait_until(lambda: len(sub.on("glanet/cam/events")) == 1, 5, "the event")
        finally:
            sub.close()
        wrong = "wrong-Pa55word"
        with caplog.at_level(logging.DEBUG), pytest.raises(MqttError) as info:
            MqttSink.connect(MqttConfig(HOST, broker.port, user="glanet", password=wrong))
        message = str(info.value)
        assert "not authorised" in message and "\n" not in message
        assert wrong not in message and password not in message
        assert wrong not in caplog.text and password not in caplog.text
        with pytest.raises(MqttError, match="not authorised"):
            MqttSink.connect(MqttConfig(HOST, broker.port))  # anonymous, where it is not allowed
    finally:
        broker.stop()


def test_password_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("GLANET_MQTT_PASSWORD", "pw")
    assert password_from_env() == "pw"
    monkeypatch.setenv("GLANET_MQTT_PASSWORD", "")
    assert password_from_env() is None
    monkeypatch.delenv("GLANET_MQTT_PASSWORD")
    assert password_from_env() is None
    with pytest.raises(MqttError, match="needs a user name"):
        MqttConfig(HOST, password="pw")


def test_an_unreachable_broker_is_one_line_within_the_timeout():
    port = free_port()  # nobody listens there
    t0 = time.monotonic()
    with pytest.raises(MqttError) as info:
        MqttSink.connect(MqttConfig(HOST, port, connect_timeout_s=2.0))
    assert time.monotonic() - t0 < 2.5
    assert f"{HOST}:{port}" in str(info.value) and "\n" not in str(info.value)


def test_a_broker_that_never_answers_times_out():
    with socket.socket() as silent:  # accepts TCP (the kernel does), never says CONNACK
        silent.bind((HOST, 0))
        silent.listen(1)
        t0 = time.monotonic()
        with pytest.raises(MqttError, match="no answer") as info:
            MqttSink.connect(MqttConfig(HOST, silent.getsockname()[1], connect_timeout_s=1.0))
        assert time.monotonic() - t0 < 4.0  # 1 s, and the stop of paho's thread
        assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "address"),
    [
        ("localhost", ("localhost", 1883)),
        ("broker.lan:1884", ("broker.lan", 1884)),
        (" 10.0.0.2:8883 ", ("10.0.0.2", 8883)),
        ("[::1]:1883", ("::1", 1883)),
        ("[fe80::1]", ("fe80::1", 1883)),
        ("::1", ("::1", 1883)),
        ("h:65535", ("h", 65535)),
        ("h:1", ("h", 1)),
    ],
)
def test_parse_address(text, address):
    assert parse_address(text) == address


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "host is empty"),
        (":1883", "host is empty"),
        ("[]:1883", "not an IPv6"),
        ("host:", "not a number"),
        ("host:abc", "not a number"),
        ("host:-1", "not a number"),
        ("host:0", "not in 1..65535"),
        ("host:65536", "not in 1..65535"),
        ("[::1]x", "expected ':PORT'"),
        ("[::1", "no ']'"),
        ("mqtt://host:1883", "without a scheme"),
        ("a:b:c:z", "not an IPv6"),
        ("user@host", "not a host name"),
    ],
)
def test_parse_address_rejects(text, why):
    with pytest.raises(MqttError, match=why) as info:
        parse_address(text)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("topic", ["", "/glanet", "glanet/", "a//b", "glanet/#", "home/+/cams"])
def test_a_bad_topic_prefix_is_refused(topic):
    with pytest.raises(MqttError, match="MQTT topic prefix"):
        MqttConfig(HOST, topic=topic)


@pytest.mark.timeout(180)
def test_run_camera_publishes_its_events_file_to_the_broker(broker, subscribe, tmp_path):
    """The whole path: run_camera.py --mqtt publishes each event of its events file, in order, once; a
    lone unnamed source is named after itself (demo) in the topics and the events."""
    root = Path(__file__).resolve().parents[2]
    sub = subscribe("e2e", topic="site1/#")
    events = tmp_path / "events.jsonl"
    proc = subprocess.run(
        [sys.executable, str(root / "run_camera.py"), "--source", "demo", "--fast", "--headless",
         "--max-frames", "450", "--events", str(events), "--mqtt", f"127.0.0.1:{broker.port}",
         "--mqtt-topic", "site1"],
        capture_output=True, text=True, timeout=170, cwd=root,
        env={**os.environ, "GLANET_CACHE_DIR": str(tmp_path / "cache")},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(x) for x in events.read_text().splitlines()]
    assert lines, "the demo fired no event in 450 frames"
    assert {e["camera"] for e in lines} == {"demo"}
    wait_until(lambda: len(sub.json("site1/demo/events")) >= len(lines), 10, "the events on the broker")
    got = sub.json("site1/demo/events")
    assert [{k: v for k, v in e.items() if k != "seq"} for e in got] == lines
    assert [e["seq"] for e in got] == list(range(1, len(lines) + 1))
    statuses = [json.loads(p) for p, _ in sub.on("site1/demo/status")]
    assert (
        statuses[-1]["status"] in ("stopped", "ended")
        and [p for p, _ in sub.on("site1/availability")][-1] == "offline"
    )
