"""glanet.evaluate: video-level metrics against a hand computation, report files, many splits, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from glanet.checkpoint import load_checkpoint, save_checkpoint
from glanet.config import DataConfig
from glanet.data.authors_sampling import authors_indices, authors_test_items
from glanet.data.sampling import Sampling
from glanet.data.synth import write_dataset
from glanet.data.synth_render import CLASSES
from glanet.data.transforms import EvalTransform, preprocessing_dict
from glanet.evaluate import (
    Protocol,
    attention_image,
    build_eval_dataset,
    collect_examples,
    confusion_image,
    evaluate_checkpoint,
    main,
    overlay,
    write_report,
)
from glanet.heatmap import heatmap
from glanet.models.config import ModelConfig
from glanet.models.glanet import GLANet
from stream.overlay import heatmap as stream_heatmap

PRE = preprocessing_dict(DataConfig(resize=(48, 48), crop=40))
SAMPLING = Sampling(window=4, stride=4).to_dict()
SHOWN = CLASSES[:4]  # the classes written; labels stay indices into all 12 CLASSES


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    write_dataset(root, videos_per_class=2, seed=7, split="val", num_frames=8, size=48, classes=SHOWN)
    return root


def make_checkpoint(path: Path, seed: int, fusion: str = "early") -> Path:
    torch.manual_seed(seed)
    cfg = ModelConfig(backbone="resnet18", num_classes=len(CLASSES), sru_hidden=16, fusion=fusion)
    return save_checkpoint(path, GLANet(cfg), class_names=CLASSES, preprocessing=PRE, sampling=SAMPLING)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("ckpt")
    return [make_checkpoint(folder / f"m{i}.pt", seed=i) for i in range(3)]


@pytest.fixture(scope="module")
def result(checkpoints: list[Path], synth: Path) -> dict:
    ck = load_checkpoint(checkpoints[0])
    return evaluate_checkpoint(ck, synth, synth / "val.txt", batch_size=5, workers=0, device="cpu")


def test_metrics_match_a_hand_computation(result: dict, checkpoints: list[Path], synth: Path) -> None:
    ck = load_checkpoint(checkpoints[0])
    dataset = build_eval_dataset(ck, synth, synth / "val.txt")
    assert result["videos"] == 8 and result["clips"] == len(dataset) == 16
    sums = np.zeros((8, len(CLASSES)))
    counts = np.zeros(8)
    with torch.no_grad():
        for clip, _, video in (dataset[i] for i in range(len(dataset))):
            sums[video] += ck.model(clip[None]).fused[0].double().numpy()
            counts[video] += 1
    labels = np.array([r.label for r in dataset.records])
    scores = sums / counts[:, None]
    pred = scores.argmax(axis=1)
    assert [p["pred"] for p in result["predictions"]] == pred.tolist()
    assert result["fused"]["top1"] == pytest.approx(np.mean(pred == labels))
    top5 = np.argsort(-scores, axis=1)[:, :5]
    assert result["fused"]["top5"] == pytest.approx(
        np.mean([lab in row for lab, row in zip(labels, top5, strict=True)])
    )
    per_class = [np.mean(pred[labels == c] == c) for c in range(4)]
    assert result["fused"]["mean_class"] == pytest.approx(np.mean(per_class))


def test_report_contents(result: dict) -> None:
    assert result["branches"] == ["GS", "GL", "GP"]
    assert set(result["per_branch"]) == {"GS", "GL", "GP"}
    for acc in (result["fused"], *result["per_branch"].values()):
        assert set(acc) == {"top1", "top5", "mean_class"}
        assert 0.0 <= acc["top1"] <= acc["top5"] <= 1.0
    cm = np.array(result["confusion"])
    assert cm.shape == (12, 12)
    assert cm.sum(axis=1).tolist() == [2] * 4 + [0] * 8  # rows: videos per true class
    assert [result["per_class"][c]["videos"] for c in CLASSES] == [2] * 4 + [0] * 8
    assert result["per_class"]["spin"]["top1"] is None  # not in this split
    assert result["per_class"]["walk"]["top1"] == cm[0, 0] / 2
    loc = result["localisation"]  # the root has val_gt/: SynthActions
    assert loc["frames"] + loc["skipped_frames"] == 16 * 4
    assert set(loc) >= {"SA", "LA", "uniform", "centre_point"}
    assert set(loc["SA"]) == {
        "mass_in_box",
        "box_share",
        "ratio_mean_per_frame",
        "ratio_of_means",
        "pointing",
    }


def test_write_report_files(result: dict, checkpoints: list[Path], synth: Path, tmp_path: Path) -> None:
    ck = load_checkpoint(checkpoints[0])
    dataset = build_eval_dataset(ck, synth, synth / "val.txt")
    write_report(result, tmp_path, ck, dataset, examples=3)
    assert json.loads((tmp_path / "report.json").read_text()) == json.loads(json.dumps(result))
    cm = cv2.imread(str(tmp_path / "confusion.png"))
    att = cv2.imread(str(tmp_path / "attention.png"))
    assert cm is not None and cm.shape[0] >= 12 * 10 and cm.shape[1] >= 12 * 10
    assert att is not None and att.shape[1] == 3 * 192 + 4 * 4  # frame | SA | LA tiles
    assert 3 * 192 < att.shape[0] < 4 * 260  # three example rows
    assert att.std() > 10  # not blank


def test_attention_figure_draws_the_ground_truth_box(checkpoints: list[Path], synth: Path) -> None:
    ck = load_checkpoint(checkpoints[0])
    dataset = build_eval_dataset(ck, synth, synth / "val.txt")
    with_truth = collect_examples(ck, dataset, 2, str(synth))
    without = collect_examples(ck, dataset, 2, "")
    assert all(ex.box is not None for ex in with_truth) and all(ex.box is None for ex in without)
    crop = int(ck.preprocessing["crop"])
    for ex in with_truth:
        x0, y0, x1, y1 = ex.box
        assert 0 <= x0 < x1 <= crop and 0 <= y0 < y1 <= crop
    green = np.array([0, 255, 0])
    drawn = attention_image(with_truth, tile=192)
    plain = attention_image(without, tile=192)
    assert (drawn == green).all(axis=-1).sum() > 100  # the box's outline, on each of the three tiles
    assert (plain == green).all(axis=-1).sum() == 0
    assert drawn.shape == plain.shape


def test_reports_colour_the_map_as_the_live_overlay_does() -> None:
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)
    att = rng.random((7, 7)).astype(np.float32)
    expected = cv2.addWeighted(frame, 0.5, heatmap(att, 64, 64), 0.5, 0.0)
    np.testing.assert_array_equal(overlay(frame, att), expected)
    assert stream_heatmap is heatmap  # one function for both


def test_confusion_image_for_many_classes() -> None:
    k = 100
    names = [f"class_name_{i:03d}" for i in range(k)]
    img = confusion_image(np.eye(k, dtype=int) * 3, names, "100 classes")
    assert img.shape[0] >= k * 10 and img.shape[1] >= k * 10 and img.dtype == np.uint8


def test_eval_transform_bgr_order_matches_rgb() -> None:
    frame = np.random.default_rng(0).integers(0, 256, (50, 60, 3), dtype=np.uint8)
    rgb = EvalTransform.from_preprocessing(PRE)
    bgr = EvalTransform.from_preprocessing(
        {**PRE, "color": "bgr", "mean": PRE["mean"][::-1], "std": PRE["std"][::-1]}
    )
    assert torch.allclose(rgb([frame]), bgr([frame]).flip(1), atol=1e-6)
    back = rgb.denormalise(rgb([frame])[0])
    assert back.shape == (40, 40, 3) and back.dtype == np.uint8


def test_three_splits_give_a_mean(checkpoints: list[Path], synth: Path, tmp_path: Path, capsys) -> None:
    lists = []
    lines = (synth / "val.txt").read_text().splitlines()
    for i in range(3):  # three "splits": different subsets of the videos
        file = tmp_path / f"split{i}.txt"
        file.write_text("\n".join(lines[i : i + 5]) + "\n")
        lists.append(file)
    argv = ["--root", str(synth), "--out", str(tmp_path / "out"), "--workers", "0", "--examples", "1"]
    for ck, lst in zip(checkpoints, lists, strict=True):
        argv += ["--checkpoint", str(ck), "--list", str(lst)]
    assert main(argv) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert len(report["runs"]) == 3 and [r["videos"] for r in report["runs"]] == [5, 5, 5]
    for key in ("top1", "top5", "mean_class"):
        assert report["mean"]["fused"][key] == pytest.approx(
            np.mean([r["fused"][key] for r in report["runs"]])
        )
    assert report["mean"]["per_branch"]["GL"]["top1"] == pytest.approx(
        np.mean([r["per_branch"]["GL"]["top1"] for r in report["runs"]])
    )
    assert "SA" in report["mean"]["localisation"]
    for i, ck in enumerate(checkpoints, start=1):
        folder = tmp_path / "out" / f"{i}_{ck.stem}"
        assert (folder / "report.json").is_file() and cv2.imread(str(folder / "confusion.png")) is not None
    out = capsys.readouterr().out
    assert "mean of 3" in out and "video-level accuracy" in out


def test_late_fusion_streams_and_max_videos(synth: Path, tmp_path: Path) -> None:
    ck = load_checkpoint(make_checkpoint(tmp_path / "late.pt", seed=3, fusion="late"))
    res = evaluate_checkpoint(ck, synth, synth / "val.txt", workers=0, device="cpu", max_videos=3)
    assert res["branches"] == ["GP", "SA", "LA"] and res["videos"] == 3
    assert np.array(res["confusion"]).sum() == 3


def _run_cli(argv: list[str], capsys) -> tuple[int, list[str]]:
    code = main(argv)
    return code, capsys.readouterr().err.strip().splitlines()


@pytest.mark.parametrize(
    "case", ["missing_checkpoint", "not_a_checkpoint", "bad_list", "label_too_big", "unpaired"]
)
def test_cli_bad_input_is_one_line_and_exit_2(
    case: str, checkpoints: list[Path], synth: Path, tmp_path: Path, capsys
):
    ckpt, lst = str(checkpoints[0]), str(synth / "val.txt")
    extra: list[str] = []
    if case == "missing_checkpoint":
        ckpt = str(tmp_path / "nope.pt")
    elif case == "not_a_checkpoint":
        (tmp_path / "junk.pt").write_bytes(b"not a torch file")
        ckpt = str(tmp_path / "junk.pt")
    elif case == "bad_list":
        (tmp_path / "bad.txt").write_text("val/walk/walk_000000 eight 0\n")
        lst = str(tmp_path / "bad.txt")
    elif case == "label_too_big":
        (tmp_path / "big.txt").write_text("val/walk/walk_000000 8 40\n")
        lst = str(tmp_path / "big.txt")
    else:
        extra = ["--checkpoint", ckpt]
    argv = ["--checkpoint", ckpt, "--list", lst, *extra, "--root", str(synth), "--out", str(tmp_path / "o")]
    argv += ["--workers", "0"]
    if case == "unpaired":
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip().splitlines()
    else:
        code, err = _run_cli(argv, capsys)
        assert code == 2
    assert len(err) == 1, err
    assert "Traceback" not in err[0]


def test_an_unwritable_out_is_refused_before_evaluating(
    checkpoints: list[Path], synth: Path, tmp_path: Path, capsys, monkeypatch
):
    import glanet.evaluate as evaluate

    called = []
    monkeypatch.setattr(evaluate, "evaluate_checkpoint", lambda *a, **k: called.append(1))
    (tmp_path / "a_file").write_text("x")
    argv = ["--checkpoint", str(checkpoints[0]), "--list", str(synth / "val.txt"), "--root", str(synth)]
    code, err = _run_cli([*argv, "--out", str(tmp_path / "a_file")], capsys)
    assert code == 2 and len(err) == 1 and "--out" in err[0] and "is a file" in err[0], err
    code, err = _run_cli([*argv, "--out", str(tmp_path / "a_file" / "below")], capsys)
    assert code == 2 and len(err) == 1 and "cannot write there" in err[0], err
    assert not called  # refused before any evaluation


def test_cli_missing_frame_in_a_worker_is_one_line(
    checkpoints: list[Path], synth: Path, tmp_path: Path, capsys
):
    (tmp_path / "short.txt").write_text("val/walk/walk_000000 99 0\n")  # frames 8..98 are not there
    argv = ["--checkpoint", str(checkpoints[0]), "--list", str(tmp_path / "short.txt"), "--root", str(synth)]
    code, err = _run_cli([*argv, "--out", str(tmp_path / "o"), "--workers", "1"], capsys)
    assert code == 2 and len(err) == 1 and "frame missing" in err[0], err


# -- the sources training reads: a <class>/<video>.mp4 folder and a CSV of videos ---------------------------


def _write_mp4(path: Path, frames: np.ndarray, fps: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter.fourcc(*"mp4v"), fps, frames.shape[2:0:-1])
    for f in frames:
        out.write(f)
    out.release()


@pytest.fixture(scope="module")
def demo_videos(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The demo model and two SynthActions videos of each of 3 classes, as a class folder and as a CSV."""
    from glanet.data.synth_render import generate_video

    demo = Path(__file__).resolve().parents[1] / "models" / "glanet_synthactions_demo.pt"
    root = tmp_path_factory.mktemp("videos")
    # folders named for the checkpoint's classes, in an order unlike the checkpoint's (sorted by name)
    rows = ["path,label"]
    for name in ("walk", "jump", "clap"):
        for seed in (1, 2):
            v = generate_video(name, 7000 + seed, num_frames=16, size=112, fps=7.5)
            path = root / "by_class" / name / f"{seed}.mp4"
            _write_mp4(path, v.frames, 7.5)
            rows.append(f"by_class/{name}/{seed}.mp4,{name}")
    csv = root / "videos.csv"
    csv.write_text("\n".join(rows) + "\n")
    return demo, root / "by_class", csv


def test_evaluate_reads_a_class_folder_and_a_csv_as_train_does(demo_videos, tmp_path, caplog) -> None:
    demo, folder, csv = demo_videos
    ck = load_checkpoint(demo)
    by_folder = build_eval_dataset(ck, "", folder)
    by_csv = build_eval_dataset(ck, csv.parent, csv)
    # labels are the checkpoint's indices of the folder names, not the folders' sorted order
    want = sorted(ck.class_names.index(n) for n in ("walk", "jump", "clap") for _ in (1, 2))
    assert sorted(r.label for r in by_folder.records) == want == sorted(r.label for r in by_csv.records)
    out = tmp_path / "report"
    caplog.set_level("INFO", logger="glanet.evaluate")
    code = main(["--checkpoint", str(demo), "--list", str(folder), "--out", str(out), "--examples", "2"])
    assert code == 0
    report = json.loads((out / "report.json").read_text())
    assert report["videos"] == 6 and 0.0 <= report["fused"]["top1"] <= 1.0
    assert (out / "confusion.png").is_file()
    # it says where the figures went
    assert f"figures: {out / 'confusion.png'}, {out / 'attention.png'}" in caplog.text


def test_evaluate_refuses_a_folder_of_unknown_classes(demo_videos, tmp_path) -> None:
    demo, folder, _ = demo_videos
    (folder.parent / "odd" / "bicycle").mkdir(parents=True, exist_ok=True)
    (folder.parent / "odd" / "bicycle" / "1.mp4").write_bytes((folder / "walk" / "1.mp4").read_bytes())
    with pytest.raises(ValueError, match="class folder 'bicycle' is not one of"):
        build_eval_dataset(load_checkpoint(demo), "", folder.parent / "odd")


# -- the authors' test protocol: random TSN draws per video, logits averaged ---------------------------------


def their_get_indices(
    num_frames: int, num_segments: int, frames: int, rng: np.random.Generator
) -> np.ndarray:
    """The published Dataset.get_indices line for line, `np.random.choice` given as `rng.choice`."""
    average_duration = num_frames // num_segments
    choices = [
        rng.choice(average_duration, frames, replace=False) + i * average_duration
        for i in range(num_segments)
    ]
    choices = np.concatenate(choices)
    offsets = np.sort(choices)
    return offsets


@pytest.mark.parametrize(("num_frames", "segments", "per_segment"), [(408, 12, 1), (40, 12, 1), (100, 4, 3)])
def test_authors_draws_are_their_get_indices(num_frames: int, segments: int, per_segment: int) -> None:
    for seed in range(5):
        ours = authors_indices(num_frames, segments, per_segment, np.random.default_rng(seed))
        theirs = their_get_indices(num_frames, segments, per_segment, np.random.default_rng(seed))
        np.testing.assert_array_equal(ours, theirs)
    rng = np.random.default_rng(0)
    many = np.stack([authors_indices(num_frames, segments, per_segment, rng) for _ in range(3000)])
    d = num_frames // segments
    assert (many // d == np.repeat(np.arange(segments), per_segment)).all()  # each in its segment
    assert len(np.unique(many)) == segments * d  # every frame of every segment is drawn, the tail never


def test_authors_draws_of_a_short_video_pad_and_refuse_nonsense() -> None:
    # 5 frames, 12 segments: theirs raises; ours repeats the last frame, as glanet's clips do
    assert authors_indices(5, 12, 1, np.random.default_rng(0)).tolist() == [0, 1, 2, 3, 4] + [4] * 7
    with pytest.raises(ValueError, match="at least one frame"):
        authors_indices(0, 12, 1, np.random.default_rng(0))
    with pytest.raises(ValueError, match="draws = 0"):
        authors_test_items([20], 4, 1, draws=0)


def test_authors_items_depend_on_the_seed_and_the_video_only() -> None:
    items = authors_test_items([40, 30, 50], 4, 1, draws=10, seed=3)
    assert [v for v, _ in items] == [0] * 10 + [1] * 10 + [2] * 10
    again = authors_test_items([40, 30], 4, 1, draws=10, seed=3)  # a shorter list: the same first videos
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(items, again, strict=False))
    other = authors_test_items([40, 30, 50], 4, 1, draws=10, seed=4)
    assert not all(np.array_equal(a, b) for (_, a), (_, b) in zip(items, other, strict=True))
    assert len({tuple(ix) for _, ix in items[:10]}) > 1  # the ten draws of a video differ


def make_tsn_checkpoint(path: Path) -> Path:
    """A tiny `reference` model trained on TSN 4 x 1 frame clips, as the authors' 12 x 1."""
    torch.manual_seed(11)
    cfg = ModelConfig.from_preset("reference", backbone="resnet18", num_classes=len(CLASSES), sru_hidden=16)
    sampling = Sampling(mode="tsn", segments=4, frames_per_segment=1, window=4, stride=4).to_dict()
    model = GLANet(cfg)
    with torch.no_grad():  # logits far from uniform, so that averaging logits and probabilities differ
        for head in model.heads.values():
            head.fc.weight.mul_(50.0)
            head.fc.bias.normal_(0.0, 2.0)
    return save_checkpoint(path, model, class_names=CLASSES, preprocessing=PRE, sampling=sampling)


def test_authors_protocol_averages_the_logits_of_seeded_draws(synth: Path, tmp_path: Path) -> None:
    ck = load_checkpoint(make_tsn_checkpoint(tmp_path / "tsn.pt"))
    protocol = Protocol("authors", draws=3, seed=5)
    res = evaluate_checkpoint(
        ck, synth, synth / "val.txt", batch_size=5, workers=0, device="cpu", protocol=protocol
    )
    assert res["protocol"] == {
        "name": "authors",
        "draws": 3,
        "seed": 5,
        "segments": 4,
        "frames_per_segment": 1,
        "averaged": "mean of the branches' logits",
    }
    assert res["videos"] == 8 and res["clips"] == 24
    dataset = build_eval_dataset(ck, synth, synth / "val.txt", protocol=protocol)
    want = authors_test_items([8] * 8, 4, 1, draws=3, seed=5)
    assert all(np.array_equal(a[1], b[1]) and a[0] == b[0] for a, b in zip(dataset.items, want, strict=True))
    logit_sum = np.zeros((8, 3, len(CLASSES)))  # per video, per branch
    prob_sum = np.zeros((8, len(CLASSES)))
    with torch.no_grad():
        for clip, _, video in (dataset[i] for i in range(len(dataset))):
            out = ck.model(clip[None])
            logit_sum[video] += out.logits[0].double().numpy()
            prob_sum[video] += out.fused[0].double().numpy()
    fused = logit_sum.mean(axis=1) / 3  # (GS + GL + GP) / 3 of each draw, averaged over the 3 draws
    pred = fused.argmax(axis=1)
    soft = np.exp(fused - fused.max(axis=1, keepdims=True))
    soft /= soft.sum(axis=1, keepdims=True)
    assert [p["pred"] for p in res["predictions"]] == pred.tolist()
    confidence = [p["confidence"] for p in res["predictions"]]
    np.testing.assert_allclose(confidence, soft[np.arange(8), pred], atol=1e-5)
    # averaging the fused probabilities instead would not give these confidences
    assert np.abs(np.array(confidence) - (prob_sum / 3)[np.arange(8), pred]).max() > 1e-4
    labels = np.array([r.label for r in dataset.records])
    assert res["fused"]["top1"] == pytest.approx(np.mean(pred == labels))
    gl = logit_sum[:, 1].argmax(axis=1)  # a branch: its own logits averaged
    assert res["per_branch"]["GL"]["top1"] == pytest.approx(np.mean(gl == labels))
    # the draws are fixed before loading: DataLoader workers do not change them
    res_workers = evaluate_checkpoint(
        ck, synth, synth / "val.txt", batch_size=5, workers=1, device="cpu", protocol=protocol
    )
    assert [p["pred"] for p in res_workers["predictions"]] == pred.tolist()
    np.testing.assert_allclose([p["confidence"] for p in res_workers["predictions"]], confidence, atol=1e-5)


def test_cli_protocol_authors_is_named_in_the_report(
    checkpoints: list[Path], synth: Path, tmp_path: Path, capsys
) -> None:
    argv = ["--checkpoint", str(checkpoints[0]), "--list", str(synth / "val.txt"), "--root", str(synth)]
    argv += ["--workers", "0", "--examples", "1"]
    assert (
        main([*argv, "--out", str(tmp_path / "a"), "--protocol", "authors", "--draws", "2", "--seed", "1"])
        == 0
    )
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    # a model trained on 4 consecutive frames ("clips") is drawn as 4 segments of one frame
    assert report["protocol"] == {
        "name": "authors",
        "draws": 2,
        "seed": 1,
        "segments": 4,
        "frames_per_segment": 1,
        "averaged": "mean of the branches' logits",
    }
    assert report["clips"] == 16
    assert "authors' protocol: 2 draws a video (seed 1)" in capsys.readouterr().out
    assert main([*argv, "--out", str(tmp_path / "d")]) == 0
    default = json.loads((tmp_path / "d" / "report.json").read_text())
    assert default["protocol"] == {"name": "default", "sampling": "clips", "averaged": "fused probabilities"}
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--out", str(tmp_path / "x"), "--seed", "3"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1 and "--protocol authors" in err[0], err
