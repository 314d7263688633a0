"""stream/sinks/results.py: an archive's result folders never take what is not the archive's. Staged results
are renamed into place; an earlier result of the archive's has its own files replaced; a folder of the
user's is refused; the content digest tells a replaced file from the one the results were made from."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from stream.sinks.results import (
    DONE,
    FAILED,
    MARKER,
    STAGING_PREFIX,
    ResultsError,
    Staged,
    check_destinations,
    clean_staging,
    content_digest,
    inside,
    is_ours,
    not_a_file,
)


def stage(out: Path, name: str, files: dict[str, str]) -> Staged:
    staged = Staged(out, name)
    for file, text in files.items():
        staged.path(file).write_text(text)
    return staged


def test_a_result_is_renamed_into_place_and_carries_the_marker(tmp_path):
    stage(tmp_path, "cam1", {"events.jsonl": "", DONE: "{}"}).place()
    assert sorted(p.name for p in (tmp_path / "cam1").iterdir()) == [MARKER, DONE, "events.jsonl"]
    assert is_ours(tmp_path / "cam1")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(STAGING_PREFIX)]


def test_replacing_an_earlier_result_keeps_what_the_user_put_in_it(tmp_path):
    stage(tmp_path, "cam1", {FAILED: "old failure", "events.jsonl": "old"}).place()
    (tmp_path / "cam1" / "notes.txt").write_text("mine")
    stage(tmp_path, "cam1", {"events.jsonl": "new", DONE: "{}"}).place()
    folder = tmp_path / "cam1"
    assert (folder / "notes.txt").read_text() == "mine"
    assert (folder / "events.jsonl").read_text() == "new"
    assert (folder / DONE).exists() and not (folder / FAILED).exists()  # the archive's stale file went


def test_a_folder_of_the_users_is_refused_and_left_as_it_is(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("x")
    (tmp_path / "clip").write_text("a file where a results folder would go")
    with pytest.raises(ResultsError, match=r"notes exists and was not written by the archive.*1 more"):
        check_destinations(tmp_path, ["notes", "clip", "fresh"])
    # even where it appears while its video runs, place() leaves it alone
    staged = stage(tmp_path, "notes", {DONE: "{}"})
    with pytest.raises(ResultsError, match="appeared while its video ran"):
        staged.place()
    assert sorted(p.name for p in (tmp_path / "notes").iterdir()) == ["todo.txt"]
    assert not staged.folder.exists()


def test_a_folder_of_an_older_archive_without_the_marker_is_the_archives(tmp_path):
    old = tmp_path / "cam1"
    old.mkdir()
    (old / DONE).write_text("{}")
    (old / "events.jsonl").write_text("")
    assert is_ours(old)
    (old / "todo.txt").write_text("x")  # but not once something else is in it
    assert not is_ours(old)
    link = tmp_path / "link"
    link.symlink_to(old)
    assert not is_ours(link)


@pytest.mark.parametrize("files", [["timeline.png"], ["events.jsonl"], ["events.jsonl", "predictions.csv"]])
def test_a_users_folder_of_names_the_archive_also_writes_is_not_the_archives(tmp_path, files):
    """A picture named timeline.png, run_camera.py's events.jsonl: without the marker or a done.json /
    failed.json the folder is the user's, and never written into."""
    folder = tmp_path / "clip"
    folder.mkdir()
    for name in files:
        (folder / name).write_text("the user's own")
    assert not is_ours(folder)
    (folder / DONE).write_text("{}")
    assert is_ours(folder) == ("timeline.png" not in files)  # the timeline came after the marker


def test_only_the_archives_files_are_written(tmp_path):
    with pytest.raises(ValueError, match="not a file the archive writes"):
        Staged(tmp_path, "cam1").path("../../escape.txt")


def test_a_stopped_runs_staging_folders_are_cleaned_but_never_what_else_is_there(tmp_path):
    left = stage(tmp_path, "cam1", {"events.jsonl": "half"})
    kept = stage(tmp_path, "cam2", {"events.jsonl": "half"})
    (kept.folder / "odd.txt").write_text("not the archive's")
    (tmp_path / f"{STAGING_PREFIX}users").mkdir()  # the user's, though named like one (no marker)
    clean_staging(tmp_path)
    assert not left.folder.exists()
    assert sorted(p.name for p in kept.folder.iterdir()) == ["odd.txt"]
    assert (tmp_path / f"{STAGING_PREFIX}users").is_dir()


def test_the_digest_tells_a_replaced_file_of_the_same_size_and_time(tmp_path):
    path = tmp_path / "a.mp4"
    data = bytearray(os.urandom(200_000))
    path.write_bytes(data)
    before, st = content_digest(path), path.stat()
    data[100_000] ^= 0xFF
    path.write_bytes(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    assert content_digest(path) != before


def test_the_digest_of_a_large_file_reads_its_head_middle_and_tail(tmp_path):
    mib = 1 << 20
    path = tmp_path / "big.mp4"
    data = bytearray(10 * mib)
    path.write_bytes(data)
    base = content_digest(path)
    for offset, seen in [(10, True), (5 * mib, True), (10 * mib - 10, True), (2 * mib, False)]:
        changed = bytearray(data)
        changed[offset] = 1
        path.write_bytes(changed)
        assert (content_digest(path) != base) is seen, offset  # an edit between the samples is not seen


def test_special_files_are_named_and_never_opened(tmp_path):
    fifo = tmp_path / "cam.mp4"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.mp4"
    zero.symlink_to("/dev/zero")
    broken = tmp_path / "gone.mp4"
    broken.symlink_to(tmp_path / "nowhere.mp4")
    real = tmp_path / "real.mp4"
    real.write_bytes(b"x")
    assert not_a_file(fifo) == "a FIFO"  # a FIFO opened for reading would block here for good
    assert not_a_file(zero) == "a character device (through a link)"
    assert not_a_file(broken) == "a broken link"
    assert not_a_file(tmp_path) == "a folder"
    assert not_a_file(real) is None


def test_inside_follows_links_and_dots(tmp_path):
    (tmp_path / "v" / "cam").mkdir(parents=True)
    (tmp_path / "alias").symlink_to(tmp_path / "v")
    assert inside(tmp_path / "alias" / "cam", tmp_path / "v")
    assert inside(tmp_path / "v" / "cam" / "..", tmp_path / "v")
    assert not inside(tmp_path / "vv", tmp_path / "v")
