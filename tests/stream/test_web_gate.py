"""The request gate's and the source policy's rules on their own (found by trying the server as an attacker
would): ports written with non-ASCII digits, a Host without a port, a redirect through a backslash, cloud
metadata addresses inside the LAN ranges, a header given twice."""

from __future__ import annotations

import asyncio
import ipaddress
import json

from stream.web.gate import _same_origin, split_authority
from stream.web.policy import address_allowed


def test_a_port_of_non_ascii_digits_is_no_port():
    assert split_authority("127.0.0.1:1\u00b2") is None  # '²'.isdigit() is True, int('²') raises
    assert split_authority("127.0.0.1:8080") == ("127.0.0.1", 8080)


def test_a_host_without_a_port_is_the_default_port_not_any_port():
    assert not _same_origin({"host": "127.0.0.1", "origin": "http://127.0.0.1:9999"})
    assert _same_origin({"host": "127.0.0.1", "origin": "http://127.0.0.1"})
    assert _same_origin({"host": "glanet.lan", "origin": "https://glanet.lan"})  # behind a TLS proxy
    assert not _same_origin({"host": "127.0.0.1:1\u00b2", "origin": "http://127.0.0.1:1\u00b2"})


def test_cloud_metadata_addresses_inside_the_lan_ranges_are_refused():
    for text in ("100.100.100.200", "fd00:ec2::254", "2002:7f00:1::"):
        assert not address_allowed(ipaddress.ip_address(text)), text
    for text in ("192.168.1.20", "10.0.0.5", "fd12:3456::1", "100.64.0.7"):
        assert address_allowed(ipaddress.ip_address(text)), text


def test_the_token_redirect_never_leaves_the_server():
    from stream.web.gate import HostRule, RequestGate

    gate = RequestGate(None, "tok12345678", HostRule(frozenset({"127.0.0.1"}), 8080))
    for raw in (b"/\\evil.example/", b"//evil.example/", b"/\\/evil.example/", b"/cameras"):
        scope = {"raw_path": raw, "path": raw.decode(), "query_string": b"token=tok12345678&x=1"}
        status, headers, _ = gate._redirect_without_token(scope)
        location = dict(headers)[b"location"].decode()
        assert status == 303 and location.startswith("/"), location
        assert not location.startswith(("//", "/\\")) and "\\" not in location, location
        assert "token" not in location and location.endswith("?x=1"), location


def _through_gate(headers: list[tuple[bytes, bytes]], method: str = "POST") -> tuple[int, str, bool]:
    """A request through the gate alone: its status, its error, whether the routes behind it saw it."""
    from stream.web.gate import HostRule, RequestGate

    reached = []

    async def app(scope, receive, send):
        reached.append(scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request", "body": b"{}", "more_body": False}

    gate = RequestGate(app, None, HostRule(frozenset({"127.0.0.1"}), 8080))
    scope = {
        "type": "http",
        "method": method,
        "path": "/api/cameras",
        "query_string": b"",
        "headers": headers,
    }
    asyncio.run(gate(scope, receive, send))
    status = sent[0]["status"]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return status, json.loads(body).get("error", "") if status != 200 else "", bool(reached)


def test_a_header_the_rules_read_given_twice_is_refused():
    host = (b"host", b"127.0.0.1:8080")
    json_type = (b"content-type", b"application/json")
    ours, theirs = (b"origin", b"http://127.0.0.1:8080"), (b"origin", b"http://evil.example")
    assert _through_gate([host, ours, json_type]) == (200, "", True)
    for headers in (
        [host, ours, theirs, json_type],  # the gate read the last Origin, Starlette the first
        [host, theirs, ours, json_type],
        [host, (b"Host", b"evil.example"), json_type],
        [host, json_type, (b"content-type", b"text/plain")],
        [host, (b"authorization", b"Bearer a"), (b"authorization", b"Bearer b"), json_type],
    ):
        status, error, reached = _through_gate(headers)
        assert (status, reached) == (400, False), headers
        assert "given more than once" in error, error
    # headers no rule reads may repeat, as HTTP allows
    assert _through_gate([host, json_type, (b"accept", b"a"), (b"accept", b"b")], "GET")[0] == 200


FIB_TRIE = """Main:
  +-- 0.0.0.0/0 3 0 5
     |-- 0.0.0.0
        /0 universe UNICAST
     +-- 127.0.0.0/8 2 0 2
           |-- 127.0.0.1
              /32 host LOCAL
     +-- 192.168.1.0/24 2 0 2
           |-- 192.168.1.0
              /24 link UNICAST
           |-- 192.168.1.23
              /32 host LOCAL
        |-- 192.168.1.255
           /32 link BROADCAST
"""


def test_this_machines_ipv4_addresses_are_read_from_the_kernels_local_routes():
    from stream.web.policy import _local_ipv4

    assert _local_ipv4(FIB_TRIE) == {ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("192.168.1.23")}


OWN_ADDRESS_SCRIPT = """
import asyncio, ipaddress
from stream.web.policy import SourcePolicy, SourceRefused, own_addresses
own = own_addresses()
assert ipaddress.ip_address("10.23.0.1") in own and ipaddress.ip_address("fd12::1") in own, own
policy = SourcePolicy(allow_files=False, allow_private=False)
def refused(url):
    try:
        asyncio.run(policy.check_network(url))
    except SourceRefused:
        return True
    return False
assert refused("rtsp://10.23.0.1:554/x") and refused("http://[fd12::1]:8000/"), "own address allowed"
assert not refused("rtsp://10.23.0.9:554/x") and not refused("rtsp://[fd12::9]/"), "a LAN camera refused"
assert not asyncio.run(SourcePolicy(False, allow_private=True).check_network("rtsp://10.23.0.1/"))
print("ok")
"""


def test_this_machines_own_lan_addresses_are_refused_like_the_loopback():
    """In a private network namespace with 10.23.0.1 and fd12::1 on a veth interface: those are refused
    (a LAN address of this machine reaches its services as 127.0.0.1 does), their neighbours are not. No
    packet is sent: the policy only reads addresses."""
    import os
    import subprocess
    import sys

    import pytest
    from test_cluster import namespace_problem

    problem = namespace_problem()
    if problem is not None:
        pytest.skip(problem)
    setup = (
        "ip link set lo up && ip link add veth0 type veth peer name veth1"
        " && ip addr add 10.23.0.1/24 dev veth0 && ip -6 addr add fd12::1/64 dev veth0 nodad"
        " && ip link set veth0 up && ip link set veth1 up"
    )
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    script = f"{setup} && exec {sys.executable} -c '{OWN_ADDRESS_SCRIPT}'"
    done = subprocess.run(
        ["unshare", "--net", "bash", "-c", script], capture_output=True, text=True, timeout=60, cwd=root
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_webcams_need_their_own_flag():
    import pytest

    from stream.web.policy import SourcePolicy, SourceRefused

    with pytest.raises(SourceRefused, match="--serve-allow-webcams"):
        SourcePolicy(allow_files=True, allow_private=True).check_kind("webcam")
    SourcePolicy(False, False, allow_webcams=True).check_kind("webcam")
