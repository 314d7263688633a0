"""Source benchmark (issue 19): does a hung camera hold up another camera's open, and what does reading a
network stream with PyAV (stream/sources/network.py) cost against OpenCV's FFmpeg backend?

    python benchmarks/source_open.py [--trials 3] [--hung-timeout 2] [--frames 300] [--size 640x360]

(a) A file camera's open and first frame (OpenCVSource, the same for both) while another camera's open is
    under way on a server that accepts the TCP connection and never answers (127.0.0.1, a thread here): that
    open through cv2.VideoCapture(url, CAP_FFMPEG) (the old path) or through NetworkSource (PyAV). Median of
    `--trials`; the ratio is OpenCV's time over PyAV's.
(b) Decoding the same network stream: an H.264 mp4 (faststart, written here with PyAV's libx264) served
    over HTTP from a thread here, read to its end by cv2.VideoCapture and by NetworkSource, in this process,
    one after the other (best of `--repeats`). Frames/s, ms/frame, the process's CPU seconds per frame
    (the server thread's share included, the same for both), and the ratio against OpenCV.
"""

# ruff: noqa: E402  (the project's imports come after the sys.path fix below)
from __future__ import annotations

import argparse
import functools
import http.server
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import av
import cv2
import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [str(ROOT) if Path(p or ".").resolve() == ROOT / "benchmarks" else p for p in sys.path]

import contextlib

from benchmarks.common import machine_line
from stream.errors import SourceError
from stream.sources.network import NetworkSource
from stream.sources.readers import OpenCVSource

HOST = "127.0.0.1"
console = Console(width=130)


def silent_server() -> tuple[socket.socket, list[socket.socket]]:
    """A listener that accepts every connection and never sends a byte (a hung camera)."""
    listener = socket.create_server((HOST, 0))
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    return listener, held


def write_clip(path: Path, frames: int, width: int, height: int, fps: int = 25) -> Path:
    """An H.264 mp4 with its index first (faststart): readable over HTTP without seeking."""
    with av.open(str(path), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("libx264", rate=fps, options={"preset": "veryfast", "g": str(fps)})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        rng = np.random.default_rng(0)
        base = rng.integers(0, 255, (height, width, 3), np.uint8)
        for i in range(frames):
            image = np.roll(base, 4 * i, axis=1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass  # the tables are the output


def file_server(folder: Path) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer((HOST, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def file_first_frame_ms(path: Path) -> float:
    t0 = time.monotonic()
    source = OpenCVSource(str(path), kind="file")
    source.open()
    assert source.read() is not None
    source.close()
    return (time.monotonic() - t0) * 1000


def hung_cv2(url: str, timeout_s: float) -> None:
    cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(timeout_s * 1000)])
    cap.release()


def hung_pyav(url: str, timeout_s: float) -> None:
    with contextlib.suppress(SourceError):
        NetworkSource(url, open_timeout_s=timeout_s, read_timeout_s=1.0).open()


def open_while_hung(
    hang: Callable[[str, float], None], path: Path, trials: int, timeout_s: float
) -> list[float]:
    """A file's open + first frame (ms) while `hang` opens a silent server, once per trial."""
    times = []
    for _ in range(trials):
        listener, held = silent_server()
        url = f"http://{HOST}:{listener.getsockname()[1]}/stream"
        thread = threading.Thread(target=hang, args=(url, timeout_s), daemon=True)
        thread.start()
        deadline = time.monotonic() + 5
        while not held and time.monotonic() < deadline:  # the hung open is under way
            time.sleep(0.002)
        times.append(file_first_frame_ms(path))
        thread.join(timeout_s + 5)
        listener.close()
        for conn in held:
            conn.close()
    return times


def read_cv2(url: str) -> int:
    cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
    count = 0
    while True:
        ok, _image = cap.read()
        if not ok:
            break
        count += 1
    cap.release()
    return count


def read_pyav(url: str) -> int:
    source = NetworkSource(url)
    source.open()
    count = 0
    while source.read() is not None:
        count += 1
    source.close()
    return count


def timed_read(read: Callable[[str], int], url: str, repeats: int) -> tuple[int, float, float]:
    """(frames, wall s, CPU s) of the fastest of `repeats` reads to the end."""
    best: tuple[int, float, float] | None = None
    for _ in range(repeats):
        wall0, cpu0 = time.perf_counter(), time.process_time()
        frames = read(url)
        got = (frames, time.perf_counter() - wall0, time.process_time() - cpu0)
        if best is None or got[1] < best[1]:
            best = got
    assert best is not None
    return best


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--trials", type=int, default=3, help="(a): hung opens per path")
    p.add_argument("--hung-timeout", type=float, default=2.0, help="(a): the hung camera's open timeout, s")
    p.add_argument("--frames", type=int, default=300, help="(b): frames in the served clip")
    p.add_argument("--size", default="640x360", help="(b): WIDTHxHEIGHT of the served clip")
    p.add_argument("--repeats", type=int, default=3, help="(b): reads per reader (the fastest is kept)")
    args = p.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    console.print(machine_line(f"OpenCV {cv2.__version__}", f"PyAV {av.__version__}"))

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        small = folder / "small.mp4"
        writer = cv2.VideoWriter(str(small), cv2.VideoWriter_fourcc(*"mp4v"), 15.0, (160, 120))
        for i in range(30):
            writer.write(np.full((120, 160, 3), i * 8, np.uint8))
        writer.release()

        alone = statistics.median(file_first_frame_ms(small) for _ in range(args.trials))
        ocv = statistics.median(open_while_hung(hung_cv2, small, args.trials, args.hung_timeout))
        pyav = statistics.median(open_while_hung(hung_pyav, small, args.trials, args.hung_timeout))
        table = Table(title=f"(a) a file camera's open + first frame while a camera hangs "
                      f"(its open timeout {args.hung_timeout:g} s; median of {args.trials})")  # fmt: skip
        for column in (
            "the hung camera opened by",
            "file open + first frame, ms",
            "x alone",
            "OpenCV / this",
        ):
            table.add_column(column, justify="right")
        table.add_row("(no hung camera)", f"{alone:.1f}", "1.0x", "")
        table.add_row("cv2.VideoCapture (old)", f"{ocv:.1f}", f"{ocv / alone:.0f}x", "1.0x")
        table.add_row("NetworkSource (PyAV)", f"{pyav:.1f}", f"{pyav / alone:.1f}x", f"{ocv / pyav:.0f}x")
        console.print(table)

        write_clip(folder / "clip.mp4", args.frames, width, height)
        server = file_server(folder)
        url = f"http://{HOST}:{server.server_address[1]}/clip.mp4"
        results = {
            "cv2.VideoCapture (CAP_FFMPEG)": timed_read(read_cv2, url, args.repeats),
            "NetworkSource (PyAV)": timed_read(read_pyav, url, args.repeats),
        }
        server.shutdown()
        table = Table(title=f"(b) reading one H.264 stream over HTTP, {width}x{height}, {args.frames} frames "
                      f"(best of {args.repeats})")  # fmt: skip
        for column in (
            "reader",
            "frames",
            "frames/s",
            "ms/frame",
            "CPU ms/frame",
            "time vs OpenCV",
            "CPU vs OpenCV",
        ):
            table.add_column(column, justify="right")
        _, base_wall, base_cpu = results["cv2.VideoCapture (CAP_FFMPEG)"]
        base_frames = results["cv2.VideoCapture (CAP_FFMPEG)"][0]
        for name, (frames, wall, cpu) in results.items():
            table.add_row(
                name, str(frames), f"{frames / wall:.0f}", f"{wall / frames * 1000:.2f}",
                f"{cpu / frames * 1000:.2f}", f"{(wall / frames) / (base_wall / base_frames):.2f}x",
                f"{(cpu / frames) / (base_cpu / base_frames):.2f}x",
            )  # fmt: skip
        console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
