"""The one host:port parser (stream/hostport.py) behind --mqtt, --serve and --cluster ray://: the forms, the
defaults each caller allows, ASCII port numbers only, and a one-line error that says what was wrong."""

from __future__ import annotations

import re

import pytest

from stream.cluster.address import parse_cluster_address
from stream.hostport import AddressError, HostPort, Problem, parse_host_port, parse_port
from stream.sinks.mqtt import MqttError, parse_address
from stream.web.options import ServeError, parse_serve_address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("broker.lan:1884", ("broker.lan", 1884)),
        ("10.0.0.2:8883", ("10.0.0.2", 8883)),
        ("[::1]:1883", ("::1", 1883)),
        ("[fe80::1%eth0]:80", ("fe80::1%eth0", 80)),
        ("my_host-2:1", ("my_host-2", 1)),
        ("h:65535", ("h", 65535)),
        ("h:00080", ("h", 80)),
    ],
)
def test_host_and_port(text, expected):
    assert parse_host_port(text) == expected


def test_what_a_caller_may_leave_out():
    assert parse_host_port("broker", default_port=1883) == ("broker", 1883)
    assert parse_host_port("[::1]", default_port=1883) == ("::1", 1883)
    assert parse_host_port("::1", default_port=1883) == ("::1", 1883)  # a bare IPv6 address: a host alone
    assert parse_host_port("8080", default_host="127.0.0.1") == ("127.0.0.1", 8080)
    assert parse_host_port("h:0", allow_zero=True) == ("h", 0)


@pytest.mark.parametrize(
    ("text", "problem", "why"),
    [
        ("", Problem.HOST, "the host is empty (give HOST:PORT)"),
        (":80", Problem.HOST, "the host is empty"),
        ("host", Problem.NO_PORT, "no port (give HOST:PORT)"),
        ("[::1]", Problem.NO_PORT, "no port"),
        ("[::1", Problem.HOST, "no ']'"),
        ("[::1]80", Problem.HOST, "expected ':PORT' after ']'"),
        ("[]:80", Problem.HOST, "'' in brackets is not an IPv6 address"),
        ("[host]:80", Problem.HOST, "'host' in brackets is not an IPv6 address"),
        ("::1:8080", Problem.HOST, "goes in brackets"),  # ambiguous: ::1 port 8080, or the address ::1:8080
        ("a:b:c:z", Problem.HOST, "not a host name, and not an IPv6 address"),
        ("user@host:80", Problem.HOST, "'user@host' is not a host name"),
        ("a b:80", Problem.HOST, "is not a host name"),
        ("host/x:80", Problem.HOST, "is not a host name"),
        ("café.lan:80", Problem.HOST, "is not a host name"),
        ("h:", Problem.PORT_NOT_A_NUMBER, "port '' is not a number"),
        ("h:abc", Problem.PORT_NOT_A_NUMBER, "port 'abc' is not a number"),
        ("h:-1", Problem.PORT_NOT_A_NUMBER, "not a number"),
        ("h:+80", Problem.PORT_NOT_A_NUMBER, "not a number"),
        ("h: 80", Problem.PORT_NOT_A_NUMBER, "not a number"),
        ("h:0", Problem.PORT_OUT_OF_RANGE, "port 0 is not in 1..65535"),
        ("h:65536", Problem.PORT_OUT_OF_RANGE, "port 65536 is not in 1..65535"),
        ("h:" + "9" * 5000, Problem.PORT_OUT_OF_RANGE, "port 99999999... is not in 1..65535"),
    ],
)
def test_refused_with_one_line_that_says_why(text, problem, why):
    with pytest.raises(AddressError, match=re.escape(why)) as info:
        parse_host_port(text)
    assert info.value.problem is problem
    assert isinstance(info.value, ValueError)
    assert "\n" not in str(info.value)


# '²' passes str.isdigit() and int() refuses it (a traceback, not a message); '٣' (Arabic-Indic three)
# passes both and int() reads it as 3: only ASCII digits are a port
@pytest.mark.parametrize("port", ["²", "٣", "８０", "1٣", "৪৪৩"])
def test_a_port_is_ascii_digits_only(port):
    with pytest.raises(AddressError, match="is not a number") as info:
        parse_port(port)
    assert info.value.problem is Problem.PORT_NOT_A_NUMBER


def test_a_host_port_prints_as_it_is_written():
    assert str(HostPort("::1", 1883)) == "[::1]:1883"
    assert str(HostPort("broker.lan", 1883)) == "broker.lan:1883"
    assert HostPort("h", 1) == ("h", 1)


# -- the three callers: their own words, the same rules -------------------------------------------------
@pytest.mark.parametrize("port", ["²", "٣"])
def test_every_caller_refuses_a_non_ascii_port_in_its_own_words(port):
    with pytest.raises(MqttError, match="is not a number"):
        parse_address(f"broker:{port}")
    with pytest.raises(ServeError, match=r"the port must be a number in 0\.\.65535"):
        parse_serve_address(f"127.0.0.1:{port}")
    with pytest.raises(ServeError, match=r"the port must be a number in 0\.\.65535"):
        parse_serve_address(port)
    with pytest.raises(ValueError, match="ray://HOST:PORT"):
        parse_cluster_address(f"ray://head:{port}")
    with pytest.raises(ValueError, match="local:N"):
        parse_cluster_address(f"local:{port}")


def test_serve_takes_a_port_alone_and_port_zero():
    assert parse_serve_address("8080") == ("127.0.0.1", 8080)
    assert parse_serve_address(" 0.0.0.0:0 ") == ("0.0.0.0", 0)
    assert parse_serve_address("[::]:8080") == ("::", 8080)
    with pytest.raises(ServeError, match=r"give \[IPv6\]:PORT"):
        parse_serve_address("[::1]")
    with pytest.raises(ServeError, match="goes in brackets"):
        parse_serve_address("::1:8080")
    with pytest.raises(ServeError, match="the host is empty"):
        parse_serve_address(":8080")


def test_mqtt_takes_a_host_alone_and_no_scheme():
    assert parse_address("broker") == ("broker", 1883)
    with pytest.raises(MqttError, match="without a scheme"):
        parse_address("mqtts://broker:8883")


def test_cluster_wants_a_port_and_says_its_range():
    assert parse_cluster_address("ray://[::1]:10001").url == "ray://[::1]:10001"
    with pytest.raises(ValueError, match="the port must be 1 to 65535"):
        parse_cluster_address("ray://head:0")
    with pytest.raises(ValueError, match="ray://HOST:PORT"):
        parse_cluster_address("ray://head")
