"""What every request passes before a route sees it, and what every response carries: the Host header names
this server (DNS rebinding), the token where there is one, a state-changing request comes from this
server's own page or carries the token itself (CSRF), a body is JSON and not over the cap.

Why each rule holds against a web page the operator happens to visit (the server itself may have no token:
the loopback default):
- A page can make the browser send a "simple" cross-site POST (a form, `text/plain`) without asking: the
  browser then always sends `Origin` (and `Sec-Fetch-Site`), so a foreign or `null` Origin is refused, and
  so is a body that is not `application/json` (a page can only send that type cross-site after a CORS
  preflight, which this server never grants). No Origin at all is a client that is not a browser (curl,
  Home Assistant): it passes, with a JSON body.
- A page on another port of the same machine is "same-site" and gets the SameSite cookie sent along: the
  Origin check still refuses it.
- DNS rebinding points a name the page owns at 127.0.0.1 after it loaded, so that its requests become
  same-origin and it can read the answers; they still say `Host: evil.example`, and a Host that is not
  one of this server's names is refused on every request, GET included, /healthz included.
- `Authorization: Bearer` is an explicit credential a page cannot add cross-origin without a preflight:
  a request carrying the right one passes the Origin rule.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from http.cookies import SimpleCookie
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "glanet_token"
MAX_BODY = 64 * 1024  # the largest request body read (a camera's JSON is a few hundred bytes)
STATE_CHANGING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# the headers a rule here reads: given twice, this gate and the routes behind it could read different
# ones (here the last, Starlette the first), so a request that repeats one is refused
SINGLE_HEADERS = frozenset(
    {"host", "origin", "sec-fetch-site", "sec-fetch-mode", "sec-fetch-dest", "authorization", "cookie",
     "content-type", "content-length", "transfer-encoding"}
)  # fmt: skip
# on every response: no Referer leaves the page (its URL may have held ?token=), no type sniffing, no
# framing (clickjacking of the remove buttons), nothing loaded but this server's own files, and no other
# site may embed the pictures
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (
        b"content-security-policy",
        b"default-src 'self'; img-src 'self' blob:; object-src 'none'; base-uri 'none'; "
        b"form-action 'self'; frame-ancestors 'none'",
    ),
    (b"cross-origin-resource-policy", b"same-origin"),
)
_DEFAULT_PORTS = {"http": 80, "https": 443}
_PORT = re.compile(r"[0-9]{1,5}")
_DIGITS = re.compile(r"[0-9]{1,20}")


def split_authority(text: str) -> tuple[str, int | None] | None:
    """`name[:port]` or `[IPv6][:port]` -> (name in lower case without a trailing dot, port or None); None
    where it is not one."""
    text = text.strip()
    if text.startswith("["):
        inner, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            return None
        name, port_text = inner, rest[1:]
    else:
        name, _, port_text = text.partition(":")
    # str.isdigit() takes '²' and other digits int() refuses: only ASCII ones
    if not name or (port_text and not _PORT.fullmatch(port_text)):
        return None
    return name.lower().rstrip("."), int(port_text) if port_text else None


@dataclass(frozen=True)
class HostRule:
    """The Host headers this server answers: one of `names` (with this server's port, or none given), or,
    served on every address (0.0.0.0, ::), any IP address: a Host that is an address is no rebinding, the
    page's origin is then that address, this server."""

    names: frozenset[str]
    port: int
    any_address: bool = False

    def allows(self, host: str | None) -> bool:
        if host is None:
            return True  # HTTP/1.0 without Host: no browser sends that (h11 refuses it for HTTP/1.1)
        parsed = split_authority(host)
        if parsed is None:
            return False
        name, port = parsed
        if port is not None and port != self.port:
            return False
        if name in self.names:
            return True
        if not self.any_address:
            return False
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True


def _error(status: int, message: str, extra: Iterable[tuple[bytes, bytes]] = ()) -> tuple[int, list, bytes]:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *extra]
    return status, headers, body


class RequestGate:
    """The ASGI middleware in front of the routes (see the module's docstring for why each rule)."""

    def __init__(self, app: ASGIApp, token: str | None, hosts: HostRule, max_body: int = MAX_BODY) -> None:
        self.app, self.token, self.hosts, self.max_body = app, token, hosts, max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        names = [k.decode("latin-1").lower() for k, _ in scope["headers"]]
        headers = {k: v.decode("latin-1") for k, (_, v) in zip(names, scope["headers"], strict=True)}
        twice = sorted(n for n in SINGLE_HEADERS if names.count(n) > 1)
        refusal = _error(400, f"header {twice[0]} given more than once") if twice else None
        refusal = refusal or self._refusal(scope, headers)
        if refusal is not None:
            await _respond(send_secured, *refusal)
            return
        if self._token_in_query_of_a_page(scope, headers):
            await _respond(send_secured, *self._redirect_without_token(scope))
            return
        await self.app(scope, receive, send_secured)

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, list, bytes] | None:
        """The answer to a request refused here, or None where it goes on."""
        host = headers.get("host")
        if not self.hosts.allows(host):
            shown = (host or "")[:100]
            return _error(421, f"this server does not answer to Host {shown!r} (name it with --serve-host)")
        length = headers.get("content-length", "")
        length = length if _DIGITS.fullmatch(length) else ""
        if length and int(length) > self.max_body:
            # told before a byte of it is read; the connection is closed rather than the rest read
            return _error(413, f"the body is over {self.max_body} bytes", [(b"connection", b"close")])
        how = self._credential(scope, headers)
        if self.token is not None and scope["path"] != "/healthz" and how in (None, "wrong"):
            needed = "this server needs a token (Authorization: Bearer, or ?token=)"
            message = "wrong token" if how == "wrong" else needed
            return _error(401, message, [(b"www-authenticate", b"Bearer")])
        if scope["method"] not in STATE_CHANGING:
            return None
        if how != "header" and not _same_origin(headers):
            return _error(
                403,
                "cross-origin request refused: a change must come from this server's own page, a client "
                "that sends no Origin, or carry Authorization: Bearer <token>",
            )
        has_body = (length != "" and int(length) > 0) or "transfer-encoding" in headers
        media_type = headers.get("content-type", "").partition(";")[0].strip().lower()
        if has_body and media_type != "application/json":
            return _error(415, "send the body as JSON, with Content-Type: application/json")
        return None

    def _credential(self, scope: Scope, headers: dict[str, str]) -> str | None:
        """How the request carries the right token (header, cookie or query), "wrong" where it carries
        only wrong ones, None where it carries none."""
        if self.token is None:
            return None
        cookie = SimpleCookie()
        with contextlib.suppress(Exception):
            cookie.load(headers.get("cookie", ""))
        given = {
            "header": headers.get("authorization", "").removeprefix("Bearer ").strip(),
            "cookie": cookie[COOKIE].value if COOKIE in cookie else "",
            "query": _query_token(scope),
        }
        expected = self.token.encode()
        for how, value in given.items():
            if value and hmac.compare_digest(value.encode("utf-8", "replace"), expected):
                return how
        return "wrong" if any(given.values()) else None

    def _token_in_query_of_a_page(self, scope: Scope, headers: dict[str, str]) -> bool:
        """A page opened with ?token= (the page itself, or any URL a browser navigates to): answered with a
        redirect that sets the cookie, so the token leaves the address bar and the history. A player or an
        EventSource that asks with ?token= is served as asked (it keeps no cookie)."""
        if self.token is None or scope["method"] not in ("GET", "HEAD") or not _query_token(scope):
            return False
        navigating = (
            headers.get("sec-fetch-mode") == "navigate" or headers.get("sec-fetch-dest") == "document"
        )
        return navigating or scope["path"] == "/"

    def _redirect_without_token(self, scope: Scope) -> tuple[int, list, bytes]:
        assert self.token is not None
        kept = [(k, v) for k, v in parse_qsl(scope["query_string"].decode("latin-1"), True) if k != "token"]
        # one leading slash: "//evil.example/" would be a redirect to another site
        # and no leading backslash either: browsers read "/\\evil.example/" as "//evil.example/"
        raw = scope.get("raw_path", scope["path"].encode()).decode("latin-1")
        path = "/" + raw.lstrip("/\\").replace("\\", "%5C")
        location = path + (f"?{urlencode(kept)}" if kept else "")
        cookie = f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
        headers = [(b"location", location.encode("latin-1")), (b"set-cookie", cookie.encode("latin-1"))]
        return 303, [*headers, (b"cache-control", b"no-store"), (b"content-length", b"0")], b""


def _query_token(scope: Scope) -> str:
    pairs = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    return next((v for k, v in pairs if k == "token"), "")


def _same_origin(headers: dict[str, str]) -> bool:
    """True where the request is not a browser's cross-origin one: no Origin and no cross-site
    Sec-Fetch-Site (not a browser), or an Origin whose host and port are the Host header's."""
    site = headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = headers.get("origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    if parts.scheme not in _DEFAULT_PORTS or parts.path or not parts.netloc:
        return False  # "null" (a sandboxed frame, a file: page, a redirect across sites) and the like
    ours, theirs = split_authority(headers.get("host", "")), split_authority(parts.netloc)
    if ours is None or theirs is None or ours[0] != theirs[0]:
        return False
    # a Host without a port is the scheme's default one (as behind a proxy on 443): a page on another
    # port is another origin
    default = _DEFAULT_PORTS[parts.scheme]
    return (theirs[1] or default) == (ours[1] or default)


async def _respond(send: Send, status: int, headers: list, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
