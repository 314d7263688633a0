"""What Ray's ports give away, run INSIDE a private network namespace with the loopback and a veth pair
(10.23.0.1 here, 10.23.0.2 its peer: a second address, as a machine on a network has; no route leaves).

    unshare --net --pid --fork --mount-proc bash -c '<ip setup> && python cluster_security_scenarios.py WORK'

Writes WORK/results.json; test_cluster_security.py judges. The scenarios:
- ports: run_camera.py --cluster local:2 (its own token); every listening TCP port (`ss -ltnp`) called
  from 10.23.0.2 and from the loopback without the token, and with it; `ray.init` at the GCS without the
  token (must fail, no task runs) and with it (a task runs);
- open: a `ray start --head` cluster with auth off: --cluster auto says so in one warning line;
- not_ray: --cluster auto with RAY_ADDRESS at a listener that never answers, one that sends garbage,
  and a refused port: one line, exit 1, in bounded time.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path[:0] = [str(ROOT), str(HERE)]

from cluster_scenarios import run_each  # noqa: E402

from stream.cluster.probe import GCS_CALL, grpc_call  # noqa: E402

RAY = str(Path(sys.executable).with_name("ray"))
OUTER, PEER = "10.23.0.1", "10.23.0.2"  # this namespace's non-loopback address and the client's
CALLS = {  # per Ray process: read-only calls (an empty request reads nothing / asks about nothing)
    "gcs_server": [GCS_CALL],
    "raylet": ["/ray.rpc.NodeManagerService/GetNodeStats", "/ray.rpc.ObjectManagerService/Pull"],
    "core_worker": ["/ray.rpc.CoreWorkerService/GetCoreWorkerStats"],
}
AUTH_ENV = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
GLANET = [sys.executable, str(ROOT / "run_camera.py"), "--source", "demo", "--demo-size", "96",
          "--no-dashboard", "--backend", "openvino", "--precision", "fp32"]  # fmt: skip


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if k not in AUTH_ENV}
    return {**base, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1", "PYTHONPATH": str(ROOT), **extra}


def listening() -> list[dict]:
    """Every listening TCP socket: port, the address it is bound to, its processes."""
    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, timeout=10).stdout
    found = []
    for line in out.splitlines():
        parts = line.split()
        local = parts[3]
        addr, _, port = local.rpartition(":")
        procs = re.findall(r'\("([^"]+)",pid=(\d+)', line)
        bound = addr.strip("[]").removeprefix("::ffff:")
        name = procs[0][0] if procs else "?"
        found.append({"port": int(port), "bound": bound, "process": name, "pids": [int(p) for _, p in procs]})
    return found


def kind_of(entry: dict) -> str:
    name = entry["process"]
    if name in ("gcs_server", "raylet"):
        return name
    cmdline = Path(f"/proc/{entry['pids'][0]}/cmdline").read_bytes().decode(errors="replace")
    if name.startswith("ray::RuntimeEnv") or "runtime_env" in cmdline:
        return "runtime_env_agent"
    if "monitor.py" in cmdline:
        return "autoscaler_monitor"
    if "ray/dashboard/" in cmdline or name.startswith("ray::Dashboard"):
        return "dashboard"
    return "core_worker"  # a driver's or worker's own gRPC server (run_camera.py, ray::Shard ...)


def http_get(host: str, port: int, token: str | None, source: str | None) -> str:
    """The status line of GET / (with the token as Ray's HTTP servers take it)."""
    try:
        sock = socket.create_connection(
            (host, port), timeout=3, source_address=(source, 0) if source else None
        )
    except OSError as e:
        return f"connect: {type(e).__name__}"
    with sock:
        auth = f"Authorization: Bearer {token}\r\n" if token else ""
        sock.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n".encode())
        try:
            head = sock.recv(200).decode(errors="replace").splitlines()
        except OSError as e:
            return f"recv: {type(e).__name__}"
    return head[0] if head else "no answer"


def grpc_status(host: str, port: int, path: str, token: str | None, source: str | None) -> str:
    """grpc-status of one call, or why there was none; the client socket bound to `source`."""
    real = socket.create_connection

    def bound(address, timeout=None, source_address=None, **kw):  # the probe binds no source itself
        return real(address, timeout, (source, 0) if source else source_address, **kw)

    socket.create_connection = bound  # type: ignore[assignment]
    try:
        status, message = grpc_call(host, port, path, 4.0, token)
        return f"status {status}" + (" with a reply" if message else "")
    except Exception as e:
        return f"error: {e}"
    finally:
        socket.create_connection = real  # type: ignore[assignment]


def probe_port(entry: dict, token: str) -> dict:
    kind = kind_of(entry)
    out = {**entry, "kind": kind}
    everywhere = entry["bound"] in ("*", "0.0.0.0", "::", OUTER)
    out["everywhere"] = everywhere
    targets = {"outer": (OUTER, PEER), "loopback": ("127.0.0.1", None)}
    for where, (host, source) in targets.items():
        if kind in ("runtime_env_agent", "autoscaler_monitor", "dashboard"):
            out[where] = {"none": http_get(host, entry["port"], None, source),
                          "token": http_get(host, entry["port"], token, source)}  # fmt: skip
            continue
        calls = {}
        for path in CALLS.get(kind, CALLS["core_worker"]):
            name = path.rsplit("/", 1)[1]
            calls[name] = {"none": grpc_status(host, entry["port"], path, None, source)}
            if name != "Pull":  # an authorized Pull with no object asks the raylet for nothing sane
                calls[name]["token"] = grpc_status(host, entry["port"], path, token, source)
        out[where] = calls
    return out


CLIENT = r"""
import os, sys, ray
marker = sys.argv[2]
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
@ray.remote(num_cpus=0)
def touch():
    open(marker, "w").write("ran")
    return os.getpid()
print("task ran in", ray.get(touch.remote(), timeout=60))
"""


def ray_client(gcs: str, token: str | None, work: Path, name: str) -> dict:
    """A real Ray driver at the GCS, in a fresh process: with no token it must not get to run a task."""
    marker = work / f"{name}.ran"
    extra = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token} if token else {}
    home = tempfile.mkdtemp(prefix="home-", dir=work)  # no ~/.ray/auth_token to fall back on
    # 127.0.0.1 kept as is (Ray would swap it for 10.23.0.1, where a loopback GCS does not listen)
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", CLIENT, gcs, str(marker)], capture_output=True, text=True, timeout=60,
            env=env(HOME=home, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", **extra),
        )  # fmt: skip
        rc, err = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as e:
        rc, err = None, f"timed out: {(e.stderr or b'')[-1500:]!r}"
    return {"rc": rc, "ran": marker.exists(), "s": round(time.monotonic() - t0, 1), "tail": err[-1500:],
            "auth_error": bool(re.search(r"(?i)authenticat|UNAUTHENTICATED|token", err))}  # fmt: skip


def scenario_ports(work: Path) -> dict:
    errors: list[str] = []
    proc = subprocess.Popen(
        [*GLANET, "--cluster", "local:2", "--duration", "90"], cwd=ROOT, env=env(),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()  # type: ignore[arg-type]
    found: dict = {}
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None and not any("shards:" in x for x in lines):
            time.sleep(0.5)
        found["up"] = any("shards:" in x for x in lines)
        time.sleep(2)  # the workers' own servers
        ports = listening()
        gcs = next(p for p in ports if p["process"] == "gcs_server")
        environ = dict(
            x.split("=", 1)
            for x in Path(f"/proc/{gcs['pids'][0]}/environ").read_text().split("\0")
            if "=" in x
        )
        token_path = Path(environ["RAY_AUTH_TOKEN_PATH"])
        found["token_file_mode"] = oct(token_path.stat().st_mode & 0o777)
        found["token_dir_mode"] = oct(token_path.parent.stat().st_mode & 0o777)
        found["token_dir"] = str(token_path.parent)
        found["auth_mode"] = environ.get("RAY_AUTH_MODE")
        found["token_in_env"] = "RAY_AUTH_TOKEN" in environ
        token = token_path.read_text().strip()
        found["ports"] = [probe_port(p, token) for p in ports]
        gcs_at = f"127.0.0.1:{gcs['port']}"
        found["client_no_token"] = ray_client(gcs_at, None, work, "no-token")
        found["client_wrong_token"] = ray_client(gcs_at, "0" * 64, work, "wrong-token")
        found["client_token"] = ray_client(gcs_at, token, work, "token")
    except Exception:
        errors.append(traceback.format_exc()[-3000:])
        token = ""
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    time.sleep(0.5)
    stderr = "".join(lines)
    found["rc"] = proc.returncode
    found["stderr"] = stderr[-3000:]
    found["token_in_stderr"] = bool(token) and token in stderr
    found["token_dir_left"] = bool(found.get("token_dir")) and Path(found["token_dir"]).exists()
    if errors:
        found["error"] = errors[0]
    return found


def glanet_auto(extra_env: dict[str, str], seconds: str = "3", timeout: float = 120) -> dict:
    t0 = time.monotonic()
    proc = subprocess.run(
        [*GLANET, "--cluster", "auto", "--duration", seconds], cwd=ROOT, env=env(**extra_env),
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    return {"rc": proc.returncode, "stderr": proc.stderr[-3000:], "s": round(time.monotonic() - t0, 1)}


def scenario_open(work: Path) -> dict:
    start = subprocess.run(
        [RAY, "start", "--disable-usage-stats", "--head", "--port", "6392", "--node-ip-address", "127.0.0.1",
         "--num-cpus", "1", "--include-dashboard", "false"],
        capture_output=True, text=True, timeout=120, env=env(RAY_AUTH_MODE="disabled", HOME=str(work)),
    )  # fmt: skip
    try:
        if start.returncode != 0:
            return {"error": f"ray start failed: {start.stderr[-2000:]}"}
        return glanet_auto({"RAY_ADDRESS": "127.0.0.1:6392", "HOME": str(work)})
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=60, env=env())


def serve(kind: str) -> tuple[socket.socket, threading.Thread]:
    """A TCP listener on every address of the namespace that is not Ray: silent, or sending garbage."""
    server = socket.create_server(("0.0.0.0", 0))
    held: list[socket.socket] = []

    def run() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)  # kept open: a silent peer, not a closed one
            if kind == "garbage":
                with contextlib.suppress(OSError):
                    conn.sendall(os.urandom(64) + b"HTTP/1.1 200 OK\r\n\r\nhello")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return server, thread


def scenario_not_ray(work: Path) -> dict:
    found = {}
    for kind in ("silent", "garbage"):
        server, _ = serve(kind)
        try:
            found[kind] = glanet_auto({"RAY_ADDRESS": f"127.0.0.1:{server.getsockname()[1]}"}, timeout=90)
        finally:
            server.close()
    spare = socket.create_server(("0.0.0.0", 0))
    port = spare.getsockname()[1]
    spare.close()  # nothing listens there now
    found["refused"] = glanet_auto({"RAY_ADDRESS": f"127.0.0.1:{port}"}, timeout=90)
    return found


def main() -> None:
    work = Path(sys.argv[1])
    os.environ["GLANET_CACHE_DIR"] = str(work / "cache")
    # the export cache filled once here, as cluster_scenarios does, so that the nodes do not each export
    # (compiles into one cold OpenVINO cache at once are serialised by the engine: test_openvino.py)
    from stream.runtime.model import ModelChoice, open_model

    open_model(ModelChoice(), max_batch=1, say=lambda _: None)
    results: dict = {}
    run_each(work, {"ports": scenario_ports, "open": scenario_open, "not_ray": scenario_not_ray}, results)
    (work / "results.json").write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
