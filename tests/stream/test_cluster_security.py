"""local:N is closed to the network, and what --cluster says about clusters that are not: inside a private
network namespace with a second address (cluster_security_scenarios.py runs there and reports; the tests
here judge). Every port local:N opens listens on the loopback alone and refuses a call without the run's
token (a real `ray.init` included), a token-less `ray start` cluster gets one warning line, and an address
that is not Ray fails in one line, exit 1, within seconds."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest
from test_cluster import scenario, scenarios_in_namespace

from stream.cluster.address import ClusterError
from stream.cluster.auth import TokenEnv
from stream.cluster.probe import wants_token

HERE = Path(__file__).resolve().parent
SETUP = (
    "ip link set lo up && ip link add veth0 type veth peer name veth1 && ip addr add 10.23.0.1/24 dev veth0"
    " && ip addr add 10.23.0.2/24 dev veth1 && ip link set veth0 up && ip link set veth1 up"
    " && ip route add default via 10.23.0.2 dev veth0"  # Ray picks the address of the default route
)
UNAUTHENTICATED = "status 16"


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    work = tmp_path_factory.mktemp("cluster-security")
    return scenarios_in_namespace(work, "cluster_security_scenarios.py", SETUP, timeout=420)


def table(ports) -> str:
    rows = [
        f"{p['port']:>5} {p['bound']:<10} {p['process']:<18} {p['kind']:<18} lo: {p['loopback']}"
        for p in ports
    ]
    return "\n" + "\n".join(rows)


@pytest.mark.timeout(420)
def test_local_cluster_ports_listen_on_the_loopback_alone(results):
    ports = scenario(results, "ports")
    assert ports["up"] and ports["rc"] == 0, ports["stderr"]
    everywhere = [p for p in ports["ports"] if p["everywhere"]]
    print(table(ports["ports"]))
    assert not everywhere, f"on every interface: {table(everywhere)}"
    kinds = {p["kind"] for p in ports["ports"]}
    assert {"gcs_server", "raylet", "core_worker", "runtime_env_agent"} <= kinds, table(ports["ports"])
    for p in ports["ports"]:  # from 10.23.0.2 to 10.23.0.1: nothing there
        for answer in (p["outer"].values() if p["kind"] not in ("gcs_server", "raylet", "core_worker")
                       else [c["none"] for c in p["outer"].values()]):  # fmt: skip
            text = answer if isinstance(answer, str) else json.dumps(answer)
            assert "refused" in text.lower(), f"port {p['port']} answered from outside: {table([p])}"


@pytest.mark.timeout(420)
def test_every_ray_port_refuses_a_call_without_the_token_and_takes_one_with_it(results):
    ports = scenario(results, "ports")
    for p in ports["ports"]:
        lo = p["loopback"]
        if p["kind"] in ("gcs_server", "raylet", "core_worker"):
            refused = [name for name, c in lo.items() if c["none"] == UNAUTHENTICATED]
            assert refused, f"port {p['port']} ({p['process']}) took a call without the token: {table([p])}"
            taken = [c["token"] for name, c in lo.items() if name in refused and "token" in c]
            assert all(t.startswith("status 0") for t in taken), f"the token was not taken: {table([p])}"
        elif p["kind"] == "runtime_env_agent":
            assert "401" in lo["none"] and "401" not in lo["token"], table([p])
    # a real Ray driver: no token, or a wrong one, runs nothing; the run's token runs a task
    for name in ("client_no_token", "client_wrong_token"):
        client = ports[name]
        assert client["rc"] != 0 and not client["ran"] and client["auth_error"], (name, client["tail"])
    assert ports["client_token"]["ran"], ports["client_token"]["tail"]


@pytest.mark.timeout(420)
def test_the_runs_token_is_private_and_gone_after_it(results):
    ports = scenario(results, "ports")
    assert ports["auth_mode"] == "token" and not ports["token_in_env"], ports  # a path in the env: no token
    assert ports["token_file_mode"] == "0o600" and ports["token_dir_mode"] == "0o700", ports
    assert not ports["token_in_stderr"], ports["stderr"]
    assert not ports["token_dir_left"], ports["token_dir"]


@pytest.mark.timeout(420)
def test_a_cluster_without_auth_gets_one_warning_line(results):
    found = scenario(results, "open")
    assert found["rc"] == 0 and "Traceback" not in found["stderr"], found["stderr"]
    warnings = [x for x in found["stderr"].splitlines() if "token authentication off" in x]
    assert len(warnings) == 1 and "RAY_AUTH_MODE=token" in warnings[0], found["stderr"]


@pytest.mark.timeout(420)
def test_an_address_that_is_not_ray_is_one_line_and_exit_1_in_bounded_time(results):
    found = scenario(results, "not_ray")
    says_for = {"silent": "no gRPC answer", "garbage": "not a gRPC server", "refused": "refused"}
    times = ", ".join(f"{kind} {found[kind]['s']}" for kind in says_for)
    print(f"\nnot Ray, seconds to fail (CLI start included): {times}")
    for kind, says in says_for.items():
        run = found[kind]
        lines = run["stderr"].strip().splitlines()
        assert run["rc"] == 1 and len(lines) == 1 and says in lines[0], (kind, run)
        assert "Traceback" not in run["stderr"]
        assert run["s"] < 30, f"{kind}: {run['s']} s to fail"  # the probe's 8 s plus the start


# -- no cluster needed ----------------------------------------------------------------------------------
def test_the_probe_says_in_one_line_what_is_not_ray():
    silent = socket.create_server(("127.0.0.1", 0))
    garbage = socket.create_server(("127.0.0.1", 0))
    threading.Thread(
        target=lambda: garbage.accept()[0].sendall(b"HTTP/1.1 400 Bad\r\n\r\n"), daemon=True
    ).start()
    refused = socket.create_server(("127.0.0.1", 0))
    closed_port = refused.getsockname()[1]
    refused.close()
    try:
        for port, says in (
            (silent.getsockname()[1], "no gRPC answer in 0.5 s"),
            (garbage.getsockname()[1], "not a gRPC server"),
            (closed_port, "connection refused"),
        ):
            t0 = time.monotonic()
            with pytest.raises(ClusterError, match=says):
                wants_token("127.0.0.1", port, timeout_s=0.5)
            assert time.monotonic() - t0 < 3
    finally:
        silent.close()
        garbage.close()


def test_the_token_env_is_put_back_and_its_file_removed(monkeypatch):
    for key in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(key, raising=False)
    env = TokenEnv()
    env.enable(generate=True)
    path = Path(os.environ["RAY_AUTH_TOKEN_PATH"])
    assert os.environ["RAY_AUTH_MODE"] == "token" and "RAY_AUTH_TOKEN" not in os.environ
    assert path.stat().st_mode & 0o777 == 0o600 and len(path.read_text()) == 64
    env.close()
    assert not path.parent.exists()
    assert not any(k.startswith("RAY_AUTH") for k in os.environ)
    monkeypatch.setenv("RAY_AUTH_TOKEN", "theirs")  # the user's token is used, not replaced
    env.enable(generate=True)
    assert os.environ["RAY_AUTH_TOKEN"] == "theirs" and "RAY_AUTH_TOKEN_PATH" not in os.environ
    env.close()
    assert "RAY_AUTH_MODE" not in os.environ
