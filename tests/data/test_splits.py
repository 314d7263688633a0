"""glanet.data.splits: HMDB51 / UCF101 split files → lists, with the authors' label order."""

from __future__ import annotations

from pathlib import Path

import pytest

from glanet.data import splits
from glanet.data.lists import VideoRecord, read_class_names, read_list

HMDB51 = [
    "brush_hair",
    "cartwheel",
    "catch",
    "chew",
    "clap",
    "climb",
    "climb_stairs",
    "dive",
    "draw_sword",
    "dribble",
    "drink",
    "eat",
    "fall_floor",
    "fencing",
    "flic_flac",
    "golf",
    "handstand",
    "hit",
    "hug",
    "jump",
    "kick",
    "kick_ball",
    "kiss",
    "laugh",
    "pick",
    "pour",
    "pullup",
    "punch",
    "push",
    "pushup",
    "ride_bike",
    "ride_horse",
    "run",
    "shake_hands",
    "shoot_ball",
    "shoot_bow",
    "shoot_gun",
    "sit",
    "situp",
    "smile",
    "smoke",
    "somersault",
    "stand",
    "swing_baseball",
    "sword",
    "sword_exercise",
    "talk",
    "throw",
    "turn",
    "walk",
    "wave",
]


def test_real_hmdb51_label_order() -> None:
    assert len(HMDB51) == 51
    classes = splits.hmdb51_classes([f"{c}_test_split1.txt" for c in HMDB51])
    assert sorted(classes) == sorted(HMDB51)
    assert classes.index("climb_stairs") == 5 and classes.index("climb") == 6
    # The other prefix pairs follow the same rule ('_b' < '_t', '_e' < '_t'); '_' < 'u' keeps push, sit first.
    assert classes.index("kick_ball") < classes.index("kick")
    assert classes.index("sword_exercise") < classes.index("sword")
    assert classes.index("push") < classes.index("pushup") and classes.index("sit") < classes.index("situp")
    assert classes[0] == "brush_hair" and classes[-1] == "wave"


def _frames(root: Path, rel: str, n: int) -> None:
    folder = root / rel
    folder.mkdir(parents=True)
    for i in range(n):
        (folder / f"{i}.jpg").write_bytes(b"")


def test_hmdb51_converter_and_cli(tmp_path: Path) -> None:
    sdir, frames, out = tmp_path / "splits", tmp_path / "frames", tmp_path / "out"
    sdir.mkdir()
    videos = {"climb": ["c1", "c2", "c3"], "climb_stairs": ["s1", "s2"], "brush_hair": ["b1", "b2"]}
    ids = {"c1": 1, "c2": 2, "c3": 0, "s1": 2, "s2": 1, "b1": 1, "b2": 2}
    for cls, names in videos.items():
        for k in (1, 2):
            text = "".join(
                f"{v}.avi {ids[v] if k == 1 else 1} \n" for v in names
            )  # trailing space as HMDB has
            (sdir / f"{cls}_test_split{k}.txt").write_text(text)
    for cls, names in videos.items():
        for i, v in enumerate(names):
            if v != "b2":  # one frame folder missing: reported and skipped
                _frames(frames, f"HMDB/{cls}/{v}", 3 + i)

    lists = splits.hmdb51_lists(sdir, 1, splits.frame_counter(frames))
    assert lists.classes == ["brush_hair", "climb_stairs", "climb"]
    assert lists.train == [
        VideoRecord("HMDB/brush_hair/b1", 3, 0),
        VideoRecord("HMDB/climb_stairs/s2", 4, 1),
        VideoRecord("HMDB/climb/c1", 3, 2),
    ]
    assert lists.test == [VideoRecord("HMDB/climb_stairs/s1", 3, 1), VideoRecord("HMDB/climb/c2", 4, 2)]
    assert lists.skipped == [("HMDB/brush_hair/b2", "frame folder missing")]

    assert (
        splits.main(
            ["hmdb51", "--splits", str(sdir), "--frames", str(frames), "--split", "1", "--out", str(out)]
        )
        == 0
    )
    assert read_list(out / "hmdb51_split1_train.txt") == lists.train
    assert read_list(out / "hmdb51_split1_test.txt") == lists.test
    assert read_class_names(out / "classes.txt") == lists.classes


def test_hmdb51_count_function_and_bad_line(tmp_path: Path) -> None:
    (tmp_path / "run_test_split1.txt").write_text("a.avi 1\nb.avi 2\n")
    counts = {"HMDB/run/a": 10}
    lists = splits.hmdb51_lists(tmp_path, 1, counts.get)
    assert lists.train == [VideoRecord("HMDB/run/a", 10, 0)] and lists.test == []
    assert lists.skipped == [("HMDB/run/b", "frame folder missing")]
    (tmp_path / "run_test_split1.txt").write_text("a.avi 1\nb.avi 7\n")
    with pytest.raises(splits.SplitError, match=r"run_test_split1\.txt:2"):
        splits.hmdb51_lists(tmp_path, 1, counts.get)
    with pytest.raises(splits.SplitError, match=r"no '<class>_test_split2\.txt' files"):
        splits.hmdb51_lists(tmp_path, 2, counts.get)


def test_count_frames_in(tmp_path: Path) -> None:
    _frames(tmp_path, "ok", 4)
    assert splits.count_frames_in(tmp_path / "ok") == 4
    (tmp_path / "ok" / "1.jpg").unlink()
    assert "not numbered 0..2" in splits.count_frames_in(tmp_path / "ok")
    (tmp_path / "empty").mkdir()
    assert "no <i>.jpg" in splits.count_frames_in(tmp_path / "empty")
    assert splits.count_frames_in(tmp_path / "none") == "frame folder missing"


def test_ucf101_converter_and_cli(tmp_path: Path) -> None:
    sdir, frames, out = tmp_path / "splits", tmp_path / "frames", tmp_path / "out"
    sdir.mkdir()
    (sdir / "classInd.txt").write_text("1 ApplyEyeMakeup\r\n2 Archery\r\n3 HandstandPushups\r\n")
    (sdir / "trainlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nHandstandPushups/v_HandStandPushups_g08_c01.avi 3\n"
    )
    (sdir / "testlist01.txt").write_text(
        "Archery/v_Archery_g01_c01.avi\nApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\n"
    )
    for rel, n in [
        ("UCF101/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01", 5),
        ("UCF101/HandstandPushups/v_HandStandPushups_g08_c01", 6),
        ("UCF101/Archery/v_Archery_g01_c01", 7),
        ("UCF101/ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01", 8),
    ]:
        _frames(frames, rel, n)
    lists = splits.ucf101_lists(sdir, 1, splits.frame_counter(frames))
    assert lists.classes == ["ApplyEyeMakeup", "Archery", "HandstandPushups"]
    assert lists.train == [
        VideoRecord("UCF101/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01", 5, 0),
        VideoRecord("UCF101/HandstandPushups/v_HandStandPushups_g08_c01", 6, 2),
    ]
    assert lists.test == [
        VideoRecord("UCF101/Archery/v_Archery_g01_c01", 7, 1),
        VideoRecord("UCF101/ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01", 8, 0),
    ]
    assert not lists.skipped
    assert splits.main(["ucf101", "--splits", str(sdir), "--frames", str(frames), "--out", str(out)]) == 0
    assert read_list(out / "ucf101_split1_test.txt") == lists.test
    assert read_class_names(out / "classes.txt") == lists.classes


def test_ucf101_label_disagreeing_with_folder(tmp_path: Path) -> None:
    (tmp_path / "classInd.txt").write_text("1 A\n2 B\n")
    (tmp_path / "trainlist01.txt").write_text("A/v_A_g01_c01.avi 2\n")
    (tmp_path / "testlist01.txt").write_text("")
    with pytest.raises(splits.SplitError, match=r"trainlist01\.txt:1: index 2 disagrees with class 'A'"):
        splits.ucf101_lists(tmp_path, 1, lambda p: 1)


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        splits.main(
            ["hmdb51", "--splits", str(tmp_path / "none"), "--frames", str(tmp_path), "--out", str(tmp_path)]
        )
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "split folder not found" in err
    with pytest.raises(SystemExit) as e:
        splits.main(["kinetics", "--splits", "x", "--frames", "y", "--out", "z"])
    assert e.value.code == 2 and capsys.readouterr().err.count("\n") == 1
