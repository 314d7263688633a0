"""When an archive's events happen: seconds into the video (from its frames' timestamps, which the events'
start_ts/end_ts already are) and, where the container says when it was recorded, the time of day."""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# the tags a container states its recording's start in, in the order trusted: MP4/MOV and Matroska's
# creation_time (UTC by their specs), then Apple's own (with the local offset)
START_TAGS = ("creation_time", "com.apple.quicktime.creationdate")
# a container whose clock was never set writes its epoch (1904 for MP4, 1970 for others): unknown, not a date
_EARLIEST = datetime.datetime(1971, 1, 1, tzinfo=datetime.UTC)
# and no later than this: a recording start plus its video's length must stay a date (year 9999 overflowed)
_LATEST = datetime.datetime(9000, 1, 1, tzinfo=datetime.UTC)


@dataclass(frozen=True)
class RecordingStart:
    at: datetime.datetime  # timezone-aware, UTC
    tag: str  # the metadata tag it was read from

    def iso(self) -> str:
        return iso_utc(self.at)


def iso_utc(when: datetime.datetime) -> str:
    """ISO 8601 in UTC with milliseconds and a Z, as the events' `time` is written."""
    return when.astimezone(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_start(text: str) -> datetime.datetime | None:
    """A tag's value as a time (naive: UTC, as MP4 and Matroska store it), or None where it is no date or
    the epoch of a clock never set."""
    try:
        when = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    try:
        when = when.astimezone(datetime.UTC)
    except OverflowError:  # a date at the end of datetime's range: no clock set it
        return None
    return when if _EARLIEST <= when <= _LATEST else None


def recording_start(path: Path) -> RecordingStart | None:
    """When the recording started, as its container states it (the container's tags, then its video
    stream's); None where it states none: never guessed from the file's times."""
    import av

    try:
        with av.open(str(path), metadata_errors="ignore") as container:
            tags = [dict(container.metadata)]
            tags += [dict(s.metadata) for s in container.streams.video]
    except (av.FFmpegError, OSError, UnicodeDecodeError) as error:
        log.debug("%s: no metadata read (%s)", path, error)
        return None
    for found in tags:
        for tag in START_TAGS:
            when = parse_start(found[tag]) if tag in found else None
            if when is not None:
                return RecordingStart(when, tag)
    return None


def with_video_time(event: dict[str, Any], start: RecordingStart | None) -> dict[str, Any]:
    """An event line of the archive: run_camera.py's keys (its `time` stays the wall clock when the event
    was made) and `video_s`, the seconds into the video of what the line marks (the action's start on a
    "start" line, its end on an "end" line), with `recorded_at`, that moment's time of day, where the
    container says when the recording started."""
    end = event["event"] == "end" and event["end_ts"] is not None
    video_s = event["end_ts"] if end else event["start_ts"]
    line = {**event, "video_s": round(float(video_s), 4)}
    if start is not None:
        line["recorded_at"] = iso_utc(start.at + datetime.timedelta(seconds=float(video_s)))
    return line


__all__ = ["RecordingStart", "iso_utc", "parse_start", "recording_start", "with_video_time"]
