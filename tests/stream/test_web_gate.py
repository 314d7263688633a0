"""The request gate's and the source policy's rules on their own (found by trying the server as an attacker
would): ports written with non-ASCII digits, a Host without a port, a redirect through a backslash, cloud
metadata addresses inside the LAN ranges."""

from __future__ import annotations

import ipaddress

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
