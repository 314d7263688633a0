"""The driver of a cluster run: shards on the nodes, cameras assigned by a stable hash, failover.

`ClusterApp` is a `Run` (stream.runtime.loop) as a `StreamApp` is, on the same loop, with the cameras on
shards instead of in this process:
- one shard per node (a Ray actor holding the node's CPUs, pinned to it), each with its own engine;
- a camera goes to the live shard it ranks first by a rendezvous hash of (shard, camera) among those
  holding less than their share of the cameras (bounded loads, by CPUs): losing a shard moves only its
  own cameras, and the same cameras on the same shards always get the same places;
- every `poll_s` each shard is asked for its records (one call in flight per shard); a shard whose call
  failed, that reported an error, or that has not answered for `lease_s` + `grace_s` is lost. Its cameras'
  open events are closed (at their last time seen, as a reconnect closes them) and the cameras start on
  the survivors, their state fresh as after a reconnect. A shard cut off rather than dead stops its cameras
  itself once its lease (`lease_s` without a poll) runs out, before the driver moves them;
- the records become Outputs for the same sinks as in one process (events file, dashboard, web view, MQTT);
- with --save each shard records its cameras on its node, a new part each time a camera is placed
  (stream/cluster/parts.py); --summary-json lists every part, its node and how it ended;
- every `join_check_s` the driver looks for nodes that joined the cluster: each gets a shard (loading its
  model does not hold up the others), new cameras go to it as to any shard, and the live cameras that rank
  it highest move there, up to its share by CPUs (cameras read --fast, files and archives, are not moved:
  moving would start them over).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from stream.cluster.address import ClusterAddress, ClusterError
from stream.cluster.auth import HOW_TO_TURN_ON, TokenEnv, has_token
from stream.cluster.local import LOCAL_RESOURCE, LocalCluster
from stream.cluster.parts import ClusterSummary, Part, PartState, part_file
from stream.cluster.probe import CLIENT_CALL, GCS_CALL, wants_token
from stream.cluster.shard import CameraState, Poll, Shard, ShardConfig
from stream.cluster.wire import Rebuilder
from stream.output import Output, View
from stream.runtime.dispatch import Dispatcher, Sink
from stream.runtime.loop import RunLoop
from stream.runtime.model import ModelChoice
from stream.runtime.spec import CameraSpec, StreamOptions
from stream.runtime.summary import RunSummary, Summary
from stream.types import CameraStatus, Event, Prediction, SourceStatus, StatsSnapshot, StatusUpdate

log = logging.getLogger(__name__)

PROBE_S = 8.0  # what an address may take to answer one gRPC call before it is called not Ray
JOIN_CHECK_S = 2.0  # how often the driver asks Ray for nodes that joined


def rendezvous(camera: str, shards: Sequence[str]) -> list[str]:
    """The shards in a camera's order of preference: by a hash of (shard, camera), highest first. Stable:
    the same shards give the same order anywhere, and a shard's loss changes no other shard's rank."""
    if not shards:
        raise ClusterError("no shard left to run cameras on")

    def score(shard: str) -> bytes:
        return hashlib.blake2b(f"{shard}\x00{camera}".encode(), digest_size=8).digest()

    return sorted(shards, key=score, reverse=True)


def to_move(cameras: Sequence[str], shards: Sequence[str], new: str, count: int) -> list[str]:
    """The `count` cameras that move to a shard that joined: those that rank it highest of `shards` (which
    include it), in name order among equals. The nodes even out, and a camera that ranks the new shard first
    is the first to go, as it would have been placed there had the shard been up from the start."""
    ranked = sorted(cameras, key=lambda c: (rendezvous(c, shards).index(new), c))
    return sorted(ranked[: max(0, count)])


def choose_shard(camera: str, load: dict[str, int], cpus: dict[str, int]) -> str:
    """Rendezvous hashing with bounded loads: the camera's most preferred shard that holds fewer cameras
    than its share (by CPUs) of all of them, this one included. Plain hashing would put 5 of 6 cameras on
    one of two nodes one time in three; this keeps the nodes even, and a lost shard's cameras are the only
    ones that move (the survivors' shares only grow)."""
    total = sum(load.values()) + 1
    all_cpus = sum(cpus.values())
    for shard in rendezvous(camera, list(load)):
        if load[shard] < math.ceil(total * cpus[shard] / all_cpus):
            return shard
    return rendezvous(camera, list(load))[0]  # unreachable: some share is always above its load


@dataclass(eq=False)
class RemoteCamera:
    """A camera of the cluster run, seen from the driver: where it runs and its newest numbers."""

    spec: CameraSpec
    shard: str = ""  # the shard serving it now ("" while it moves)
    removed: bool = False
    done: bool = False
    moves: int = 0
    stats: StatsSnapshot = field(default_factory=StatsSnapshot)
    now: Summary | None = None  # its numbers on its current shard
    past: list[Summary] = field(default_factory=list)  # its numbers on the shards it left
    last_prediction: Prediction | None = None
    events_seen: int = 0
    open_event: Event | None = None  # a start not yet ended: closed here when its shard is lost
    done_seen_at: float | None = None  # when its shard first said it was done
    settled: bool = False  # its shard's numbers were taken after it finished (they are its last)
    parts: list[Part] = field(default_factory=list)  # --save: its recording, a part a placement

    @property
    def name(self) -> str:
        return self.spec.name

    def snapshot(self, max_age_s: float = 0.0) -> StatsSnapshot:
        return self.stats

    def total(self) -> Summary:
        """Its numbers over every shard it ran on: counts summed, the newest shard's latency and reason."""
        parts = [*self.past, *([self.now] if self.now is not None else [])]
        if not parts:
            return Summary(source=self.spec.source.name, shard=self.shard, moves=self.moves)
        last = parts[-1]
        out = replace(last, shard=self.shard or last.shard, moves=self.moves)
        for name in ("frames", "predictions", "model_ticks", "encoded", "reused", "dropped", "decode_errors",
                     "reconnects", "resets", "saved_frames"):  # fmt: skip
            setattr(out, name, sum(getattr(p, name) for p in parts))
        out.events = self.events_seen
        return out


@dataclass(eq=False)
class ShardHandle:
    name: str
    node: str
    actor: Any
    cpus: int
    address: str = ""  # the node's IP address
    cameras: set[str] = field(default_factory=set)
    alive: bool = True
    inflight: Any = None  # the poll call under way
    last_ok: float = field(default_factory=time.monotonic)
    info: dict[str, Any] = field(default_factory=dict)


class RemoteBackend:
    """The engine as the driver knows it: the shards' description and the model's step spec."""

    def __init__(self, info: dict[str, Any], shards: int) -> None:
        self.spec, self.name = info["spec"], info["backend_name"]
        self._describe = f"{info['backend']} on {shards} shard{'s' if shards != 1 else ''}"

    def describe(self) -> str:
        return self._describe


class ClusterApp(RunLoop):
    """A run over a Ray cluster: the cameras on shards (a shard a node), their records to the sinks here."""

    def __init__(
        self,
        cameras: Sequence[CameraSpec],
        address: ClusterAddress,
        model: ModelChoice,
        options: StreamOptions | None = None,
        *,
        max_batch: int | None = None,
        lease_s: float = 3.0,
        grace_s: float = 1.0,
        poll_s: float = 0.05,
        join_check_s: float = JOIN_CHECK_S,
        picture_fps: float = 0.0,
        jpeg_quality: int = 80,
        say: Callable[[str], None] | None = None,
        sinks: Sequence[Sink] = (),
    ) -> None:
        options = options or StreamOptions()
        super().__init__(options, sinks)
        names = [c.name for c in cameras]
        if any(not n for n in names) or len({n.lower() for n in names}) != len(names):
            raise ValueError(f"cluster cameras need unique names: {names}")
        if not cameras and not options.keep_alive:
            raise ValueError("no camera to run")
        self.address, self.model, self.options = address, model, options
        self.specs = list(cameras)
        self.max_batch = max_batch or max(4, len(cameras))
        self.lease_s, self.grace_s, self.poll_s = lease_s, grace_s, poll_s
        self.join_check_s = join_check_s
        self.picture_fps, self.jpeg_quality = picture_fps, jpeg_quality
        self.say = say or (lambda line: print(f"glanet: {line}", file=sys.stderr, flush=True))
        self.cameras: list[RemoteCamera] = []
        self.shards: list[ShardHandle] = []
        self.view: View | None = None
        self.backend: RemoteBackend | None = None
        self.class_names: tuple[str, ...] = ()
        self._local: LocalCluster | None = None  # local:N's nodes
        self._token = TokenEnv()  # auto / ray://: token mode on for a cluster that wants the user's token
        self._rebuild: Rebuilder | None = None
        self._fresh: Callable[[Prediction], None] | None = None
        self._parts_used: dict[str, int] = {}  # --save: a camera name's (any case) last part number
        self._joining: list[
            tuple[ShardHandle, Any]
        ] = []  # shards starting on nodes that joined: (it, describe)
        self._nodes_seen: set[str] = set()  # node ids given a shard (or that failed to start one)
        self._nodes_checked = 0.0

    # -- connecting ---------------------------------------------------------------------------------------
    def start(self) -> None:
        """Connect to the cluster and start a shard on every node (each loads the model: seconds)."""
        try:
            import ray
        except ImportError:
            raise ClusterError(
                "--cluster needs Ray: pip install 'glanet[cluster]' (ray 2.60.0, the same on every node)"
            ) from None
        self._connect(ray)
        nodes = _usable_nodes(ray)
        if not nodes:
            raise ClusterError(f"the Ray cluster at {self.address} has no node with a CPU to run shards on")
        pending = [self._start_shard(ray, node) for node in nodes]
        self._nodes_checked = time.monotonic()
        for handle, ref in pending:
            try:
                handle.info = ray.get(ref, timeout=600)
            except Exception as e:  # the model did not load there: one line, the cause's own
                raise ClusterError(f"shard {handle.name} could not start: {_cause(e)}") from None
            handle.last_ok = time.monotonic()
            self.shards.append(handle)
        self.shards.sort(key=lambda s: s.name)
        info = self.shards[0].info
        self.class_names = tuple(info["class_names"])
        self.sampling, self.preprocessing = info["sampling"], info["preprocessing"]
        self.backend = RemoteBackend(info, len(self.shards))
        maps = self.backend.spec.maps
        o = self.options
        self.view = View(maps, o.attention or (maps[0] if maps else "none"), o.note)
        self._rebuild = Rebuilder(self.class_names, tuple(info["spec"].branch_names))
        where = ", ".join(f"{s.name} ({s.cpus} CPU{'s' if s.cpus != 1 else ''})" for s in self.shards)
        self.say(f"cluster {self.address}: {len(self.shards)} shards: {where}; {info['backend']}")

    def _start_shard(self, ray: Any, node: dict[str, Any]) -> tuple[ShardHandle, Any]:
        """A shard actor on `node` (pinned to it, holding its CPUs) and its `describe` call, under way."""
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        node_id, cpus = node["NodeID"], int(node["Resources"]["CPU"])
        self._nodes_seen.add(node_id)
        index = _local_index(node["Resources"])
        local_nodes = self.address.nodes if self.address.kind == "local" else 0
        pin = None
        if index is not None and local_nodes * cpus <= (os.cpu_count() or 1):  # local:N: a node's own cores
            pin = tuple(range(index * cpus, (index + 1) * cpus))
        name = f"node-{node_id[:8]}" if index is None else f"local-{index}"
        config = replace(self._shard_config(), name=name, threads=cpus, cpus=pin)
        pinned = NodeAffinitySchedulingStrategy(node_id, soft=False)
        actor = (
            ray.remote(Shard)
            .options(num_cpus=cpus, max_restarts=0, max_task_retries=0, scheduling_strategy=pinned)
            .remote(config)
        )
        handle = ShardHandle(name, node_id, actor, cpus, node.get("NodeManagerAddress", ""))
        return handle, actor.describe.remote()

    def _connect(self, ray: Any) -> None:
        kind = self.address.kind
        opts = {"logging_level": logging.ERROR, "log_to_driver": False, "configure_logging": True}
        try:
            if kind == "local":
                n = self.address.nodes
                self._local = LocalCluster(n, self.address.cpus or max(1, (os.cpu_count() or 1) // n))
                self._local.start(ray, opts)
            else:
                if kind == "ray":
                    try:
                        import grpc  # noqa: F401  (Ray Client's transport)
                    except ImportError:
                        raise ClusterError(
                            f"--cluster {self.address} is Ray Client, which needs grpcio: pip install "
                            "'glanet[cluster]' (or 'ray[client]==2.60.0')"
                        ) from None
                self._check_auth(self._bootstrap(ray))
                ray.init(address="auto" if kind == "auto" else self.address.url, **opts)
        except ClusterError:
            raise
        except Exception as e:
            # a ray:// that failed leaves Ray Client's mode on in this process: a later ray.init(address=
            # "auto") here would fail (an AssertionError) until Ray is shut down
            with contextlib.suppress(Exception):
                ray.shutdown()
            hint = " (start one with `ray start --head`)" if kind == "auto" else ""
            raise ClusterError(f"cannot reach the Ray cluster at {self.address}: {_cause(e)}{hint}") from None

    def _bootstrap(self, ray: Any) -> tuple[str, int]:
        """The host and port `ray.init` will call: ray://'s, or auto's (RAY_ADDRESS, else the newest
        `ray start` here)."""
        if self.address.kind == "ray":
            host, _, port = self.address.url.removeprefix("ray://").rpartition(":")
            return host, int(port)
        from ray._private import services

        found = services.canonicalize_bootstrap_address("auto")
        if found is None:
            raise ClusterError("no Ray cluster runs here (start one with `ray start --head`, or RAY_ADDRESS)")
        host, _, port = found.rpartition(":")
        return host, int(port)

    def _check_auth(self, target: tuple[str, int]) -> None:
        """One call without a token, bounded: not Ray is a ClusterError; a cluster anyone may use is a
        warning; one that wants a token gets the user's (RAY_AUTH_MODE=token for this connection)."""
        if os.environ.get("RAY_USE_TLS", "0").lower() not in ("0", "false", ""):
            return  # the probe speaks plain gRPC; a TLS cluster is left to Ray
        host, port = target
        where = f"{host}:{port}"
        call = CLIENT_CALL if self.address.kind == "ray" else GCS_CALL
        if not wants_token(host, port, call, timeout_s=PROBE_S):
            self.say(
                f"warning: the Ray cluster at {where} has token authentication off: whoever reaches its "
                f"ports can run any code on its nodes; to turn it on, {HOW_TO_TURN_ON}"
            )
        elif not has_token():
            raise ClusterError(
                f"the Ray cluster at {where} wants a token: set RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) to "
                "its token (`ray get-auth-token` on its head node)"
            )
        else:
            self._token.enable(generate=False)

    def _shard_config(self) -> ShardConfig:
        return ShardConfig(
            name="", model=self.model, options=self.options, max_batch=self.max_batch, cwd=os.getcwd(),
            lease_s=self.lease_s, picture_fps=self.picture_fps, jpeg_quality=self.jpeg_quality,
        )  # fmt: skip

    def close(self) -> None:
        """Stop the shards, disconnect, and stop local:N's nodes."""
        import ray

        for shard in [*self.shards, *(handle for handle, _ in self._joining)]:
            if shard.alive:
                with contextlib.suppress(Exception):
                    ray.kill(shard.actor, no_restart=True)
        self._joining = []
        try:
            if ray.is_initialized():
                ray.shutdown()
        finally:
            if self._local is not None:
                self._local.close()
                self._local = None
            self._token.close()

    # -- the Run surface -----------------------------------------------------------------------------------
    def camera_status(self, cam: RemoteCamera, max_age_s: float = 0.2) -> CameraStatus:
        total = cam.total()
        return CameraStatus(
            cam.name, total.source or cam.spec.source.name, cam.stats, cam.last_prediction, total.frames,
            cam.stats.frames_captured + sum(s.frames for s in cam.past), total.predictions, total.dropped,
            total.decode_errors, total.reconnects, cam.events_seen, total.encoded, total.reused,
            shard=cam.shard,
        )  # fmt: skip

    def add_camera(self, spec: CameraSpec) -> CameraStatus:
        if not spec.name:
            raise ValueError("a cluster camera needs a name")
        with self._changes:
            if self.backend is None or self._stop.is_set():  # from `start` on (an archive adds before `run`)
                raise ValueError("the run is not going: cameras can be added once the shards are up")
            if self._name_taken(spec.name):
                raise ValueError(f"camera {spec.name!r} exists (names are unique, ignoring case)")
            cam = RemoteCamera(spec)
            self.cameras.append(cam)
            self.specs.append(spec)
            self._camera_added(cam.name)
            self._place(cam)
            return self.camera_status(cam)

    def remove_camera(self, name: str) -> bool:
        import ray

        with self._changes:
            cam = self.camera(name)
            if cam is None:
                return False
            cam.removed = True
            shard = self._shard(cam.shard)
            if shard is not None:
                shard.cameras.discard(name)  # its place is free for the next camera
        if shard is not None and shard.alive:
            try:
                ray.get(shard.actor.remove.remote(name), timeout=10)
            except Exception as e:
                log.warning("camera %s: its shard did not answer the removal: %s", name, _cause(e))
        return True

    # -- placing and moving ---------------------------------------------------------------------------------
    def _shard(self, name: str) -> ShardHandle | None:
        return next((s for s in self.shards if s.name == name), None)

    def _place(self, cam: RemoteCamera, on: ShardHandle | None = None) -> None:
        """Start the camera on shard `on`, else on its shard by rendezvous over the live shards (under the
        lock)."""
        import ray

        target = on
        if target is None:
            alive = [s for s in self.shards if s.alive]
            load = {s.name: len(s.cameras) for s in alive}
            target = self._shard(choose_shard(cam.name, load, {s.name: s.cpus for s in alive}))
        assert target is not None
        cam.shard = target.name
        target.cameras.add(cam.name)
        part = self._parts_used.get(cam.name.lower(), 0) + 1
        save = self.options.save
        if save is not None:  # a new part for each placement, even a failed one: a part is never reused
            self._parts_used[cam.name.lower()] = part
            path = str(Path(save).absolute() / part_file(cam.name, part))  # the shard says its own
            cam.parts.append(Part(cam.name, part, target.name, target.address, target.node, path))
        try:
            ray.get(target.actor.add.remote(cam.spec, part), timeout=30)
        except Exception as e:
            if isinstance(e, ray.exceptions.RayActorError | ray.exceptions.GetTimeoutError):
                self._lost(target, _cause(e))  # moves it again, to another shard
                return
            raise ValueError(f"camera {cam.name}: {_cause(e)}") from None

    def _lost(self, shard: ShardHandle, why: str) -> None:
        """A shard is gone: its cameras' open events close and the cameras start on the survivors."""
        import ray

        if not shard.alive:
            return
        shard.alive = False
        with contextlib.suppress(Exception):  # a shard only cut off has stopped itself (its lease)
            ray.kill(shard.actor, no_restart=True)
        moving = [c for c in self.cameras if c.shard == shard.name and not c.removed and not c.done]
        survivors = [s.name for s in self.shards if s.alive]
        self.say(
            f"shard {shard.name} lost ({why}): "
            + (f"moving {len(moving)} cameras to {', '.join(survivors)}" if survivors else "no shard left")
        )
        shard.cameras.clear()
        for cam in self.cameras:  # its parts play up to about a second before it was lost
            for part in cam.parts:
                if part.shard == shard.name:
                    part.lost()
        for cam in moving:
            self._leave(cam, f"its shard {shard.name} was lost")
        if not survivors:
            for cam in moving:
                cam.done = True
            self.request_stop("every shard was lost")
            return
        for cam in moving:
            try:
                self._place(cam)
            except (ValueError, ClusterError) as e:
                self.say(str(e))
                cam.done = True

    def _leave(self, cam: RemoteCamera, why: str) -> None:
        """The camera leaves its shard: the sinks hear so (`_moved`), its numbers there become its past."""
        self._moved(cam, why)
        if cam.now is not None:
            cam.past.append(cam.now)
            cam.now = None
        cam.shard, cam.moves, cam.settled = "", cam.moves + 1, False
        if self._rebuild is not None:
            self._rebuild.forget(cam.name)
        cam.last_prediction = None

    # -- nodes that join ------------------------------------------------------------------------------------
    def _watch_nodes(self) -> None:
        """Start a shard on each node that joined; take in those whose model has loaded (not under the lock:
        asking Ray for its nodes is a call to its GCS)."""
        import ray

        now = time.monotonic()
        if now - self._nodes_checked >= self.join_check_s:
            self._nodes_checked = now
            try:
                nodes = _usable_nodes(ray)
            except Exception as e:
                log.warning("cannot list the cluster's nodes: %s", _cause(e))
                nodes = []
            for node in nodes:
                if node["NodeID"] not in self._nodes_seen:
                    self._joining.append(self._start_shard(ray, node))
                    self.say(f"node {node['NodeID'][:8]} ({node.get('NodeManagerAddress', '')}) joined: "
                             "starting a shard there")  # fmt: skip
        if not self._joining:
            return
        ready, _ = ray.wait([ref for _, ref in self._joining], num_returns=len(self._joining), timeout=0)
        ready_ids = {r.hex() for r in ready}
        for handle, ref in [j for j in self._joining if j[1].hex() in ready_ids]:
            self._joining = [j for j in self._joining if j[0] is not handle]
            try:
                handle.info = ray.get(ref)
            except Exception as e:
                self.say(f"shard {handle.name} could not start: {_cause(e)}; its node is not used")
                with contextlib.suppress(Exception):
                    ray.kill(handle.actor, no_restart=True)
                continue
            if tuple(handle.info["class_names"]) != self.class_names:
                self.say(
                    f"shard {handle.name} loaded another model (its classes differ): its node is not used"
                )
                with contextlib.suppress(Exception):
                    ray.kill(handle.actor, no_restart=True)
                continue
            with self._changes:
                if self._stop.is_set():
                    with contextlib.suppress(Exception):
                        ray.kill(handle.actor, no_restart=True)
                    return
                handle.last_ok = time.monotonic()
                self.shards.append(handle)
                self.shards.sort(key=lambda s: s.name)
                if self.backend is not None:
                    self.backend = RemoteBackend(self.shards[0].info, sum(s.alive for s in self.shards))
                self._rebalance(handle)

    def _rebalance(self, new: ShardHandle) -> None:
        """A shard joined: the live cameras that rank it highest move to it, up to its share by CPUs (under
        the lock). A camera read --fast (a file, an archive's video) stays: moving it would start it over."""
        import ray

        alive = [s for s in self.shards if s.alive]
        names = [s.name for s in alive]
        running = [c for c in self.cameras if c.shard and not c.removed and not c.done]
        share = len(running) * new.cpus // sum(s.cpus for s in alive)
        fast = {c.name for c in running if (c.spec.fast if c.spec.fast is not None else self.options.fast)}
        chosen = set(to_move([c.name for c in running if c.name not in fast], names, new.name, share))
        movable = [c for c in running if c.name in chosen]
        self.say(
            f"shard {new.name} joined ({new.cpus} CPU{'s' if new.cpus != 1 else ''})"
            + (f": moving {', '.join(c.name for c in movable)} to it" if movable else "")
        )
        for cam in movable:
            old = self._shard(cam.shard)
            if old is not None and old.alive:  # stopped there first: a camera is never on two shards at once
                try:
                    ray.get(old.actor.remove.remote(cam.name), timeout=10)
                except Exception as e:  # it may still run there: it stays (a lost shard is failed over)
                    log.warning("camera %s stays on shard %s: it did not answer the move (%s)",
                                cam.name, old.name, _cause(e))  # fmt: skip
                    continue
            if old is not None:
                old.cameras.discard(cam.name)
            self._leave(cam, f"shard {new.name} joined")
            try:
                self._place(cam, new)
            except (ValueError, ClusterError) as e:
                self.say(str(e))
                cam.done = True

    def _moved(self, cam: RemoteCamera, why: str) -> None:
        """The sinks hear that the camera starts over elsewhere; its open event closes at its last time seen
        (as a reconnect closes it)."""
        ev, last, events = cam.open_event, cam.last_prediction, []
        if ev is not None:
            cam.open_event = None
            end_ts = last.frame.source_ts if last is not None else ev.start_ts
            index = last.frame.index if last is not None else ev.frame_index
            events.append(Event(
                "end", ev.label, ev.class_index, ev.source, ev.start_ts, max(end_ts, ev.start_ts), ev.peak,
                ev.peak_ts, index, ev.camera, time.time(),
            ))  # fmt: skip
            cam.events_seen += 1
        status = StatusUpdate(SourceStatus.RECONNECTING, f"moving: {why}")
        cam.stats = replace(cam.stats, status=SourceStatus.RECONNECTING, status_message=status.message)
        self._emit(
            Output(cam.name, None, last, False, status, cam.stats, events, display=False, restart=True)
        )

    # -- running (the loop is RunLoop's) --------------------------------------------------------------------
    def _prepare(self) -> list[str]:
        if self.backend is None:
            self.start()
        self._fresh = self.announcing()
        return [s.name for s in self.specs]

    def _title(self) -> str:
        assert self.backend is not None
        return f"{len(self.cameras) or len(self.specs)} cameras | {self.backend.describe()}"

    def _blocks(self) -> bool:
        return self.options.fast and not self.options.keep_alive

    def _start_work(self, dispatcher: Dispatcher) -> threading.Thread:
        with self._changes:
            self.started_at = time.monotonic()
            placed = {id(c.spec) for c in self.cameras}  # those added already (an archive's feeder)
            for spec in sorted(self.specs, key=lambda s: s.name):  # the same cameras, the same places
                if id(spec) in placed:
                    continue
                cam = RemoteCamera(spec)
                self.cameras.append(cam)
                self._place(cam)
        loop = threading.Thread(target=self._loop, name="glanet-cluster", daemon=True)
        loop.start()
        return loop

    def _after_work(self) -> None:
        """The shards were stopped by the polling thread as it ended: nothing is left to close here."""

    def _raise_work_error(self) -> None:
        """The polling thread's failures stop the run and are said in one line where they happen."""

    def _loop(self) -> None:
        try:
            self._poll_until_done()
            self._stop_shards()
        except BaseException as e:
            log.exception("cluster driver failed")
            self.say(f"the cluster driver failed: {_cause(e)}")
            self.request_stop("error")
        finally:
            assert self.dispatcher is not None
            self.dispatcher.finish()

    def _poll_until_done(self) -> None:
        import ray

        while not self._stop.is_set():
            t0 = time.monotonic()
            self._watch_nodes()
            with self._changes:
                live = [s for s in self.shards if s.alive]
                for s in live:
                    if s.inflight is None:
                        s.inflight = s.actor.poll.remote()
            refs = [s.inflight for s in live]
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=self.poll_s) if refs else ([], [])
            ready_ids = {r.hex() for r in ready}
            now = time.monotonic()
            with self._changes:
                for s in live:
                    if s.inflight is not None and s.inflight.hex() in ready_ids:
                        ref, s.inflight = s.inflight, None
                        try:
                            answer: Poll = ray.get(ref)
                        except Exception as e:
                            self._lost(s, _cause(e))
                            continue
                        s.last_ok = now
                        self._take(s, answer)
                        if answer.error or answer.fenced:
                            self._lost(s, answer.error or "its lease ran out")
                    elif s.alive and now - s.last_ok > self.lease_s + self.grace_s:
                        self._lost(s, f"no answer for {now - s.last_ok:.1f} s")
                if (
                    not self.options.keep_alive
                    and self.cameras
                    and all(c.done or c.removed for c in self.cameras)
                ):
                    return  # fmt: skip
                if not any(s.alive for s in self.shards):
                    return
            time.sleep(max(0.0, self.poll_s - (time.monotonic() - t0)))

    def _stop_shards(self) -> None:
        """Every live shard stops its cameras (their open events close); their last records are taken."""
        import ray

        with self._changes:
            live = [s for s in self.shards if s.alive]
        refs = {s.name: s.actor.stop.remote() for s in live}
        for s in live:
            try:
                answer = ray.get(refs[s.name], timeout=max(10.0, self.lease_s * 3))
            except Exception as e:
                log.warning("shard %s did not stop cleanly: %s", s.name, _cause(e))
                continue
            with self._changes:
                self._take(s, answer)

    def _take(self, shard: ShardHandle, answer: Poll) -> None:
        """A poll's records to the sinks; the cameras' numbers kept."""
        assert self._rebuild is not None
        for rec in answer.records:
            cam = self.camera(rec.camera) or next((c for c in self.cameras if c.name == rec.camera), None)
            if cam is None or cam.shard != shard.name:
                continue  # a camera that has left this shard: nothing of it counts from here
            out = self._rebuild.output(rec)
            cam.last_prediction = out.prediction
            cam.stats = rec.stats
            for ev in rec.events:
                cam.events_seen += 1
                cam.open_event = ev if ev.kind == "start" else None
            if rec.final or rec.removed:
                cam.done = True
                shard.cameras.discard(cam.name)
            if out.fresh and out.prediction is not None and self._fresh is not None:
                self._fresh(out.prediction)
            self._emit(out)
        for said in answer.parts:
            self._part_said(shard, said)
        now = time.monotonic()
        for name, state in answer.cameras.items():
            cam = next((c for c in self.cameras if c.name == name and c.shard == shard.name), None)
            if cam is None:
                continue
            self._state(cam, state, now)

    def _part_said(self, shard: ShardHandle, said: PartState) -> None:
        """What a shard says of a part it writes (the part numbers of a name are never reused)."""
        for cam in self.cameras:
            if cam.name != said.camera:
                continue
            for part in cam.parts:
                if part.part == said.part and part.shard == shard.name:
                    if said.error is not None and not part.state.startswith("failed"):
                        self.say(f"camera {cam.name}: its recording stopped on {shard.name}: {said.error}")
                    part.update(said)
                    return

    def _state(self, cam: RemoteCamera, state: CameraState, now: float) -> None:
        cam.now = state.summary
        cam.stats = state.stats
        cam.settled = state.done
        if state.done and not cam.done:  # its final output was dropped: done once the shard said so a while
            cam.done_seen_at = cam.done_seen_at or now
            if now - cam.done_seen_at > 2.0:
                cam.done = True

    def _emit(self, out: Output) -> None:
        assert self.dispatcher is not None
        self.dispatcher.put(out)

    def _summary(self, wall: float, dropped: int) -> RunSummary:
        summaries = []
        for cam in self.cameras:
            s = cam.total()
            s.wall_s = wall
            s.backend = self.backend.describe() if self.backend is not None else ""
            if cam.removed:
                s.reason = "removed"
            elif not s.reason or (not cam.done and s.reason in ("stopped", "lease expired")):
                s.reason = self.stop_reason or "stopped"
            if self.options.save is not None:
                s = ClusterSummary.of(s, cam.parts)
            summaries.append((cam.name, s))
        return self._run_summary(summaries, dropped)


def _usable_nodes(ray: Any) -> list[dict[str, Any]]:
    """The cluster's live nodes with a CPU to run a shard on."""
    return [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) >= 1]


def _local_index(resources: dict[str, float]) -> int | None:
    """A local:N node's index (its glanet_local_node_<i> resource), None for any other node."""
    return next((int(k[len(LOCAL_RESOURCE) :]) for k in resources if k.startswith(LOCAL_RESOURCE)), None)


def _cause(error: BaseException) -> str:
    """The one line of a Ray error worth showing: the innermost cause's message."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, BaseException):
        error = cause
    text = str(error).strip().splitlines()
    line = next((t for t in reversed(text) if t.strip() and not t.startswith(" ")), type(error).__name__)
    return line[:300]


__all__ = ["ClusterApp", "RemoteCamera", "rendezvous", "to_move"]
