"""The cluster's scenarios on a real 2-node Ray cluster, run INSIDE a private network namespace (only the
loopback up: Ray advertises the machine's address, so nothing may run outside one).

    unshare --net --pid --fork --mount-proc bash -c 'ip link set lo up && python cluster_scenarios.py WORK'

Starts the cluster as a user would (`ray start --head` with Ray Client's server, then `ray start --address`
for a second node, one CPU each), runs every scenario, writes WORK/results.json (each scenario's findings,
or its error) and stops. test_cluster.py asserts on the findings. The scenarios:
- same: 4 file cameras --fast over the 2 nodes (Python API) against the single-process runtime: every
  prediction, and the events; then run_camera.py --cluster auto on them writes the same events; then 2 of
  them over Ray Client (ray://, token auth on) give the predictions they had over auto, and a run_camera.py
  --cluster ray:// without the token is refused in one line;
- save: run_camera.py --cluster auto --save over 3 file cameras --fast: every frame in its camera's file,
  each file where --summary-json says (its node, its frames, finalised);
- web: run_camera.py --cluster auto --serve: the API, a picture, a camera added and one removed;
- archive: 12 generated videos through `stream.cli.archive --cluster auto` against one by one in one process;
  then a run killed (SIGKILL) after 3 videos and run again: it finishes without redoing them;
- restart: run_camera.py --cluster auto --events over 2 demo cameras, its driver killed (SIGKILL) as they
  predict; the same command, its driver frozen (SIGSTOP); while it is frozen, the same command to its end;
  then the frozen one killed: when each shard went idle (its lease) and when its process went, the last
  run's cameras, the events file's lines;
- failover: 4 real-time demo cameras, recorded (--save); the worker node's processes killed by their PIDs at
  6 s; where each camera runs, when its predictions come, the events, and each part of each recording
  (the killed node's cut at the kill, the survivor's finalised), over 20 s;
- join (after failover: the head alone is left): 4 real-time demo cameras, recorded, on the head; a node
  started with `ray start --address` at 3 s joins: its shard, the cameras that moved to it, when they
  predicted there, their parts and events, over 30 s.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT), str(HERE)]

from web_helpers import write_demo_video  # noqa: E402

if TYPE_CHECKING:
    from stream.runtime.model import ModelChoice

RAY = str(Path(sys.executable).with_name("ray"))
PORT = 6390
CLIENT_PORT = 10001  # Ray Client's server on the head (ray://127.0.0.1:CLIENT_PORT)
# token auth on, as docs/security.md tells users to start a cluster: every node and every glanet run gets it
AUTH = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}


def env() -> dict[str, str]:
    # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER: two `ray start` nodes on one machine (docs/cluster.md)
    return {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1", **AUTH}


def ray_start(*args: str) -> None:
    proc = subprocess.run(
        [RAY, "start", "--disable-usage-stats", *args], capture_output=True, text=True, env=env(), timeout=120
    )
    if proc.returncode != 0:
        raise RuntimeError(f"ray start {' '.join(args)} failed: {proc.stderr[-2000:]}")


def has_ray_client() -> bool:
    """Ray Client's transport (grpcio, the cluster extra's ray[client]) is installed: without it the head
    refuses --ray-client-server-port and the ray:// scenario is skipped."""
    try:
        import grpc  # noqa: F401
    except ImportError:
        return False
    return True


def start_cluster() -> None:
    common = ("--node-ip-address", "127.0.0.1", "--num-cpus", "1")
    client = ("--ray-client-server-port", str(CLIENT_PORT)) if has_ray_client() else ()
    ray_start("--head", "--port", str(PORT), "--include-dashboard", "false", *client, *common)
    ray_start("--address", f"127.0.0.1:{PORT}", *common)


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def model() -> ModelChoice:
    from stream.runtime.model import ModelChoice

    return ModelChoice(backend="openvino", precision="fp32")


def file_specs(videos: list[Path]):
    from stream.runtime.spec import CameraSpec
    from stream.sources.readers import parse_source

    return [CameraSpec(f"cam{i}", parse_source(str(v), folder_fps=7.5)) for i, v in enumerate(videos)]


def collect(store: dict):
    def on_prediction(p) -> None:
        store.setdefault(p.frame.camera, []).append((p.frame.index, p.step, p.probs.copy()))

    return on_prediction


def frames_in(path: Path) -> int:
    """How many frames of a video decode (a part cut short by a kill: up to its last whole fragment)."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    n = 0
    while capture.read()[0]:
        n += 1
    capture.release()
    return n


def no_time(path: Path) -> list[dict]:
    lines = path.read_text().splitlines() if path.exists() else []
    return [{k: v for k, v in json.loads(x).items() if k != "time"} for x in lines]


def scenario_same(work: Path) -> dict:
    import dataclasses

    from engines.select import make_backend
    from glanet.checkpoint import load_checkpoint
    from glanet.package_data import DEMO_CHECKPOINT
    from stream.cluster.address import parse_cluster_address
    from stream.cluster.controller import ClusterApp
    from stream.runtime.app import StreamApp
    from stream.runtime.spec import StreamOptions

    videos = [write_demo_video(work / f"same{i}.mp4", 8, seed=40 + i) for i in range(4)]
    options = StreamOptions(fast=True, headless=True, dashboard=False, quiet=True)
    cluster: dict = {}
    app = ClusterApp(
        file_specs(videos),
        parse_cluster_address("auto"),
        model(),
        dataclasses.replace(options, on_prediction=collect(cluster)),
        say=lambda _: None,
    )
    try:
        app.start()
        summary = app.run()
    finally:
        app.close()
    shards = {name: s.shard for name, s in summary.cameras.items()}
    try:  # its own findings: the scenario's others stand without it
        client = client_run(videos[:2], cluster, options)
    except Exception:
        client = {"error": traceback.format_exc()[-4000:]}
    ck = load_checkpoint(DEMO_CHECKPOINT, map_location="cpu")
    backend = make_backend("openvino", ck, precision="fp32", max_batch=4)
    single: dict = {}
    single_events = work / "single.jsonl"  # what the command line's cluster run must write too
    one = dataclasses.replace(options, on_prediction=collect(single), events=single_events)
    StreamApp(file_specs(videos), ck, backend, one).run()
    worst, counts = 0.0, {}
    for cam, preds in single.items():
        got = cluster.get(cam, [])
        counts[cam] = (len(preds), len(got))
        if len(got) != len(preds):
            worst = float("inf")
            continue
        for (i1, s1, p1), (i2, s2, p2) in zip(preds, got, strict=True):
            if (i1, s1) != (i2, s2):
                worst = float("inf")
            worst = max(worst, float(np.abs(p1 - p2).max()))
    # the command line: run_camera.py --cluster auto against the single-process run's events
    toml = work / "cams.toml"
    toml.write_text("".join(f'[[camera]]\nname = "cam{i}"\nsource = "{v}"\n' for i, v in enumerate(videos)))
    runs = {}
    for key, extra in (("cluster", ["--cluster", "auto"]),):
        events = work / f"cli-{key}.jsonl"
        proc = subprocess.run(
            [
                sys.executable,
                str(ROOT / "run_camera.py"),
                "--sources",
                str(toml),
                "--fast",
                "--headless",
                "--no-dashboard",
                "--backend",
                "openvino",
                "--precision",
                "fp32",
                "--events",
                str(events),
                "--summary-json",
                str(work / f"cli-{key}.json"),
                *extra,
            ],
            capture_output=True,
            text=True,
            env=env(),
            cwd=ROOT,
            timeout=300,
        )
        runs[key] = {"rc": proc.returncode, "stderr": proc.stderr[-3000:], "events": no_time(events)}
    cli_summary = (
        json.loads((work / "cli-cluster.json").read_text()) if (work / "cli-cluster.json").exists() else {}
    )
    return {
        "worst_abs_diff": worst,
        "counts": counts,
        "shards": shards,
        "cli_rc": {k: r["rc"] for k, r in runs.items()},
        "cli_stderr": runs["cluster"]["stderr"],
        "cli_events_equal": sorted(map(json.dumps, runs["cluster"]["events"]))
        == sorted(map(json.dumps, no_time(single_events))),
        "cli_events": len(no_time(single_events)),
        "cli_shards": sorted({c.get("shard") for c in cli_summary.get("cameras", {}).values()}),
        "client": client,
    }


def client_run(videos: list[Path], over_auto: dict, options) -> dict:
    """The first cameras over Ray Client (ray://, the user's token) against their predictions over auto;
    then run_camera.py --cluster ray:// without a token."""
    import dataclasses

    from stream.cluster.address import parse_cluster_address
    from stream.cluster.controller import ClusterApp

    if not has_ray_client():
        return {"skipped": "Ray Client needs grpcio, which is not installed: pip install -e '.[cluster]'"}
    url = f"ray://127.0.0.1:{CLIENT_PORT}"
    got: dict = {}
    said: list[str] = []
    t = time.monotonic()
    app = ClusterApp(
        file_specs(videos), parse_cluster_address(url), model(),
        dataclasses.replace(options, on_prediction=collect(got)), say=said.append,
    )  # fmt: skip
    try:
        app.start()
        summary = app.run()
    finally:
        app.close()
    wall = time.monotonic() - t
    worst, counts = 0.0, {}
    for cam, preds in got.items():
        want = over_auto.get(cam, [])
        counts[cam] = (len(want), len(preds))
        if len(want) != len(preds) or [p[:2] for p in want] != [p[:2] for p in preds]:
            worst = float("inf")
            continue
        worst = max([worst, *(float(np.abs(a[2] - b[2]).max()) for a, b in zip(want, preds, strict=True))])
    no_token = {k: v for k, v in env().items() if k not in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")}
    no_token["HOME"] = str(Path(sys.argv[1]) / "home-without-token")  # not ~/.ray/auth_token either
    refused = subprocess.run(
        [sys.executable, str(ROOT / "run_camera.py"), "--source", "demo", "--cluster", url, "--no-dashboard"],
        capture_output=True, text=True, env=no_token, cwd=ROOT, timeout=120,
    )  # fmt: skip
    return {
        "worst_abs_diff": worst,
        "counts": counts,
        "shards": {name: s.shard for name, s in summary.cameras.items()},
        "said": said,
        "wall_s": round(wall, 1),
        "no_token_rc": refused.returncode,
        "no_token_stderr": refused.stderr[-2000:],
    }


def scenario_save(work: Path) -> dict:
    """run_camera.py --cluster auto --save DIR over 3 file cameras --fast: the files and the summary."""
    videos = [write_demo_video(work / f"save{i}.mp4", 4, seed=90 + i, fps=7.5, size=128) for i in range(3)]
    toml = work / "cams.toml"
    toml.write_text("".join(f'[[camera]]\nname = "cam{i}"\nsource = "{v}"\n' for i, v in enumerate(videos)))
    out, summary_path = work / "videos", work / "summary.json"
    proc = subprocess.run(
        [
            sys.executable, str(ROOT / "run_camera.py"), "--sources", str(toml), "--fast", "--headless",
            "--no-dashboard", "--backend", "openvino", "--precision", "fp32", "--cluster", "auto",
            "--save", str(out), "--summary-json", str(summary_path),
        ],
        capture_output=True, text=True, env=env(), cwd=ROOT, timeout=300,
    )  # fmt: skip
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {"cameras": {}}
    cameras = {}
    for i, video in enumerate(videos):
        s = summary["cameras"].get(f"cam{i}", {})
        cameras[f"cam{i}"] = {
            "source_frames": frames_in(video),
            "frames": s.get("frames"),
            "saved_frames": s.get("saved_frames"),
            "shard": s.get("shard"),
            "recordings": [
                {**r, "decoded": frames_in(Path(r["path"])) if Path(r["path"]).exists() else None}
                for r in s.get("recordings", [])
            ],
        }
    return {
        "rc": proc.returncode,
        "stderr": proc.stderr[-3000:],
        "cameras": cameras,
        "files": sorted(p.name for p in out.iterdir()) if out.is_dir() else [],
    }


def http(method: str, url: str, body: dict | None = None) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except OSError:
        return 0, b""


def scenario_web(work: Path) -> dict:
    """run_camera.py --cluster auto --serve: the page's API, pictures, a camera added and one removed."""
    import cv2

    base = "http://127.0.0.1:8765"
    cmd = [sys.executable, str(ROOT / "run_camera.py"), "--source", "a=demo", "--source", "b=demo",
           "--demo-size", "96", "--cluster", "auto", "--serve", "127.0.0.1:8765", "--duration", "60",
           "--no-dashboard", "--backend", "openvino", "--precision", "fp32"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    found: dict = {}

    def cameras() -> dict:
        code, body = http("GET", f"{base}/api/cameras")
        return {c["name"]: c for c in json.loads(body)} if code == 200 else {}

    def wait_for(test, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and proc.poll() is None:
            if test():
                return True
            time.sleep(0.2)
        return False

    def live(names: list[str]):
        def test() -> bool:
            now = cameras()
            return all(n in now and now[n]["predictions"] > 0 and now[n]["has_picture"] for n in names)

        return test

    try:
        found["up"] = wait_for(lambda: http("GET", f"{base}/healthz")[0] == 200, 120)
        found["both_live"] = wait_for(live(["a", "b"]), 30)
        code, jpeg = http("GET", f"{base}/cameras/a/snapshot.jpg")
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR) if code == 200 else None
        found["snapshot"] = [code, None if image is None else list(image.shape)]
        found["add"] = http("POST", f"{base}/api/cameras", {"name": "c", "source": "demo"})[0]
        found["added_live"] = wait_for(live(["c"]), 30)
        found["remove"] = http("DELETE", f"{base}/api/cameras/b")[0]
        found["after"] = sorted(cameras())
        code, body = http("GET", f"{base}/api/events")
        found["events"] = len(json.loads(body)) if code == 200 else None
        code, body = http("GET", f"{base}/metrics")
        found["metrics"] = code == 200 and b'glanet_predictions_total{camera="c"}' in body
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    found["rc"], found["stderr"] = proc.returncode, err[-3000:]
    return found


# stream.cli.archive as every archive run of these scenarios starts it
ARCHIVE = [
    sys.executable,
    "-m",
    "stream.cli.archive",
    "--no-progress",
    "--backend",
    "openvino",
    "--precision",
    "fp32",
]


def archive(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*ARCHIVE, *args],
        capture_output=True,
        text=True,
        env=env(),
        cwd=ROOT,
        timeout=timeout,
    )


def results_of(out: Path) -> dict:
    got = {}
    for folder in sorted(p for p in out.iterdir() if p.is_dir()):
        done = folder / "done.json"
        got[folder.name] = {
            "events": no_time(folder / "events.jsonl"),
            "predictions": (folder / "predictions.csv").read_text() if done.exists() else None,
            "done": done.exists(),
        }
    return got


def scenario_archive(work: Path) -> dict:
    folder = work / "footage"
    folder.mkdir()
    for i in range(12):
        write_demo_video(folder / f"video{i:02d}.mp4", 3, seed=60 + i, fps=7.5, size=128)
    one = archive("--videos", str(folder), "--out", str(work / "one"), "--batch", "1")
    cluster = archive(
        "--videos", str(folder), "--out", str(work / "cluster"), "--cluster", "auto", "--batch", "2"
    )
    a, b = results_of(work / "one"), results_of(work / "cluster")
    # killed after 3 videos are done, then run again
    out = work / "resumed"
    proc = subprocess.Popen(
        [
            *ARCHIVE,
            "--videos",
            str(folder),
            "--out",
            str(out),
            "--cluster",
            "auto",
            "--batch",
            "1",
        ],
        env=env(),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline, killed_after = time.monotonic() + 240, None
    while time.monotonic() < deadline and proc.poll() is None:
        done = sorted(out.glob("*/done.json")) if out.exists() else []
        if len(done) >= 3:
            proc.send_signal(signal.SIGKILL)
            killed_after = len(done)
            break
        time.sleep(0.05)
    proc.wait(timeout=30)
    before = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/done.json")}
    again = archive("--videos", str(folder), "--out", str(out), "--cluster", "auto", "--batch", "2")
    after = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/done.json")}
    c = results_of(out)
    return {
        "rc": [one.returncode, cluster.returncode, again.returncode],
        "stderr": (one.stderr + cluster.stderr + again.stderr)[-3000:],
        "videos": [len(a), len(b), len(c)],
        "all_done": all(r["done"] for r in (*a.values(), *b.values(), *c.values())),
        "cluster_equal": a == b,
        "resumed_equal": a == c,
        "killed_after": killed_after,
        "kept": sorted(before),
        "kept_untouched": all(after.get(k) == v for k, v in before.items()),
        "said_already_done": f"{len(before)} of 12 videos already done" in again.stderr,
        "events": sum(len(r["events"]) for r in a.values()),
    }


def shard_processes() -> set[int]:
    """The shard actors' processes on this machine (Ray titles an actor's worker `ray::Shard...`)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "cmdline").read_bytes().startswith(b"ray::Shard"):
                    found.add(int(entry.name))
    return found


def cpu_seconds(pid: int) -> float | None:
    """A process's CPU time so far (user and system); None once it is gone (or a zombie)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    if fields[0] in ("Z", "X"):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def watch_stop(pids: set[int], since: float, seconds: float, idle: float = 0.05) -> dict[int, dict]:
    """Each process watched for up to `seconds` from `since` (less once all are gone): when it went idle
    (under `idle` of a core in every 0.5 s from then on, for 1 s at least, or until it was gone) and when it
    was gone, in seconds from `since`, None if it did not; and its CPU use in its last second watched."""
    samples: dict[int, list[tuple[float, float | None]]] = {pid: [] for pid in pids}
    while time.monotonic() - since < seconds:
        now = time.monotonic()
        for pid in pids:
            samples[pid].append((now, cpu_seconds(pid)))
        if all(got[-1][1] is None for got in samples.values()):
            break
        time.sleep(0.1)
    out = {}
    for pid, got in samples.items():
        gone = next((t for t, c in got if c is None), None)
        alive = [(t, c) for t, c in got if c is not None]
        busy = [t2 for (t, c), (t2, c2) in zip(alive, alive[5:], strict=False) if (c2 - c) / (t2 - t) >= idle]
        quiet = max(busy) if busy else got[0][0]
        end = gone if gone is not None else got[-1][0] - 1.0
        went_idle = quiet if quiet <= end else None
        last = [(t, c) for t, c in alive if t >= got[-1][0] - 1.0]
        use = None
        if gone is None and len(last) >= 2:
            use = (last[-1][1] - last[0][1]) / (last[-1][0] - last[0][0])
        out[pid] = {
            "stopped_s": None if went_idle is None else round(went_idle - since, 2),
            "gone_s": None if gone is None else round(gone - since, 2),
            "gone": gone is not None,
            "cpu_last_s": None if use is None else round(use, 3),
        }
    return out


def predicting(cmd: list[str], events: Path, stderr: Path) -> tuple[subprocess.Popen, set[int], dict]:
    """`cmd` started, once both its shards are up and it has written an event: the driver, its shards'
    processes, and the CPU seconds each used in the second before (their cameras at work)."""
    before = shard_processes()
    start = events.stat().st_size if events.exists() else 0
    with stderr.open("wb") as err:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env(), stdout=subprocess.DEVNULL, stderr=err)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        written = events.read_bytes()[start:].count(b"\n") if events.exists() else 0
        if len(shard_processes() - before) >= 2 and written >= 1:
            break
        time.sleep(0.05)
    time.sleep(0.5)
    shards = shard_processes() - before
    cpu = {pid: cpu_seconds(pid) for pid in shards}
    time.sleep(1.0)
    busy = {str(pid): round((cpu_seconds(pid) or 0.0) - (c or 0.0), 2) for pid, c in cpu.items()}
    return proc, shards, {"alive": proc.poll() is None, "busy": busy}


def scenario_restart(work: Path) -> dict:
    """run_camera.py --cluster auto over 2 demo cameras with --events: its driver killed (SIGKILL) while the
    cameras predict; then the same command, its driver frozen (SIGSTOP: alive to Ray, silent to its shards);
    while that one is frozen, the same command again, to its end; then the frozen one killed. When each
    shard went idle and when its process went, the last run's cameras, the events file's lines by run."""
    events, summary_path = work / "events.jsonl", work / "summary.json"
    # 30 fps of 160 px: the shards' CPU use shows their cameras at work (about 0.25 of a core, idle 0.02)
    cmd = [sys.executable, str(ROOT / "run_camera.py"), "--source", "r0=demo", "--source", "r1=demo",
           "--demo-size", "160", "--demo-fps", "30", "--cluster", "auto", "--duration", "8", "--no-dashboard",
           "--backend", "openvino", "--precision", "fp32", "--events", str(events),
           "--summary-json", str(summary_path)]  # fmt: skip
    found: dict = {}
    cuts = [0]

    def size() -> int:
        return events.stat().st_size if events.exists() else 0

    proc, shards, run = predicting(cmd, events, work / "killed.stderr")
    proc.send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    proc.wait(timeout=30)
    run["after_kill"] = {str(p): w for p, w in watch_stop(shards, killed_at, 5.0).items()}
    run["stderr"] = (work / "killed.stderr").read_text(errors="replace")[-3000:]
    found["killed"] = run
    cuts.append(size())

    frozen, shards, run = predicting(cmd, events, work / "frozen.stderr")
    frozen.send_signal(signal.SIGSTOP)
    # each shard stops its cameras by its lease (3 s), and its process ends 10 s later (exit_after_s)
    run["stopped"] = {str(p): w for p, w in watch_stop(shards, time.monotonic(), 20.0).items()}
    run["stderr"] = (work / "frozen.stderr").read_text(errors="replace")[-3000:]
    found["frozen"] = run
    cuts.append(size())
    try:
        t = time.monotonic()  # the frozen driver still there: its shards must have given their CPUs back
        again = subprocess.run(cmd, capture_output=True, text=True, env=env(), cwd=ROOT, timeout=240)
    finally:
        frozen.send_signal(signal.SIGKILL)
        frozen.wait(timeout=30)
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {"cameras": {}}
    found["again"] = {
        "wall_s": round(time.monotonic() - t, 1), "rc": again.returncode, "stderr": again.stderr[-3000:],
        "cameras": {n: {"predictions": c.get("predictions"), "shard": c.get("shard")}
                    for n, c in summary["cameras"].items()},
    }  # fmt: skip
    data = events.read_bytes() if events.exists() else b""
    found["ends_whole"] = data.endswith(b"\n")
    found["unparsed"], runs = [], []
    for lo, hi in zip(cuts, [*cuts[1:], len(data)], strict=True):
        runs.append([])
        for line in data[lo:hi].splitlines():
            try:
                runs[-1].append(json.loads(line))
            except ValueError:
                found["unparsed"].append(line.decode(errors="replace"))
    lines = data.splitlines()
    found["lines"], found["duplicate_lines"] = len(lines), len(lines) - len(set(lines))
    found["per_camera"] = [
        {c: [e["event"] for e in run if e["camera"] == c] for c in ("r0", "r1")} for run in runs
    ]
    return found


def scenario_failover(work: Path) -> dict:
    import ray

    from stream.cluster.address import parse_cluster_address
    from stream.cluster.controller import ClusterApp
    from stream.runtime.spec import CameraSpec, StreamOptions
    from stream.sources.readers import parse_source

    specs = [
        CameraSpec(f"live{i}", parse_source("demo", demo_seed=70 + i, demo_size=128, demo_fps=15.0))
        for i in range(4)
    ]
    seen: list[tuple[float, str, int]] = []  # (time, camera, step) of every prediction
    events_path = work / "failover.jsonl"
    videos = work / "videos"
    options = StreamOptions(
        headless=True,
        dashboard=False,
        quiet=True,
        events=events_path,
        save=videos,
        on_prediction=lambda p: seen.append((time.monotonic(), p.frame.camera, p.step)),
    )
    app = ClusterApp(specs, parse_cluster_address("auto"), model(), options, lease_s=2.0, say=lambda _: None)
    placements: list[tuple[float, dict]] = []
    kill: dict = {}
    # each camera's first part: the frames the driver last heard were written, and when it first heard so
    heard: dict[str, tuple[int, float]] = {}
    try:
        app.start()
        head = ray.get_runtime_context().get_node_id()
        victim = next(s for s in app.shards if s.node != head)  # the worker node, not the head's
        t0 = time.monotonic()

        def watch() -> None:
            while not app.stopping:
                placements.append((time.monotonic(), {c.name: c.shard for c in app.live_cameras()}))
                if "at" not in kill:
                    for c in app.live_cameras():
                        if c.parts and (c.name not in heard or heard[c.name][0] != c.parts[0].frames):
                            heard[c.name] = (c.parts[0].frames, time.monotonic())
                if "at" not in kill and time.monotonic() - t0 > 6.0:
                    raylet = parent(victim.info["pid"])
                    pids = descendants(raylet)
                    kill.update(
                        raylet_comm=comm(raylet),
                        pids=len(pids),
                        shard=victim.name,
                        on_it=sorted(c.name for c in app.live_cameras() if c.shard == victim.name),
                    )
                    kill["at"] = time.monotonic()
                    kill["heard"] = {c: (n, round(kill["at"] - t, 3)) for c, (n, t) in heard.items()}
                    for pid in pids:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGKILL)
                if time.monotonic() - t0 > 20.0:
                    app.request_stop("scenario over")
                time.sleep(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        summary = app.run()
        watcher.join()
    finally:
        app.close()
    at = kill.get("at", float("inf"))
    moved = kill.get("on_it", [])
    survivor = next((s.name for s in app.shards if s.name != kill.get("shard")), "")
    back = {}  # camera -> seconds from the kill to its first prediction on the survivor
    for cam in moved:
        placed = next((t for t, p in placements if t > at and p.get(cam) == survivor), None)
        first = next((t for t, c, _ in seen if c == cam and placed is not None and t >= placed), None)
        back[cam] = None if first is None else first - at
    gaps = {}  # cameras that stayed: their longest gap between predictions
    for cam in (s.name for s in specs):
        if cam in moved:
            continue
        times = [t for t, c, _ in seen if c == cam]
        gaps[cam] = max(np.diff(times)) if len(times) > 1 else None
    events = [json.loads(x) for x in events_path.read_text().splitlines()]
    lines = events_path.read_text().splitlines()
    return {
        "kill": {k: v for k, v in kill.items() if k != "at"},
        "moved": moved,
        "back_s": back,
        "stayed_max_gap_s": gaps,
        "events": len(events),
        "duplicate_lines": len(lines) - len(set(lines)),
        "per_camera": {
            c.name: [(e["event"], e["label"]) for e in events if e["camera"] == c.name] for c in specs
        },
        "summary": {
            n: {"shard": s.shard, "moves": s.moves, "events": s.events, "predictions": s.predictions}
            for n, s in summary.cameras.items()
        },
        "shard_events": {
            c.name: [p.events for p in c.past] + ([c.now.events] if c.now else []) for c in app.cameras
        },
        "recordings": {
            name: [
                {
                    **r,
                    "decoded": frames_in(Path(r["path"])) if Path(r["path"]).exists() else None,
                    "fps": video_fps(Path(r["path"])),
                }
                for r in getattr(s, "recordings", [])
            ]
            for name, s in summary.cameras.items()
        },
    }


def video_fps(path: Path) -> float | None:
    import cv2

    if not path.exists():
        return None
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    return fps or None


def alive_nodes() -> int:
    """Nodes the cluster says are alive (the driver connects, asks and leaves)."""
    import ray

    ray.init(address="auto", logging_level="ERROR", log_to_driver=False)
    try:
        return sum(1 for n in ray.nodes() if n.get("Alive"))
    finally:
        ray.shutdown()


def scenario_join(work: Path) -> dict:
    from stream.cluster.address import parse_cluster_address
    from stream.cluster.controller import ClusterApp
    from stream.runtime.spec import CameraSpec, StreamOptions
    from stream.sources.readers import parse_source

    deadline = time.monotonic() + 90  # the node killed in failover: gone from the cluster's list first
    while alive_nodes() > 1 and time.monotonic() < deadline:
        time.sleep(1.0)
    specs = [
        CameraSpec(f"join{i}", parse_source("demo", demo_seed=80 + i, demo_size=128, demo_fps=15.0))
        for i in range(4)
    ]
    seen: list[tuple[float, str]] = []
    events_path = work / "join.jsonl"
    options = StreamOptions(
        headless=True, dashboard=False, quiet=True, events=events_path, save=work / "videos",
        on_prediction=lambda p: seen.append((time.monotonic(), p.frame.camera)),
    )  # fmt: skip
    said: list[str] = []
    app = ClusterApp(specs, parse_cluster_address("auto"), model(), options, lease_s=2.0, say=said.append)
    placements: list[tuple[float, dict]] = []
    joined: dict = {}
    try:
        app.start()
        first = [s.name for s in app.shards]
        t0 = time.monotonic()

        def watch() -> None:
            while not app.stopping:
                now = time.monotonic()
                placements.append((now, {c.name: c.shard for c in app.live_cameras()}))
                if "started" not in joined and now - t0 > 3.0:
                    joined["started"] = now
                    try:
                        ray_start("--address", f"127.0.0.1:{PORT}", "--node-ip-address", "127.0.0.1",
                                  "--num-cpus", "1")  # fmt: skip
                    except RuntimeError as e:
                        joined["error"] = str(e)
                    joined["up"] = time.monotonic()
                if "shard_at" not in joined and len(app.shards) > len(first):
                    joined["shard_at"] = now
                if now - t0 > 30.0:
                    app.request_stop("scenario over")
                time.sleep(0.05)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        summary = app.run()
        watcher.join()
    finally:
        app.close()
    new = [s.name for s in app.shards if s.name not in first]
    moved = sorted(c.name for c in app.cameras if new and c.shard == new[0])
    up = joined.get("up", float("inf"))
    back = {}  # camera -> seconds from the node's `ray start` returning to its first prediction on it
    for cam in moved:
        placed = next((t for t, p in placements if p.get(cam) == new[0]), None)
        at = next((t for t, c in seen if c == cam and placed is not None and t >= placed), None)
        back[cam] = None if at is None else round(at - up, 2)
    gaps = {}
    for cam in (s.name for s in specs if s.name not in moved):
        times = [t for t, c in seen if c == cam]
        gaps[cam] = round(float(max(np.diff(times))), 3) if len(times) > 1 else None
    lines = events_path.read_text().splitlines() if events_path.exists() else []
    events = [json.loads(x) for x in lines]
    return {
        "first": first,
        "new": new,
        "joined": {k: (round(v - t0, 2) if isinstance(v, float) else v) for k, v in joined.items()},
        "moved": moved,
        "back_s": back,
        "stayed_max_gap_s": gaps,
        "said": said,
        "duplicate_lines": len(lines) - len(set(lines)),
        "per_camera": {c.name: [e["event"] for e in events if e["camera"] == c.name] for c in specs},
        "summary": {n: {"shard": s.shard, "moves": s.moves} for n, s in summary.cameras.items()},
        "recordings": {
            name: [
                {**r, "decoded": frames_in(Path(r["path"])) if Path(r["path"]).exists() else None}
                for r in getattr(s, "recordings", [])
            ]
            for name, s in summary.cameras.items()
        },
    }


def run_each(work: Path, scenarios: dict, results: dict) -> None:
    """Each scenario on a folder of its own under `work`: its findings, or its error, and its wall time."""
    for name, scenario in scenarios.items():
        t = time.monotonic()
        folder = work / name
        folder.mkdir()
        try:
            results[name] = scenario(folder)
        except Exception:
            results[name] = {"error": traceback.format_exc()[-4000:]}
        results[name]["wall_s"] = round(time.monotonic() - t, 1)


def main() -> None:
    work = Path(sys.argv[1])
    os.environ.update(GLANET_CACHE_DIR=str(work / "cache"), RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="1", **AUTH)
    results: dict = {}
    t = time.monotonic()
    try:
        start_cluster()
        results["cluster_start_s"] = round(time.monotonic() - t, 1)
        scenarios = {
            "same": scenario_same,
            "save": scenario_save,
            "web": scenario_web,
            "archive": scenario_archive,
            "restart": scenario_restart,
        }
        run_each(work, {**scenarios, "failover": scenario_failover, "join": scenario_join}, results)
    except Exception:
        results["error"] = traceback.format_exc()[-4000:]
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, env=env(), timeout=60)
        (work / "results.json").write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
