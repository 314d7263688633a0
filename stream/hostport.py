"""`HOST:PORT`, `[IPv6]:PORT`, a host alone or a port alone -> (host, port): the one parser behind --mqtt,
--serve and --cluster ray://. Each caller puts its flag's name before the message and keeps its own words."""

from __future__ import annotations

import enum
import ipaddress
import re
from typing import NamedTuple

MAX_PORT = 65535
_NAME = re.compile(r"[A-Za-z0-9_.-]+")  # a host name as written: ASCII letters, digits, '-', '_' and dots


class Problem(enum.Enum):
    """What was wrong, for a caller that words some of it its own way."""

    HOST = "host"  # empty, not a name, not an address, brackets not closed
    NO_PORT = "no port"  # none given where the caller needs one
    PORT_NOT_A_NUMBER = "port not a number"  # ASCII digits only: '²' and '٣' are not port numbers
    PORT_OUT_OF_RANGE = "port out of range"


class AddressError(ValueError):
    """A host:port the parser refuses: one line without the flag's name, which the caller adds."""

    def __init__(self, problem: Problem, message: str) -> None:
        super().__init__(message)
        self.problem = problem


class HostPort(NamedTuple):
    host: str  # an IPv6 address without its brackets
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_host_port(
    text: str,
    *,
    form: str = "HOST:PORT",
    default_port: int | None = None,
    default_host: str | None = None,
    allow_zero: bool = False,
) -> HostPort:
    """`text` as `HOST:PORT` or `[IPv6]:PORT`; AddressError (a ValueError) else. `text` is taken as given:
    the caller strips it.

    default_port: a host alone is allowed (`broker.lan`, `[::1]`, and a bare IPv6 address: `::1`).
    default_host: a port alone is allowed (`8080`). allow_zero: port 0 (the system picks a free one).
    form: what the caller accepts, for the messages ("HOST or HOST:PORT").
    An IPv6 address with a port must be in brackets: `::1:8080` would be ambiguous.
    """
    port_text: str | None = None
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket:
            raise AddressError(Problem.HOST, "no ']' after the IPv6 address (give [ADDRESS]:PORT)")
        if rest:
            if not rest.startswith(":"):
                raise AddressError(Problem.HOST, "expected ':PORT' after ']'")
            port_text = rest[1:]
        if not _is_ipv6(host):
            raise AddressError(Problem.HOST, f"{host!r} in brackets is not an IPv6 address")
    elif text.count(":") > 1:  # a bare IPv6 address: no port can follow it unambiguously
        host = text
        if not _is_ipv6(host):
            raise AddressError(Problem.HOST, "not a host name, and not an IPv6 address (give [ADDRESS]:PORT)")
        if default_port is None:
            raise AddressError(
                Problem.HOST, "an IPv6 address with a port goes in brackets: give [ADDRESS]:PORT"
            )
    elif ":" in text:
        host, _, port_text = text.partition(":")
    elif default_host is not None:
        host, port_text = default_host, text
    else:
        host = text
    if not host:
        raise AddressError(Problem.HOST, f"the host is empty (give {form})")
    if not _NAME.fullmatch(host) and not _is_ipv6(host):
        raise AddressError(Problem.HOST, f"{host!r} is not a host name")
    if port_text is None:
        if default_port is None:
            raise AddressError(Problem.NO_PORT, f"no port (give {form})")
        return HostPort(host, default_port)
    return HostPort(host, parse_port(port_text, host=host, default_port=default_port, allow_zero=allow_zero))


def parse_port(
    text: str, *, host: str = "HOST", default_port: int | None = None, allow_zero: bool = False
) -> int:
    """A port number: ASCII digits (str.isdigit alone takes '²', which int() refuses, and '٣', which it
    reads as 3), in 1..65535, or 0..65535 with allow_zero."""
    if not (text.isascii() and text.isdigit()):
        example = f", e.g. {HostPort(host, default_port)}" if default_port is not None else ""
        raise AddressError(
            Problem.PORT_NOT_A_NUMBER, f"port {text!r} is not a number (give HOST:PORT{example})"
        )
    low = 0 if allow_zero else 1
    # the length first: int() of thousands of digits is refused past sys.get_int_max_str_digits()
    digits = text.lstrip("0") or "0"
    if len(digits) > len(str(MAX_PORT)) or not low <= int(digits) <= MAX_PORT:
        shown = digits if len(digits) <= 12 else f"{digits[:8]}..."
        raise AddressError(Problem.PORT_OUT_OF_RANGE, f"port {shown} is not in {low}..{MAX_PORT}")
    return int(digits)


def _is_ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


__all__ = ["MAX_PORT", "AddressError", "HostPort", "Problem", "parse_host_port", "parse_port"]
