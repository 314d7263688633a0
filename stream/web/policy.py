"""Which sources the HTTP API may add as cameras. An API client must not be able to turn the run into a probe
of this machine (a port scanner of its loopback services, an oracle of which files exist, a reader of the
cloud's metadata service) through the status an added camera shows.

- File and folder sources need --serve-allow-files, and are refused before the file system is looked at.
- Webcams (a device index) need --serve-allow-webcams: the API would otherwise turn on a camera in the
  room, and the web view show it.
- A network source's host may not be one of this machine's own addresses (its interfaces', read at each
  check) unless --serve-allow-private: a LAN address of this machine reaches its services as the
  loopback does.
- A camera added over the API that fails to open says only that, not why (refused, no answer, answered
  without a stream: a port scanner of the LAN hosts otherwise); see stream.sources.network.NOT_EXPLAINED.
- A network source's host is resolved once, here (off the event loop, within a time limit), and every
  address it resolves to is checked. Refused unless --serve-allow-private: loopback, link-local
  (169.254/16 with the cloud metadata services, fe80::/10), unspecified (0.0.0.0/8, ::), multicast,
  reserved and the other special-purpose ranges. Allowed: public addresses, and the LAN (10/8, 172.16/12,
  192.168/16, 100.64/10 carrier-grade NAT, fc00::/7 unique-local), where nearly every IP camera is.
- Every refusal of a network source is the same answer (status and text, whatever the host, the port, or
  whether the name resolves); every refusal of a file source is too.

Not defended here (the reader opens the URL itself, later): a name whose DNS answer changes between this
check and FFmpeg's own lookup (DNS rebinding; at every reconnect too), an HTTP or RTSP server that
redirects the reader elsewhere, and an HLS playlist that lists segments on other hosts.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import socket
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from stream.errors import StreamError

REFUSED_STATUS = 403
REFUSED_FILE = (
    "source refused: file and folder sources cannot be added over the API "
    "(start the run with --serve-allow-files to allow them)"
)
REFUSED_WEBCAM = (
    "source refused: this machine's webcams cannot be added over the API "
    "(start the run with --serve-allow-webcams to allow them)"
)
REFUSED_NETWORK = (
    "source refused: a network camera added over the API must have a host that resolves, and only to "
    "public or LAN addresses, not this machine's own, link-local, multicast or reserved ones "
    "(start the run with --serve-allow-private to allow those)"
)
RESOLVE_TIMEOUT_S = 5.0
RESOLVERS = 4  # lookups at once; a lookup that hangs holds one thread, never the event loop

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
LAN = tuple(
    ipaddress.ip_network(network)
    for network in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7")
)
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")  # 0.x.y.z: Linux connects 0.0.0.0 to the loopback
_NAT64 = ipaddress.ip_network("64:ff9b::/96")  # an IPv4 address inside an IPv6 one
# cloud metadata services inside the LAN ranges (Alibaba's 100.100.100.200, AWS's over IPv6), and 6to4
_DENIED = tuple(
    ipaddress.ip_network(network) for network in ("100.100.100.200/32", "fd00:ec2::/32", "2002::/16")
)
_HOST_CHARS = re.compile(r"^[A-Za-z0-9_.:-]+(%[A-Za-z0-9._-]+)?$")  # a name, an address, an IPv6 zone


class SourceRefused(StreamError):
    """The API does not add this source; str() is the answer's whole text."""


def address_allowed(address: IPAddress) -> bool:
    """A public or LAN address: one an API-added camera may have without --serve-allow-private."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        elif address in _NAT64:
            address = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if (
        address.is_loopback
        or address.is_link_local
        or address.is_unspecified
        or address.is_multicast
        or address.is_reserved
        or address in _THIS_NETWORK
        or any(address in network for network in _DENIED if network.version == address.version)
    ):
        return False
    return any(address in network for network in LAN) or address.is_global


def url_host(url: str) -> str | None:
    """The host a network source's URL connects to, or None where the URL does not say one host plainly.

    Read as FFmpeg reads it (the authority ends at the first '/', '?' or '#', the host follows its last
    '@') and as the rest of glanet reads it (the host follows the URL's last '@', since a raw password may
    hold '/' or '?'). Where the two differ (`rtsp://127.0.0.1/x@203.0.113.5/`) there is no telling which
    one a reader will connect to: None, refused."""
    rest = url.partition("://")[2]
    ffmpeg = _host_of(re.split(r"[/?#]", rest, maxsplit=1)[0].rpartition("@")[2])
    ours = _host_of(re.split(r"[/?#]", rest.rpartition("@")[2], maxsplit=1)[0])
    if ffmpeg is None or ffmpeg != ours or not _HOST_CHARS.match(ffmpeg):
        return None
    return ffmpeg


def _host_of(authority: str) -> str | None:
    if authority.startswith("["):
        inner, sep, _ = authority[1:].partition("]")
        return inner.lower() if sep and inner else None
    host = authority.partition(":")[0]
    return host.lower().rstrip(".") or None


class SourcePolicy:
    """The checks of the module's docstring, for one server; `check_network` resolves in its own threads."""

    def __init__(
        self,
        allow_files: bool,
        allow_private: bool,
        allow_webcams: bool = False,
        timeout_s: float = RESOLVE_TIMEOUT_S,
    ) -> None:
        self.allow_files, self.allow_private, self.timeout_s = allow_files, allow_private, timeout_s
        self.allow_webcams = allow_webcams
        self._resolvers = ThreadPoolExecutor(RESOLVERS, thread_name_prefix="glanet-resolve")

    def check_kind(self, kind: str) -> None:
        """Before the source is parsed: a file or folder source (`kind` "path") without --serve-allow-files
        is refused without a look at the disk, a webcam without --serve-allow-webcams."""
        if kind in ("path", "file", "folder") and not self.allow_files:
            raise SourceRefused(REFUSED_FILE)
        if kind == "webcam" and not self.allow_webcams:
            raise SourceRefused(REFUSED_WEBCAM)

    async def check_network(self, url: str) -> None:
        """A network source's host resolves, within the time limit, and only to allowed addresses."""
        if self.allow_private:
            return
        host = url_host(url)
        if host is None:
            raise SourceRefused(REFUSED_NETWORK)
        loop = asyncio.get_running_loop()
        lookup = loop.run_in_executor(self._resolvers, _addresses, host)
        try:
            addresses = await asyncio.wait_for(lookup, self.timeout_s)
        except (TimeoutError, OSError, UnicodeError, ValueError):
            raise SourceRefused(REFUSED_NETWORK) from None
        own = await loop.run_in_executor(self._resolvers, own_addresses)
        if not addresses or not all(address_allowed(a) and a not in own for a in addresses):
            raise SourceRefused(REFUSED_NETWORK)

    def close(self) -> None:
        self._resolvers.shutdown(wait=False, cancel_futures=True)


def _addresses(host: str) -> list[IPAddress]:
    """Every address `host` resolves to, as the reader's own lookup (getaddrinfo) would find them: so
    2130706433, 0x7f.1 and 127.1 are 127.0.0.1 here too."""
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    return [ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in infos]


def own_addresses() -> frozenset[IPAddress]:
    """This machine's interface addresses, as the kernel has them now (Linux: /proc/net/fib_trie's local
    routes for IPv4, /proc/net/if_inet6 for IPv6; elsewhere what the host name resolves to)."""
    found: set[IPAddress] = set()
    with contextlib.suppress(OSError):
        found |= _local_ipv4(Path("/proc/net/fib_trie").read_text())
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/net/if_inet6").read_text().splitlines():
            hex_address = line.split()[0]
            found.add(ipaddress.IPv6Address(bytes.fromhex(hex_address)))
    if not found:
        with contextlib.suppress(OSError, UnicodeError, ValueError):
            found |= set(_addresses(socket.gethostname()))
    return frozenset(found)


def _local_ipv4(fib_trie: str) -> set[IPAddress]:
    """The addresses of /proc/net/fib_trie's "/32 host LOCAL" leaves: every IPv4 address of this host."""
    found: set[IPAddress] = set()
    lines = fib_trie.splitlines()
    for i, line in enumerate(lines[1:], 1):
        if "/32 host LOCAL" in line:
            leaf = lines[i - 1].strip().removeprefix("|-- ").removeprefix("+-- ")
            with contextlib.suppress(ValueError):
                found.add(ipaddress.IPv4Address(leaf))
    return found
