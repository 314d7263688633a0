"""An archive's report across its videos, beside their result folders: `summary.csv` (a row per video) and
`index.html` (a row per video: its timeline picture, its events, the model it was made with). Both are made
from the result folders alone, at the end of every run, each written beside and renamed into place.

The page is one file with its style inline and no script; its pictures are the result folders' own
`timeline.png`, by relative links. Every name in it (video, path, class, model) is escaped, so a file named
`<img src=x onerror=alert(1)>.mp4` is shown as that text. A report file of the user's (one the archive did
not write) is never replaced: the run refuses it before any work, in one line.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import html
import io
import json
import logging
import os
import re
import secrets
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from stream.sinks.results import DONE, FAILED, STAGING_PREFIX, TIMELINE, ResultsError, is_ours
from stream.sinks.timeline import HEIGHT, WIDTH, Action, actions, class_colour, clock

log = logging.getLogger(__name__)

SUMMARY, INDEX = "summary.csv", "index.html"
REPORT_FILES = (SUMMARY, INDEX)
GENERATOR = "glanet archive report"  # in index.html's head: how a page the archive wrote is told
SUMMARY_HEAD = (
    "video", "status", "duration_s", "frames", "recording_start", "top_action", "top_action_share",
    "events", "event_s", "model", "model_digest", "backend", "model_note", "wall_s", "path", "error",
)  # fmt: skip
_CSV_START = ",".join(SUMMARY_HEAD[:3])  # how a summary.csv the archive wrote begins
# a spreadsheet reads a cell that begins with one of these as a formula: a video named =HYPERLINK(...)
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class VideoRow:
    """One result folder, as the report shows it."""

    name: str  # the result folder's name
    path: str  # the video's path
    status: str  # done | failed
    error: str = ""
    frames: int | None = None
    seconds: float | None = None
    recording_start: str | None = None  # ISO 8601 UTC, where the container says it
    model: str = ""  # the checkpoint's (or export folder's) file name
    model_digest: str = ""
    backend: str = ""  # as it described itself (older results: as it was asked for)
    note: str = ""  # e.g. "model: SynthActions only"
    classes: tuple[str, ...] = ()
    found: tuple[Action, ...] = ()
    top: str = ""  # the class top-1 for the most seconds
    top_share: float | None = None  # ... its share of the seconds
    timeline: tuple[int, ...] | None = None  # the classes its timeline.png draws (None: no picture)
    enter: float | None = None  # the event threshold (the picture's dashed line)
    wall_s: float | None = None
    shared_model: bool = True  # False: the archive's videos were made with different models

    @property
    def event_s(self) -> float:
        return sum((a.end if a.end is not None else self.seconds or a.start) - a.start for a in self.found)


def _natural(name: str) -> list[int | str]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _json_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _top(path: Path) -> tuple[str, float | None]:
    """The class that is top-1 for the most seconds of predictions.csv, and its share of them."""
    with open(path, newline="") as f:
        tops = [row["top1"] for row in csv.DictReader(f)]
    if not tops:
        return "", None
    label, n = Counter(tops).most_common(1)[0]
    return label, n / len(tops)


def read_row(folder: Path) -> VideoRow | None:
    """The row of a result folder of the archive's: done, failed, or None (incomplete, or unreadable)."""
    try:
        if (folder / DONE).is_file():
            done = json.loads((folder / DONE).read_text())
            model = done["settings"]["model"]
            source = model["engine"] or model["checkpoint"] or ""
            digest = model["engine_digest"] or model["checkpoint_digest"] or ""
            found = actions(_json_lines(folder / "events.jsonl"))
            top, share = _top(folder / "predictions.csv")
            drawn = (done.get("timeline") or {}).get("classes")
            return VideoRow(
                folder.name,
                str(done["video"]),
                "done",
                frames=int(done["frames"]),
                seconds=float(done["seconds"]),
                recording_start=done.get("recording_start"),
                model=Path(source).name,
                model_digest=digest,
                backend=done.get("ran_on") or model["backend"],
                note=done.get("note") or "",
                classes=tuple(done["classes"]),
                found=tuple(found),
                top=top,
                top_share=share,
                timeline=tuple(drawn) if drawn is not None and (folder / TIMELINE).is_file() else None,
                enter=done["settings"]["events"]["enter"],
                wall_s=done.get("wall_s"),
            )
        if (folder / FAILED).is_file():
            failed = json.loads((folder / FAILED).read_text())
            why = str(failed.get("error", "?"))
            return VideoRow(folder.name, str(failed.get("video", "")), "failed", why)
    except (OSError, ValueError, KeyError, TypeError) as error:
        log.warning("%s: left out of the report (%s)", folder, error)
    return None


def read_rows(out: Path) -> list[VideoRow]:
    """Every result folder of the archive's in `out`, in natural order (one of the user's is not read)."""
    folders = [
        p for p in out.iterdir() if not p.name.startswith(STAGING_PREFIX) and p.name not in REPORT_FILES
    ]
    read = [read_row(p) for p in sorted(folders, key=lambda p: _natural(p.name)) if is_ours(p)]
    rows = [r for r in read if r is not None]
    if len({(r.model, r.model_digest, r.backend) for r in rows if r.status == "done"}) > 1:
        rows = [dataclasses.replace(r, shared_model=False) for r in rows]
    return rows


def _cell(text: str) -> str:
    return f"'{text}" if text.startswith(_FORMULA) else text


def _num(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def summary_csv(rows: Sequence[VideoRow]) -> str:
    """A row per video; a column of event counts per class (every class of every video's model, in the
    models' order). Text cells that a spreadsheet would run as a formula start with a quote mark."""
    classes = list(dict.fromkeys(c for r in rows for c in r.classes))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*SUMMARY_HEAD, *(f"events:{_cell(c)}" for c in classes)])
    for r in rows:
        counts = Counter(a.label for a in r.found)
        done = r.status == "done"
        writer.writerow(
            [_cell(r.name), r.status, _num(r.seconds), "" if r.frames is None else r.frames,
             r.recording_start or "", _cell(r.top), _num(r.top_share), len(r.found) if done else "",
             _num(r.event_s) if done else "", _cell(r.model), r.model_digest, r.backend, _cell(r.note),
             _num(r.wall_s), _cell(r.path), _cell(r.error),
             *((counts.get(c, 0) if c in r.classes else "") for c in classes)]
        )  # fmt: skip
    return buffer.getvalue()


_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; color: #222; margin: 24px; }
h1 { font-size: 20px; margin: 0 0 4px; }
header p { margin: 2px 0; color: #444; }
.note { background: #fff4d6; border: 1px solid #e8c66a; padding: 6px 10px; border-radius: 4px;
        display: inline-block; margin: 8px 0 !important; color: #222 !important; }
table.videos { border-collapse: collapse; width: 100%; margin-top: 14px; }
table.videos > thead th { text-align: left; font-weight: 600; border-bottom: 2px solid #ccc; padding: 6px; }
table.videos > tbody > tr > td { vertical-align: top; border-bottom: 1px solid #e4e4e4; padding: 10px 6px; }
td.video { width: 210px; overflow-wrap: anywhere; }
td.video .name { font-weight: 600; font-size: 15px; }
td.video .facts, td.video .path, td.video .links { color: #555; font-size: 12px; margin-top: 3px; }
td.timeline { width: 640px; }
td.timeline img { display: block; max-width: 100%; height: auto; }
.legend { font-size: 12px; margin-top: 3px; }
.legend span { margin-right: 10px; white-space: nowrap; }
.dash { display: inline-block; width: 14px; border-top: 2px dashed #999; vertical-align: 3px;
        margin-right: 4px; }
.sw { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 4px;
      vertical-align: -1px; }
.events { max-height: 190px; overflow: auto; }
table.ev { border-collapse: collapse; font-size: 12px; }
table.ev th { text-align: left; font-weight: 600; color: #555; border-bottom: 1px solid #ddd;
              padding: 1px 6px; }
table.ev td { padding: 1px 6px; white-space: nowrap; }
table.ev td.num { text-align: right; font-variant-numeric: tabular-nums; }
.failed td.video .name { color: #b3261e; }
.error { color: #b3261e; font-size: 13px; }
.none { color: #777; font-size: 12px; }
"""


# no script, nothing from the network: only the page's own style and the pictures beside it
_POLICY = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _href(*parts: str) -> str:
    """A relative link into `out`, every part percent-encoded (a name may hold '#', '?', '%' or ':')."""
    return "/".join(quote(p, safe="") for p in parts)


def _model_line(rows: Sequence[VideoRow]) -> str:
    models = Counter((r.model, r.model_digest, r.backend) for r in rows if r.status == "done")
    if not models:
        return ""
    if len(models) > 1:
        return "<p>Models: several (each video names its own)</p>"
    (model, digest, backend), _ = models.most_common(1)[0]
    return (
        f'<p>Model: <b>{_e(model)}</b> <span title="{_e(digest)}">({_e(digest.rpartition(":")[2][:12])})'
        f"</span>, backend {_e(backend)}</p>"
    )


def _when(iso: str | None) -> datetime.datetime | None:
    try:
        return datetime.datetime.fromisoformat(iso) if iso else None
    except ValueError:
        return None


def _events_table(row: VideoRow) -> str:
    if not row.found:
        return '<p class="none">no events</p>'
    started = _when(row.recording_start)
    head = "<th>action</th><th>start</th><th>end</th><th>length</th><th>peak</th>"
    head += "<th>recorded at (UTC)</th>" if started else ""
    body = []
    for a in row.found:
        end = row.seconds if a.end is None else a.end
        cells = (
            f'<td><span class="sw" style="background:{class_colour(a.class_index)}"></span>{_e(a.label)}</td>'
            f'<td class="num">{clock(a.start)}</td>'
            f'<td class="num">{"" if end is None else clock(end)}</td>'
            f'<td class="num">{"" if end is None else clock(end - a.start)}</td>'
            f'<td class="num">{a.peak:.2f}</td>'
        )
        if started:
            cells += f"<td>{started + datetime.timedelta(seconds=a.start):%Y-%m-%d %H:%M:%S}</td>"
        body.append(f"<tr>{cells}</tr>")
    return f'<div class="events"><table class="ev"><tr>{head}</tr>{"".join(body)}</table></div>'


def _video_row(row: VideoRow) -> str:
    name = _e(row.name)
    links = f'<a href="{_href(row.name)}/">folder</a>'
    if row.status == "failed":
        return (
            f'<tr class="failed"><td class="video"><div class="name">{name}</div>'
            f'<div class="path">{_e(row.path)}</div><div class="links">{links}</div></td>'
            f'<td colspan="2"><p class="error">failed: {_e(row.error)}</p></td></tr>'
        )
    facts = [clock(row.seconds or 0.0), f"{row.frames} frames"]
    started = _when(row.recording_start)
    if started is not None:
        facts.append(f"recorded {started:%Y-%m-%d %H:%M:%S} UTC")
    if row.top:
        facts.append(f"top action <b>{_e(row.top)}</b> ({(row.top_share or 0):.0%} of its seconds)")
    links += "".join(
        f' · <a href="{_href(row.name, f)}">{f}</a>' for f in ("events.jsonl", "predictions.csv", DONE)
    )
    if row.timeline is None:
        picture = '<p class="none">no timeline (results of an older glanet: the next run redoes them)</p>'
    else:
        legend = "".join(
            f'<span><span class="sw" style="background:{class_colour(c)}"></span>{_e(row.classes[c])}</span>'
            for c in row.timeline
        )
        legend += f'<span><span class="dash"></span>an event starts at {row.enter:g}</span>'
        picture = (
            f'<img src="{_href(row.name, TIMELINE)}" width="{WIDTH}" height="{HEIGHT}" loading="lazy" '
            f'alt="timeline of {name}: the top classes\' probabilities over the video, its events as bars">'
            f'<div class="legend">{legend}</div>'
        )
    model = ""
    if not row.shared_model:
        model = (
            f'<div class="facts">model {_e(row.model)} ({_e(row.model_digest.rpartition(":")[2][:12])})</div>'
        )
    return (
        f'<tr><td class="video"><div class="name">{name}</div>'
        f'<div class="facts">{" · ".join(facts)}</div><div class="path">{_e(row.path)}</div>'
        f'{model}<div class="links">{links}</div></td>'
        f'<td class="timeline">{picture}</td><td>{_events_table(row)}</td></tr>'
    )


def index_html(rows: Sequence[VideoRow], made: datetime.datetime) -> str:
    """The page: what was made with which model, then a row per video."""
    done = [r for r in rows if r.status == "done"]
    failed = len(rows) - len(done)
    seconds = sum(r.seconds or 0.0 for r in done)
    notes = sorted({r.note for r in done if r.note})
    totals = (
        f"{len(rows)} video{'s' if len(rows) != 1 else ''}"
        f"{f' ({failed} failed)' if failed else ''}, {clock(seconds)} of video, "
        f"{sum(len(r.found) for r in done)} events · made {made:%Y-%m-%d %H:%M} UTC · "
        f'<a href="{SUMMARY}">{SUMMARY}</a>'
    )
    note = "".join(
        f'<p class="note">{_e(n)}: it knows only the 12 synthetic SynthActions actions, not real footage</p>'
        if "SynthActions" in n
        else f'<p class="note">{_e(n)}</p>'
        for n in notes
    )
    body = "".join(_video_row(r) for r in rows) or '<tr><td colspan="3" class="none">no videos yet</td></tr>'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="generator" content="{GENERATOR}">
<meta http-equiv="Content-Security-Policy" content="{_POLICY}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>glanet archive: {len(rows)} videos</title>
<style>{_STYLE}</style></head>
<body><header><h1>glanet archive</h1><p>{totals}</p>{_model_line(rows)}{note}</header>
<table class="videos"><thead><tr><th>video</th><th>timeline</th><th>events</th></tr></thead>
<tbody>{body}</tbody></table></body></html>
"""


def _is_our_report(path: Path) -> bool:
    """A report file the archive wrote: index.html names the archive as its generator, summary.csv starts
    with the archive's header."""
    if path.is_symlink() or not path.is_file():
        return False
    with open(path, "rb") as f:
        head = f.read(1024).decode("utf-8", "replace")
    return GENERATOR in head if path.name.endswith(INDEX) else head.startswith(_CSV_START)


def check_report_destinations(out: Path, names: Sequence[str]) -> None:
    """Refuse, before any work, a run whose report would replace a file of the user's, or whose video's
    results would be named as the report."""
    clash = next((n for n in names if n in REPORT_FILES), None)
    if clash is not None:
        raise ResultsError(
            f"--out {out}: a video's results would be {out / clash}, where the archive writes its report: "
            "rename that video"
        )
    for name in REPORT_FILES:
        path = out / name
        if (path.exists() or path.is_symlink()) and not _is_our_report(path):
            raise ResultsError(
                f"--out {out}: {path} exists and was not written by the archive: move it, or give another "
                "--out"
            )


def _replace(path: Path, text: str) -> None:
    """`text` into `path` through a file beside it, renamed over it (a reader sees the old or the new)."""
    if (path.exists() or path.is_symlink()) and not _is_our_report(path):
        raise ResultsError(f"{path} appeared during the run and is not the archive's: left as it is")
    staged = path.with_name(f"{STAGING_PREFIX}{secrets.token_hex(6)}-{path.name}")
    try:
        with open(staged, "x") as f:
            f.write(text)
        os.replace(staged, path)
    finally:
        staged.unlink(missing_ok=True)


def clean_report_staging(out: Path) -> None:
    """The report files a stopped run left half-written beside the report (its own: they start as it does)."""
    for entry in out.iterdir():
        if (
            entry.name.startswith(STAGING_PREFIX)
            and entry.name.endswith(REPORT_FILES)
            and _is_our_report(entry)
        ):
            entry.unlink()


def write_report(out: Path, made: datetime.datetime | None = None) -> list[VideoRow]:
    """summary.csv and index.html of every result in `out`, remade; the rows they show."""
    clean_report_staging(out)
    rows = read_rows(out)
    _replace(out / SUMMARY, summary_csv(rows))
    _replace(out / INDEX, index_html(rows, made or datetime.datetime.now(datetime.UTC)))
    return rows


__all__ = [
    "GENERATOR",
    "INDEX",
    "REPORT_FILES",
    "SUMMARY",
    "VideoRow",
    "check_report_destinations",
    "index_html",
    "read_rows",
    "summary_csv",
    "write_report",
]
