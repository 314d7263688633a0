"""glanet.data.lists: the authors' list format, video CSVs, class folders."""

from __future__ import annotations

from pathlib import Path

import pytest

from glanet.data.lists import (
    ListError,
    VideoFileRecord,
    VideoRecord,
    read_class_names,
    read_list,
    read_video_csv,
    scan_video_folder,
    write_list,
)

AUTHORS_LINE = "HMDB/brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0 408 0"


def test_authors_sample_line(tmp_path: Path) -> None:
    f = tmp_path / "l.txt"
    f.write_text(AUTHORS_LINE + "\n")
    assert read_list(f) == [VideoRecord("HMDB/brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_0", 408, 0)]


def test_spaces_in_paths_comments_and_blank_lines(tmp_path: Path) -> None:
    f = tmp_path / "l.txt"
    f.write_text("# a comment\n\nUCF/my class/a video  with spaces 12 3\r\n   \nx/y 1 0")
    assert read_list(f) == [VideoRecord("UCF/my class/a video  with spaces", 12, 3), VideoRecord("x/y", 1, 0)]


@pytest.mark.parametrize(
    "line, words",
    [
        ("justapath", "expected 'path nframes label'"),
        ("a 12", "expected 'path nframes label'"),
        ("a b 3", "must be integers"),
        ("a 12 x", "must be integers"),
        ("a 0 1", "nframes = 0"),
        ("a 5 -1", "label = -1"),
    ],
)
def test_malformed_line_names_file_and_line(tmp_path: Path, line: str, words: str) -> None:
    f = tmp_path / "bad.txt"
    f.write_text(f"{AUTHORS_LINE}\n# comment\n{line}\n")
    with pytest.raises(ListError, match=rf"bad\.txt:3: .*{words}"):
        read_list(f)


def test_missing_list(tmp_path: Path) -> None:
    with pytest.raises(ListError, match="list file not found"):
        read_list(tmp_path / "nope.txt")


def test_write_read_round_trip_and_atomic(tmp_path: Path) -> None:
    records = [VideoRecord("a b/c d", 30, 1), VideoRecord("HMDB/x/y", 408, 50)]
    f = write_list(tmp_path / "out.txt", records)
    assert read_list(f) == records
    assert f.read_text() == "a b/c d 30 1\nHMDB/x/y 408 50\n"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]  # no temp file left


@pytest.mark.parametrize("path", ["", " lead", "#hash", "a\nb"])
def test_write_refuses_unreadable_paths(tmp_path: Path, path: str) -> None:
    with pytest.raises(ValueError, match="cannot be written"):
        write_list(tmp_path / "out.txt", [VideoRecord(path, 3, 0)])
    assert not (tmp_path / "out.txt").exists()


def test_video_csv_names_header_and_trim(tmp_path: Path) -> None:
    f = tmp_path / "k.csv"
    f.write_text('path,label,start,end\nv/a.mp4,jump,1.5,11.5\n"v/b, c.mp4",run,,\n/abs/c.mp4,jump\n')
    records, names = read_video_csv(f)
    assert names == ("jump", "run")
    assert records == [
        VideoFileRecord(str(tmp_path / "v/a.mp4"), 0, 1.5, 11.5),
        VideoFileRecord(str(tmp_path / "v/b, c.mp4"), 1, None, None),
        VideoFileRecord("/abs/c.mp4", 0, None, None),
    ]


def test_video_csv_with_class_list_and_ints(tmp_path: Path) -> None:
    f = tmp_path / "k.csv"
    f.write_text("a.mp4,run\nb.mp4,0\n")
    records, names = read_video_csv(f, ["walk", "run"], root="/data")
    assert names == ("walk", "run")
    assert [(r.path, r.label) for r in records] == [("/data/a.mp4", 1), ("/data/b.mp4", 0)]
    f.write_text("a.mp4,3\nb.mp4,0\n")
    records, names = read_video_csv(f)
    assert names == () and [r.label for r in records] == [3, 0]


@pytest.mark.parametrize(
    "text, words",
    [
        ("a.mp4\n", "expected 'path,label'"),
        ("a.mp4,fly\n", "class 'fly' is not in the class list"),
        ("a.mp4,run,5,2\n", r"end \(2.0\) must be after start"),
        ("a.mp4,run,x,\n", "start = 'x' is not a number of seconds"),
        ("a.mp4,7\n", "label 7 is outside"),
    ],
)
def test_video_csv_errors(tmp_path: Path, text: str, words: str) -> None:
    f = tmp_path / "k.csv"
    f.write_text(text)
    with pytest.raises(ListError, match=rf"k\.csv:1: {words}"):
        read_video_csv(f, ["walk", "run"])


def test_video_csv_mixed_labels_need_a_class_list(tmp_path: Path) -> None:
    f = tmp_path / "k.csv"
    f.write_text("a.mp4,run\nb.mp4,0\n")
    with pytest.raises(ListError, match="mix integers and class names"):
        read_video_csv(f)


def test_scan_video_folder(tmp_path: Path) -> None:
    for rel in ["walk/b.avi", "walk/a.mp4", "run/x.webm", "run/notes.txt", "jump/y.MKV", ".hidden/z.mp4"]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    records, names = scan_video_folder(tmp_path)
    assert names == ("jump", "run", "walk")
    assert [(Path(r.path).relative_to(tmp_path).as_posix(), r.label) for r in records] == [
        ("jump/y.MKV", 0),
        ("run/x.webm", 1),
        ("walk/a.mp4", 2),
        ("walk/b.avi", 2),
    ]
    with pytest.raises(ListError, match="video folder not found"):
        scan_video_folder(tmp_path / "none")


def test_class_names_file(tmp_path: Path) -> None:
    f = tmp_path / "c.txt"
    f.write_text("run\n\nwalk\n")
    assert read_class_names(f) == ["run", "walk"]
    f.write_text("run\nrun\n")
    with pytest.raises(ListError, match="listed twice"):
        read_class_names(f)
