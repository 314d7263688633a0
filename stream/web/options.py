"""What `--serve` asks for, checked before the model loads (no torch, no web framework imported here):
the address, the token, the names the server answers to, and the listening socket."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from dataclasses import dataclass

from stream.errors import StreamError
from stream.hostport import AddressError, HostPort, Problem, parse_host_port

TOKEN_ENV = "GLANET_TOKEN"
# a small send buffer (the connections inherit it): what a slow MJPEG viewer has not read yet waits in the
# kernel, so the less it holds the newer the picture that viewer sees next
SEND_BUFFER = 32 * 1024
# the names the loopback answers to: any Host header naming one of them is this server's own
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
_LABEL = r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_NAME = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")


class ServeError(StreamError):
    """The web view cannot start: a bad address, a missing token, a port in use. One line."""


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None  # required for any address but the loopback
    allow_files: bool = False  # may the API add file and folder sources (read from this machine's disk)
    allow_webcams: bool = False  # may it add this machine's webcams
    allow_private: bool = False  # may it add network sources at loopback, link-local, ... addresses
    hosts: tuple[str, ...] = ()  # --serve-host: more names the Host header may give (lower case)
    max_cameras: int = 16  # cameras in the run at once, with those added over the API
    max_fps: float = 15.0  # per viewer: the most pictures a second one MJPEG stream or tile gets
    jpeg_quality: int = 80

    def __repr__(self) -> str:  # never the token
        return f"ServeOptions(host={self.host!r}, port={self.port}, token={'***' if self.token else None})"

    def host_names(self) -> frozenset[str]:
        """The names a request's Host header may give (lower case, IPv6 without brackets): the loopback's,
        the address served on, and --serve-host's."""
        try:
            served = check_host_name(self.host)
        except ServeError:  # a name bind() took that is not a plain DNS name: compared as given
            served = self.host.lower()
        return frozenset((*LOOPBACK_NAMES, served, *self.hosts))


def check_host_name(text: str) -> str:
    """A --serve-host value: a DNS name or an IP address, without a port (the served port is the one);
    lower case, IPv6 without brackets."""
    name = text.strip().lower().rstrip(".")
    bare = name[1:-1] if name.startswith("[") and name.endswith("]") else name
    try:
        return str(ipaddress.ip_address(bare))
    except ValueError:
        pass
    if len(name) > 253 or not _HOST_NAME.match(name):
        raise ServeError(
            f"--serve-host {text!r}: give a host name or an address, without a port (e.g. glanet.lan)"
        )
    return name


def parse_serve_address(text: str) -> HostPort:
    """`PORT`, `HOST:PORT` or `[IPv6]:PORT` -> (host, port); host 127.0.0.1 when not given."""
    text = text.strip()
    try:
        return parse_host_port(text, form="PORT or HOST:PORT", default_host="127.0.0.1", allow_zero=True)
    except AddressError as error:
        if error.problem in (Problem.PORT_NOT_A_NUMBER, Problem.PORT_OUT_OF_RANGE):
            message = "the port must be a number in 0..65535 (0: any free port)"
        elif error.problem is Problem.NO_PORT:  # [IPv6] without a port
            message = "give [IPv6]:PORT"
        else:
            message = str(error)
        raise ServeError(f"--serve {text!r}: {message}") from None


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def resolve_token(host: str, token: str | None) -> str | None:
    """The token to check (the flag's, else GLANET_TOKEN's), or None on the loopback without one. Any other
    address without a token is refused: the cameras and the API would be open to the network."""
    token = token or os.environ.get(TOKEN_ENV) or None
    if token is not None and len(token) < 8:
        raise ServeError("the web view's token is too short: give at least 8 characters")
    if token is None and not is_loopback(host):
        raise ServeError(
            f"--serve on {host} (not the loopback) needs a token: give --serve-token or set {TOKEN_ENV} "
            "(every request but /healthz must then carry it)"
        )
    return token


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, made before the model loads so a taken port is told at once."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as error:
        raise ServeError(f"--serve {host}:{port}: unknown host ({error.strerror})") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as error:
        sock.close()
        raise ServeError(f"cannot serve on {host}:{port}: {error.strerror or error}") from None
    sock.set_inheritable(True)
    return sock
