"""The web view and HTTP API of a run (`run_camera.py --serve [HOST:]PORT`): Starlette on uvicorn, in a
thread of the same process.

    /                                 the page: a tile per camera, the events, cameras added and removed
    /cameras/<name>/stream.mjpg       MJPEG with the overlay's text (?attention=sa|la|se|none, ?fps= a cap)
    /cameras/<name>/snapshot.jpg      the newest picture, heat map and box (?text=1: with the text;
                                      ?after=N&wait=S: once it is newer than N)
    /api/cameras                      GET the cameras; POST {"name", "source", ...} adds one
    /api/cameras/<name>               GET one; DELETE removes it
    /api/events?since=ID&limit=N      recent events, oldest first, each with its id (&before=ID: those
                                      under it, a page further back; &camera=NAME: that camera's)
    /api/events/<id>/snapshot.jpg     a small picture of the event's peak frame (the last 1000 events')
    /api/events/stream                Server-Sent Events, one per event as it fires (resumes on Last-Event-ID)
    /api/info                         the model, its maps, the limits of this server
    /healthz                          200 while the server runs (no token needed)
    /metrics                          Prometheus text format

Bound to 127.0.0.1 unless told otherwise; any other address needs a token, checked on every request but
/healthz. Every request passes `gate.RequestGate` first (its Host is one of this server's names, a change
comes from this server's page or carries the token, a body is JSON and small); the sources the API adds
pass `policy.SourcePolicy`; the connections are bounded by `connections.GuardedH11Protocol`. Every error is
a JSON object {"error": "..."} with its status code; no traceback leaves the server, and no response, page
or log line holds a source's credentials (sources are shown redacted).
"""

from __future__ import annotations

import asyncio
import http
import ipaddress
import json
import logging
import math
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import numpy as np
import uvicorn
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from stream.errors import StreamError
from stream.runtime.loop import Run
from stream.runtime.spec import CameraSpec
from stream.sources.cameras import CameraConfig, camera_from_table, source_kind
from stream.types import CameraStatus, Prediction, SourceStatus
from stream.web.connections import (
    ACCEPT_BURST,
    IDLE_TIMEOUT_S,
    MAX_HEAD_BYTES,
    ConnectionGuard,
    connection_cap,
    open_files,
    raise_file_limit,
)
from stream.web.gate import MAX_BODY, HostRule, RequestGate
from stream.web.hub import WebHub
from stream.web.options import ServeError, ServeOptions, bind
from stream.web.policy import REFUSED_STATUS, SourcePolicy, SourceRefused

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
ENCODE_THREADS = 3
BOUNDARY = "glanetframe"
BODY_TIMEOUT_S = 10.0  # a camera's JSON is a few hundred bytes
MAX_JSON_DEPTH = 8  # a camera is one flat object
MAX_VIEWERS = 128  # MJPEG streams, SSE clients and snapshots waiting for a newer picture, at once


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class WebServer:
    """The routes over a running Run (in this process or a cluster's) and its WebHub; `start()` serves in a
    thread, `stop()` ends."""

    def __init__(
        self,
        app: Run,
        hub: WebHub,
        options: ServeOptions,
        make_camera: Callable[[CameraConfig], CameraSpec],
        sock: socket.socket | None = None,
        model: dict[str, Any] | None = None,
    ) -> None:
        self.app, self.hub, self.options = app, hub, options
        self.make_camera = make_camera  # a camera table's config -> the spec the runtime takes
        self.model = model or {}
        self.sock = sock
        self.started_at = time.time()
        self.server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.routes = self._routes()
        self._encoders: anyio.CapacityLimiter | None = None
        self.policy = SourcePolicy(options.allow_files, options.allow_private, options.allow_webcams)
        self.guard: ConnectionGuard | None = None
        self.max_viewers = MAX_VIEWERS
        self.viewers = 0  # of max_viewers: counted on the event loop only
        self._adding = asyncio.Lock()  # the camera limit's check and the add, as one step

    # -- lifecycle ---------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        host, port = self.address
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"

    @property
    def address(self) -> tuple[str, int]:
        if self.sock is not None:
            name = self.sock.getsockname()
            return self.options.host, name[1]
        return self.options.host, self.options.port

    def start(self, timeout: float = 10.0) -> None:
        if self.sock is None:
            self.sock = bind(self.options.host, self.options.port)
        file_limit = raise_file_limit()
        self.guard = ConnectionGuard(connection_cap(file_limit, open_files(), self.options.max_cameras))
        self.max_viewers = max(1, min(MAX_VIEWERS, self.guard.max_connections // 2))
        log.info(
            "web view: at most %d connections and %d viewers (open files limit %d)",
            self.guard.max_connections, self.max_viewers, file_limit,
        )  # fmt: skip
        try:
            any_address = ipaddress.ip_address(self.options.host).is_unspecified
        except ValueError:
            any_address = False
        hosts = HostRule(self.options.host_names(), self.address[1], any_address)
        config = uvicorn.Config(
            RequestGate(self.routes, self.options.token, hosts, MAX_BODY),
            log_level="warning",
            access_log=False,  # a URL's ?token= would be logged
            lifespan="off",
            timeout_graceful_shutdown=2,
            ws="none",
            http=self.guard.protocol(),
            timeout_keep_alive=IDLE_TIMEOUT_S,
            h11_max_incomplete_event_size=MAX_HEAD_BYTES,
            backlog=ACCEPT_BURST,
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._serve, name="glanet-web", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ServeError(f"the web view did not start on {self.url}: {self._error or 'timed out'}")
            time.sleep(0.02)

    def _serve(self) -> None:
        assert self.server is not None and self.sock is not None
        server, sock = self.server, self.sock

        async def main() -> None:
            self._encoders = anyio.CapacityLimiter(ENCODE_THREADS)
            loop = asyncio.get_running_loop()
            loop.set_exception_handler(_loop_error)
            self.hub.attach(loop)  # the sink wakes viewers and SSE clients on it
            await server.serve(sockets=[sock])

        try:
            asyncio.run(main())
        except BaseException as error:  # reported by start(); uvicorn exits with SystemExit on failure
            self._error = error

    def stop(self) -> None:
        self.hub.close()  # ends the MJPEG streams and the SSE clients, so shutdown need not wait
        if self.server is not None:
            self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        if self.sock is not None:
            self.sock.close()
        self.policy.close()

    # -- routes ------------------------------------------------------------------------------------------
    def _routes(self) -> Starlette:
        routes = [
            Route("/", self.page),
            Route("/healthz", self.healthz),
            Route("/metrics", self.metrics),
            Route("/api/info", self.info),
            Route("/api/cameras", self.list_cameras, methods=["GET"]),
            Route("/api/cameras", self.add_camera, methods=["POST"]),
            Route("/api/cameras/{name}", self.get_camera, methods=["GET"]),
            Route("/api/cameras/{name}", self.remove_camera, methods=["DELETE"]),
            Route("/api/events", self.events),
            Route("/api/events/stream", self.event_stream),
            Route("/api/events/{event_id:int}/snapshot.jpg", self.event_snapshot),
            Route("/cameras/{name}/stream.mjpg", self.mjpeg),
            Route("/cameras/{name}/snapshot.jpg", self.snapshot),
            Mount("/static", StaticFiles(directory=STATIC), name="static"),
        ]
        app = Starlette(
            routes=routes,
            exception_handlers={HTTPException: self._http_error, Exception: self._server_error},
        )
        app.state.hub = self.hub
        return app

    async def _http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        messages = {404: f"no such page: {request.url.path}", 405: f"{request.method} is not allowed here"}
        default = http.HTTPStatus(exc.status_code).phrase
        message = messages.get(exc.status_code, default) if exc.detail == default else str(exc.detail)
        return _error(exc.status_code, message, exc.headers)

    async def _server_error(self, request: Request, exc: Exception) -> Response:
        log.error("web view: %s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        return _error(500, "internal error (see the server's log)")

    async def page(self, request: Request) -> Response:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

    async def healthz(self, request: Request) -> Response:
        return JSONResponse(
            {"status": "ok", "cameras": len(self.app.statuses()), "stopping": self.app.stopping}
        )

    async def info(self, request: Request) -> Response:
        return JSONResponse(
            {
                **self.model,
                "maps": list(self.hub.modes),
                "attention": self.app.view.attention,
                "max_cameras": self.options.max_cameras,
                "max_fps": self.options.max_fps,
                "allow_files": self.options.allow_files,
                "allow_webcams": self.options.allow_webcams,
                "allow_private": self.options.allow_private,
                "max_connections": self.guard.max_connections if self.guard is not None else None,
                "max_viewers": self.max_viewers,
                "started": self.started_at,
            }
        )

    def _camera_json(self, cam: CameraStatus) -> dict[str, Any]:
        snap = cam.stats
        prediction = cam.last_prediction
        top = prediction.top(1)[0] if prediction is not None else None
        last = next((e for e in reversed(self.hub.events) if e["camera"] == cam.name), None)
        tile = self.hub.tile(cam.name)
        return {
            "name": cam.name,
            "source": cam.source,  # redacted: no user, password or query value
            "status": snap.status.value,
            "message": snap.status_message,
            "fps": _finite(snap.fps.get("model", 0.0)),
            "capture_fps": _finite(snap.fps.get("capture", 0.0)),
            "latency_p95_ms": _finite(snap.latency_p95_ms),
            "frames": cam.frames,
            "predictions": cam.predictions,
            "reused": cam.reused,  # predictions on a still scene: the last encoded features reused
            "reconnects": snap.reconnects,
            "attempt": snap.attempt,  # while reconnecting
            "retry_at": snap.retry_at,  # time.time() of the next attempt, while reconnecting with a wait
            "top1": {"label": top[0], "confidence": round(top[1], 4)} if top else None,
            "warm": prediction.warm if prediction is not None else False,
            "last_event": last,
            "has_picture": tile is not None and tile.output is not None,
            "paused": self.hub.paused.is_set(),
            **_prediction_json(prediction),
            "fps_stages": {k: _finite(v) for k, v in snap.fps.items()},
            "latency_p50_ms": _finite(snap.latency_p50_ms),
        }

    def _find(self, name: str) -> CameraStatus:
        cam = self.app.status(name)
        if cam is None:
            raise HTTPException(404, f"no camera named {name!r}")
        return cam

    async def list_cameras(self, request: Request) -> Response:
        return JSONResponse([self._camera_json(c) for c in self.app.statuses()])

    async def get_camera(self, request: Request) -> Response:
        return JSONResponse(self._camera_json(self._find(request.path_params["name"])))

    async def add_camera(self, request: Request) -> Response:
        """The checks in the order that tells an attacker least: the body (size, JSON, shape), the table's
        keys and ranges, the source's kind (a file refused before the disk is looked at), the source
        parsed, its addresses, then the limit and the add under one lock (concurrent adds never pass it)."""
        table = await _read_json(request)
        if not isinstance(table, dict):
            return _error(400, 'give one JSON object: {"name": "...", "source": "..."}')
        try:
            config = camera_from_table(table, "camera")
            self.policy.check_kind(source_kind(config.source))
            spec = await anyio.to_thread.run_sync(self.make_camera, config)
            self.policy.check_kind(spec.source.kind)
            if spec.source.kind == "network":
                await self.policy.check_network(config.source)
        except SourceRefused as refused:
            return _error(REFUSED_STATUS, str(refused))
        except (StreamError, ValueError) as error:
            return _error(400, str(error))
        async with self._adding:
            if len(self.app.statuses()) >= self.options.max_cameras:
                return _error(
                    409, f"this run holds at most {self.options.max_cameras} cameras (--serve-max-cameras)"
                )
            try:
                cam = await anyio.to_thread.run_sync(self.app.add_camera, spec)
            except ValueError as error:
                status = 409 if "exists" in str(error) else 503
                return _error(status, str(error))
        return JSONResponse(self._camera_json(cam), status_code=201)

    async def remove_camera(self, request: Request) -> Response:
        name = request.path_params["name"]
        self._find(name)
        if not await anyio.to_thread.run_sync(self.app.remove_camera, name):
            raise HTTPException(404, f"no camera named {name!r}")
        return JSONResponse({"removed": name})

    async def events(self, request: Request) -> Response:
        since = _int_param(request, "since", 0, 0)
        limit = _int_param(request, "limit", 100, 1, 1000)
        before = _int_param(request, "before", -1, 1)
        camera = request.query_params.get("camera") or None
        events = self.hub.events_since(since, limit, None if before < 0 else before, camera)
        return JSONResponse(events)

    async def event_snapshot(self, request: Request) -> Response:
        event_id = request.path_params["event_id"]
        data = self.hub.thumbnail(event_id)
        if data is None:
            raise HTTPException(404, f"no picture of event {event_id}: unknown, or no longer kept")
        # not cached: ids start again at 1 in the next run
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    # -- viewers: MJPEG streams, SSE clients and waiting snapshots hold a connection each, so at most
    # max_viewers of them at once (half the connection cap at most: there is room for other requests)
    def _admit_viewer(self) -> None:
        if self.viewers >= self.max_viewers:
            message = f"this server has {self.max_viewers} viewers already: try again later"
            raise HTTPException(503, message, {"Retry-After": "5"})
        self.viewers += 1

    def _viewer_left(self) -> None:
        self.viewers -= 1

    async def event_stream(self, request: Request) -> Response:
        resume = request.headers.get("last-event-id")
        since = (
            _int_text(resume, "Last-Event-ID")
            if resume
            else _int_param(request, "since", self.hub.last_event_id, 0)
        )

        async def stream() -> AsyncIterator[str]:
            queue = self.hub.subscribe()  # before the backlog: nothing falls between them
            sent = since
            try:
                yield "retry: 2000\n\n"
                for record in self.hub.events_since(since):
                    sent = record["id"]
                    yield _sse(record)
                while not self.hub.closed:
                    try:
                        record = await asyncio.wait_for(queue.get(), 15.0)
                    except TimeoutError:
                        yield ": keep-alive\n\n"
                        continue
                    if record is None:
                        break
                    if record["id"] > sent:
                        sent = record["id"]
                        yield _sse(record)
            finally:
                self.hub.unsubscribe(queue)

        self._admit_viewer()
        return _ViewerResponse(
            stream(),
            self._viewer_left,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
        )

    def _view_params(self, request: Request) -> tuple[str, str, float]:
        name = request.path_params["name"]
        self._find(name)
        attention = request.query_params.get("attention") or self.app.view.attention
        if attention not in self.hub.modes:
            raise HTTPException(400, f"attention {attention!r}: give one of {', '.join(self.hub.modes)}")
        fps = _float_param(request, "fps", self.options.max_fps, 0.1, math.inf)
        return name, attention, min(fps, self.options.max_fps)

    async def _picture(self, name: str, attention: str, text: bool = False) -> tuple[int, bytes] | None:
        hit = self.hub.cached_jpeg(name, attention, text)
        if hit is not None:
            return hit
        # a few threads do: encoding holds the camera's lock, so more would only wait (and each thread
        # costs memory: a one-off probe with anyio's default 40 grew ~250 MB more under 50 viewers)
        return await anyio.to_thread.run_sync(self.hub.jpeg, name, attention, text, limiter=self._encoders)

    async def snapshot(self, request: Request) -> Response:
        name, attention, _ = self._view_params(request)
        after = _int_param(request, "after", -1, -1)
        wait = _float_param(request, "wait", 0.0, 0.0, 10.0)
        tile = self.hub.tile(name)
        if after >= 0 and wait > 0 and self.viewers < self.max_viewers:  # else answered now, not waited for
            self.viewers += 1
            try:
                seq = await self.hub.newer(name, after, wait)
            finally:
                self.viewers -= 1
            if seq is not None and seq <= after:
                return Response(status_code=204, headers={"Cache-Control": "no-store"})
        text = request.query_params.get("text") == "1"  # the page writes the text itself; a player may not
        picture = await self._picture(name, attention, text) if tile is not None else None
        if picture is None:
            return _error(503, f"camera {name!r} has no picture yet", {"Retry-After": "1"})
        seq, data = picture
        return Response(
            data, media_type="image/jpeg", headers={"Cache-Control": "no-store", "X-Frame-Seq": str(seq)}
        )

    async def mjpeg(self, request: Request) -> Response:
        name, attention, fps = self._view_params(request)
        tile = self.hub.tile(name)

        async def stream() -> AsyncIterator[bytes]:
            interval, last = 1.0 / fps, -1
            if tile is not None:
                tile.viewers += 1
            try:
                while True:
                    started = time.monotonic()
                    seq = await self.hub.newer(name, last, 1.0)
                    if seq is None:  # the camera was removed, or the server stops
                        return
                    if seq == last:
                        continue
                    picture = await self._picture(name, attention, text=True)  # players: the text burned in
                    if picture is None:
                        await asyncio.sleep(0.1)
                        continue
                    last, data = picture
                    head = (
                        f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}\r\n"
                        f"X-Frame-Seq: {last}\r\n\r\n"
                    )
                    yield head.encode() + data + b"\r\n"
                    rest = interval - (time.monotonic() - started)
                    if rest > 0:
                        await asyncio.sleep(rest)
            finally:
                if tile is not None:
                    tile.viewers -= 1

        self._admit_viewer()
        return _ViewerResponse(
            stream(),
            self._viewer_left,
            media_type=f"multipart/x-mixed-replace; boundary={BOUNDARY}",
            headers={"Cache-Control": "no-store"},
        )

    async def metrics(self, request: Request) -> Response:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Metrics(self))
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4; charset=utf-8")


class _Metrics:
    """The run's numbers per camera, read when /metrics is asked (a Prometheus collector)."""

    def __init__(self, server: WebServer) -> None:
        self.server = server

    def collect(self) -> Any:
        app, hub = self.server.app, self.server.hub
        cams = app.statuses()
        counters = [
            ("glanet_frames", "source frames through the loop", lambda c: c.frames),
            ("glanet_frames_captured", "frames decoded from the source", lambda c: c.frames_captured),
            ("glanet_predictions", "predictions made", lambda c: c.predictions),
            (
                "glanet_frames_reused",
                "model frames that reused the last encoded features (still scene)",
                lambda c: c.reused,
            ),
            (
                "glanet_frames_dropped",
                "frames dropped by the capture buffer (live)",
                lambda c: c.dropped,
            ),
            ("glanet_decode_errors", "frames that did not decode", lambda c: c.decode_errors),
            ("glanet_reconnects", "reconnections to the source", lambda c: c.reconnects),
            (
                "glanet_events",
                "action events fired (start and end)",
                lambda c: c.events,
            ),
            (
                "glanet_web_jpeg_encoded",
                "JPEG encodings for the web view",
                lambda c: _tile_value(hub, c, "encoded"),
            ),
        ]
        for name, doc, value in counters:
            family = CounterMetricFamily(name, doc, labels=["camera"])
            for cam in cams:
                family.add_metric([cam.name], value(cam))
            yield family
        status = GaugeMetricFamily(
            "glanet_camera_status", "1 for the camera's status", labels=["camera", "status"]
        )
        up = GaugeMetricFamily("glanet_camera_up", "1 while the camera is live", labels=["camera"])
        viewers = GaugeMetricFamily("glanet_web_viewers", "MJPEG streams open", labels=["camera"])
        fps = GaugeMetricFamily("glanet_model_fps", "model frames a second, recently", labels=["camera"])
        latency = HistogramMetricFamily(
            "glanet_prediction_latency_seconds", "capture to prediction", labels=["camera"]
        )
        for cam in cams:
            snap = cam.stats
            for s in SourceStatus:
                status.add_metric([cam.name, s.value], 1.0 if snap.status is s else 0.0)
            up.add_metric([cam.name], 1.0 if snap.status is SourceStatus.LIVE else 0.0)
            viewers.add_metric([cam.name], _tile_value(hub, cam, "viewers"))
            fps.add_metric([cam.name], _finite(snap.fps.get("model", 0.0)))
            tile = hub.tile(cam.name)
            if tile is not None:
                latency.add_metric([cam.name], tile.latency.buckets(), tile.latency.total)
        yield from (status, up, viewers, fps, latency)
        dropped = CounterMetricFamily(
            "glanet_sink_outputs_dropped",
            "processed frames the outputs (window, videos, web) could not keep up with",
        )
        dropped.add_metric([], app.dispatcher.dropped if app.dispatcher is not None else 0)
        yield dropped
        missed = CounterMetricFamily("glanet_web_events_missed", "events an SSE client was too slow to take")
        missed.add_metric([], hub.events_missed)
        yield missed
        guard = self.server.guard
        if guard is not None:
            for name, doc, value in (
                ("glanet_web_connections_refused", "connections refused, every one open busy", guard.refused),
                ("glanet_web_connections_evicted", "idle or stalled connections dropped to make room",
                 guard.evicted),
                ("glanet_web_connections_stalled", "connections cut: their client took none of the answer",
                 guard.stalled),
                ("glanet_web_connections_timed_out", "connections that sent no request head in time",
                 guard.timed_out),
            ):  # fmt: skip
                family = CounterMetricFamily(name, doc)
                family.add_metric([], value)
                yield family


def _prediction_json(prediction: Prediction | None) -> dict[str, Any]:
    """What the page writes beside a camera's picture: the top five, each branch's top class, the warm-up,
    the demo's truth (empty values before the first prediction)."""
    if prediction is None:
        return {"top5": [], "branches": [], "history": 0, "window": 0, "truth": None}
    branches = []
    probs = np.asarray(prediction.branch_probs)
    for s, name in enumerate(prediction.branch_names[: probs.shape[0]]):
        i = int(np.argmax(probs[s]))
        branches.append(
            {"name": name, "label": prediction.class_names[i], "confidence": round(float(probs[s, i]), 4)}
        )
    return {
        "top5": [{"label": label, "confidence": round(p, 4)} for label, p in prediction.top(5)],
        "branches": branches,
        "history": prediction.history,
        "window": prediction.window,
        "truth": prediction.frame.truth,
    }


def _tile_value(hub: WebHub, cam: CameraStatus, field: str) -> float:
    tile = hub.tile(cam.name)
    return float(getattr(tile, field)) if tile is not None else 0.0


def _finite(value: float) -> float | None:
    return round(value, 3) if math.isfinite(value) else None


class _ViewerResponse(StreamingResponse):
    """A stream that calls `done` when it ends, however it ends (its generator may never have started)."""

    def __init__(self, content: AsyncIterator[Any], done: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._done = done

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._done()


async def _read_json(request: Request) -> Any:
    """The request's body as JSON: read as it comes and cut at MAX_BODY (a chunked body has no length to
    refuse it by), within BODY_TIMEOUT_S, at most MAX_JSON_DEPTH deep; else an HTTPException (4xx)."""
    chunks, size = [], 0
    close = {"Connection": "close"}  # the rest of the body is not read: the connection cannot go on
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):
            async for chunk in request.stream():
                size += len(chunk)
                if size > MAX_BODY:
                    raise HTTPException(413, f"the body is over {MAX_BODY} bytes", close)
                chunks.append(chunk)
    except TimeoutError:
        raise HTTPException(408, f"the body did not arrive within {BODY_TIMEOUT_S:g} s", close) from None
    except ClientDisconnect:
        raise HTTPException(400, "the client left before its body arrived") from None
    try:
        text = b"".join(chunks).decode("utf-8")
        if _json_depth(text) > MAX_JSON_DEPTH:
            raise HTTPException(400, f"the body nests over {MAX_JSON_DEPTH} deep (a camera is one object)")
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as error:
        raise HTTPException(400, f"the body is not valid JSON: {error.msg}") from None
    except UnicodeDecodeError:
        raise HTTPException(400, "the body is not valid JSON: not UTF-8") from None
    except ValueError as error:  # NaN or Infinity, a number of over 4300 digits
        raise HTTPException(400, f"the body is not valid JSON: {error}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _json_depth(text: str) -> int:
    """How deep `text`'s arrays and objects nest (brackets inside strings not counted), counted no further
    than one past MAX_JSON_DEPTH; json.loads itself would recurse as deep as it goes."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return 0  # cannot be deeper: the common case, at once
    depth = deepest = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:
                break
        elif ch in "]}":
            depth -= 1
    return deepest


def _loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The event loop's errors outside any request: an OSError (accept() out of files, a socket reset) is
    one line, not a traceback; anything else is a bug, told as asyncio tells it."""
    error = context.get("exception")
    if isinstance(error, OSError):
        log.warning("web view: %s: %s", context.get("message", "socket error"), error)
    else:
        loop.default_exception_handler(context)


def _sse(record: dict[str, Any]) -> str:
    return f"id: {record['id']}\nevent: action\ndata: {json.dumps(record)}\n\n"


def _int_text(text: str, what: str, low: int = 0, high: int | None = None) -> int:
    try:
        value = int(text)
    except ValueError:
        raise HTTPException(400, f"{what} {text!r}: give a whole number") from None
    if value < low or (high is not None and value > high):
        raise HTTPException(400, f"{what} {value}: must be in {low}..{high if high is not None else ''}")
    return value


def _int_param(request: Request, key: str, default: int, low: int, high: int | None = None) -> int:
    text = request.query_params.get(key)
    return default if text is None or text == "" else _int_text(text, key, low, high)


def _float_param(request: Request, key: str, default: float, low: float, high: float) -> float:
    text = request.query_params.get(key)
    if text is None or text == "":
        return default
    try:
        value = float(text)
    except ValueError:
        raise HTTPException(400, f"{key} {text!r}: give a number") from None
    if not (math.isfinite(value) or value == math.inf) or not low <= value <= high:
        raise HTTPException(400, f"{key} {text}: must be in {low:g}..{high:g}")
    return value
