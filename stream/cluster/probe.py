"""Is HOST:PORT a Ray cluster, and does it want a token? One gRPC call, made before `ray.init`.

`ray.init` retries an address that does not answer for minutes, and plain `ray` ships no Python gRPC: so
this speaks just enough HTTP/2 by hand (RFC 9113, RFC 7541 without Huffman) to send one harmless call
without a token, under a deadline. Ray's gRPC servers answer UNAUTHENTICATED (16) when token auth is on;
an answer with a message means anyone reaching the port may call it. The token, when given, is sent
as HPACK "never indexed".
"""

from __future__ import annotations

import socket
import struct
import time

from stream.cluster.address import ClusterError

GCS_CALL = "/ray.rpc.NodeInfoGcsService/CheckAlive"  # read-only; an empty request asks about no node
CLIENT_CALL = "/ray.rpc.RayletDriver/ClusterInfo"  # Ray Client's server (ray://); an empty request reads
UNAUTHENTICATED = 16
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_DATA, _HEADERS, _RST, _SETTINGS, _GOAWAY, _CONTINUATION = 0, 1, 3, 4, 7, 9
_END_STREAM, _ACK, _END_HEADERS = 0x1, 0x1, 0x4


def _int(value: int, prefix: int, first: int = 0) -> bytes:
    """An HPACK integer (RFC 7541 5.1) with `prefix` bits in the first byte."""
    top = (1 << prefix) - 1
    if value < top:
        return bytes([first | value])
    out, value = [first | top], value - top
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    return bytes([*out, value])


def _text(value: str) -> bytes:
    raw = value.encode()
    return _int(len(raw), 7) + raw  # not Huffman-coded


def _frame(kind: int, flags: int, stream: int, payload: bytes = b"") -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def _request(authority: str, path: str, token: str | None) -> bytes:
    block = (
        b"\x83\x86"  # :method POST, :scheme http (static table 3, 6)
        + _int(4, 4) + _text(path)  # :path, name from the static table
        + _int(1, 4) + _text(authority)
        + _int(31, 4) + _text("application/grpc")  # content-type
        + b"\x00" + _text("te") + _text("trailers")
        + (b"\x10" + _text("authorization") + _text(f"Bearer {token}") if token else b"")  # never indexed
    )  # fmt: skip
    message = b"\x00" + struct.pack(">I", 0)  # one uncompressed, empty protobuf message
    return (
        _PREFACE
        + _frame(_SETTINGS, 0, 0)
        + _frame(_HEADERS, _END_HEADERS, 1, block)
        + _frame(_DATA, _END_STREAM, 1, message)
    )


def _status(block: bytes) -> int | None:
    """grpc-status from a header block: a fresh connection's first answer sends it as a plain literal."""
    at = block.find(b"grpc-status")
    if at < 0 or at + 12 > len(block):
        return None
    length = block[at + 11]
    if length & 0x80:  # Huffman-coded: not read here
        return None
    digits = block[at + 12 : at + 12 + length]
    return int(digits) if digits.isdigit() else None


def grpc_call(
    host: str, port: int, path: str, timeout_s: float, token: str | None = None
) -> tuple[int | None, bool]:
    """Make the gRPC call `path` with an empty request (and no token unless given): (its grpc-status,
    whether a reply message came). ClusterError (one line) when nothing answers as gRPC does in time."""
    where = f"{host}:{port}"
    deadline = time.monotonic() + timeout_s
    try:
        sock = socket.create_connection((host.strip("[]"), port), timeout=timeout_s)
    except ConnectionRefusedError:
        raise ClusterError(f"nothing listens at {where} (connection refused)") from None
    except TimeoutError:
        raise ClusterError(f"{where} did not accept a connection within {timeout_s:g} s") from None
    except OSError as e:
        raise ClusterError(f"cannot connect to {where}: {e.strerror or e}") from None
    buffer, blocks, got_message, status, first = b"", b"", False, None, True
    try:
        sock.sendall(_request(where, path, token))
        while True:
            while len(buffer) < 9 or len(buffer) < 9 + int.from_bytes(buffer[:3], "big"):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                sock.settimeout(left)
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionResetError
                buffer += chunk
                if first and len(buffer) >= 9 and (buffer[3] != _SETTINGS or buffer[:1] != b"\x00"):
                    raise ValueError  # an HTTP/2 server's first frame is its (short) SETTINGS
            size, kind, flags = int.from_bytes(buffer[:3], "big"), buffer[3], buffer[4]
            stream = int.from_bytes(buffer[5:9], "big") & 0x7FFFFFFF
            payload, buffer, first = buffer[9 : 9 + size], buffer[9 + size :], False
            if kind == _SETTINGS and not flags & _ACK:
                sock.sendall(_frame(_SETTINGS, _ACK, 0))
            elif kind == _GOAWAY or (kind == _RST and stream == 1):
                raise ConnectionResetError
            elif stream == 1 and kind in (_HEADERS, _CONTINUATION):
                blocks += payload
                status = _status(blocks) if status is None else status
            elif stream == 1 and kind == _DATA and len(payload) >= 5:
                got_message = True
            if stream == 1 and flags & _END_STREAM:
                return status, got_message
    except TimeoutError:
        raise ClusterError(
            f"{where} accepted, then sent no gRPC answer in {timeout_s:g} s: not Ray"
        ) from None
    except (ValueError, ConnectionResetError, OSError):
        raise ClusterError(f"{where} does not answer as Ray does (not a gRPC server)") from None
    finally:
        sock.close()


def wants_token(host: str, port: int, path: str = GCS_CALL, timeout_s: float = 8.0) -> bool:
    """Whether the Ray server at host:port refuses a call without a token; ClusterError if it is not Ray."""
    status, got_message = grpc_call(host, port, path, timeout_s)
    if status == UNAUTHENTICATED:
        return True
    if status == 0 or got_message:
        return False
    raise ClusterError(f"{host}:{port} answers gRPC but not as Ray does (status {status})")


__all__ = ["CLIENT_CALL", "GCS_CALL", "grpc_call", "wants_token"]
