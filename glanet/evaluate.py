"""Evaluate checkpoints on a frame-folder list: video-level accuracy, confusion, attention examples.

    python -m glanet.evaluate --checkpoint runs/s1/best.pt --root data/hmdb51 --list lists/s1_test.txt \
        --out reports/s1 [--batch-size 8 --workers 2 --device auto --examples 8 --max-videos N]
    python -m glanet.evaluate --checkpoint a.pt --list s1.txt --checkpoint b.pt --list s2.txt ... \
        --root R --out D
    python -m glanet.evaluate ... --protocol authors [--draws 10 --seed 0]

The checkpoint is the source of truth for the preprocessing and the clip sampling. The default
protocol averages the fused probabilities of the checkpoint's test clips (evenly spaced, deterministic);
`--protocol authors` is the published code's test: `draws` random TSN draws per video (seeded), the mean
of the branches' logits averaged over them (glanet.data.authors_sampling). Writes
`report.json`, `confusion.png` and `attention.png` (frame | SA | LA, as the paper's Fig. 8); with
several pairs each goes to `<out>/<n>_<checkpoint stem>/` and `<out>/report.json` holds them all and
their mean. On SynthActions (a `<split>_gt/` beside the frames) the SA/LA localisation is scored too.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from torch import Tensor
from torch.utils.data import DataLoader

from glanet.checkpoint import LoadedCheckpoint, load_checkpoint
from glanet.cli import Parser, error_line, number
from glanet.data.authors_sampling import DRAWS, authors_layout, authors_test_items
from glanet.data.datasets import (
    FrameFolderDataset,
    VideoFileDataset,
    build_eval_dataset_from,
    video_level_accuracy,
)
from glanet.data.lists import read_list, read_video_csv, scan_video_folder, write_text_atomic
from glanet.data.sampling import Sampling
from glanet.data.transforms import EvalTransform
from glanet.heatmap import heatmap
from glanet.localisation import (
    GroundTruthCache,
    LocalisationStats,
    add_clip,
    box_to_crop,
    has_ground_truth,
)

log = logging.getLogger("glanet.evaluate")

METRICS = ("top1", "top5", "mean_class")
PROTOCOLS = ("default", "authors")


@dataclass(frozen=True)
class Protocol:
    """How a video's clips are chosen and their scores combined.

    default: the checkpoint's test clips (`Sampling.test`), fused probabilities averaged per video.
    authors: `draws` random draws per video from `seed` (the authors' test), logits averaged: the fused
    score of a clip is the mean of its branches' logits (the authors' `output`), whatever the
    checkpoint's `score_fusion`; a branch's, its logits.
    """

    name: str = "default"
    draws: int = DRAWS
    seed: int = 0

    def __post_init__(self) -> None:
        if self.name not in PROTOCOLS:
            raise ValueError(f"protocol {self.name!r} is not one of {', '.join(PROTOCOLS)}")
        if self.draws < 1:
            raise ValueError(f"draws = {self.draws} must be at least 1")
        if self.seed < 0:
            raise ValueError(f"seed = {self.seed} must be >= 0")

    def describe(self, sampling: Sampling) -> dict[str, Any]:
        """The report's `protocol` entry: what was sampled and averaged."""
        if self.name == "default":
            return {"name": "default", "sampling": sampling.mode, "averaged": "fused probabilities"}
        segments, per_segment = authors_layout(sampling)
        return {
            "name": "authors",
            "draws": self.draws,
            "seed": self.seed,
            "segments": segments,
            "frames_per_segment": per_segment,
            "averaged": "mean of the branches' logits",
        }


# -- the eval data, from the checkpoint's own metadata --------------------------------------------


def build_eval_dataset(
    ck: LoadedCheckpoint,
    root: str | os.PathLike[str],
    list_file: str | os.PathLike[str],
    max_videos: int | None = None,
    protocol: Protocol | None = None,
) -> FrameFolderDataset | VideoFileDataset:
    """Every test clip of every video `list_file` names, preprocessed and sampled as `ck` was trained
    (with `protocol` authors: its draws instead of the checkpoint's test clips).

    The same sources as training reads: a `path nframes label` list of frame folders under `root`, a CSV of
    video files (`path,label[,start,end]`) or a folder `<class>/<video>.mp4` (classes matched by name to
    the checkpoint's, so a folder's sorted order need not be the training order)."""
    dataset = _build_eval_dataset(ck, root, list_file, max_videos)
    if protocol is not None and protocol.name == "authors":  # the same videos, other frames: the draws
        segments, per_segment = authors_layout(dataset.sampling)
        dataset.items = authors_test_items(
            dataset.video_frames, segments, per_segment, protocol.draws, protocol.seed
        )
    return dataset


def _build_eval_dataset(
    ck: LoadedCheckpoint,
    root: str | os.PathLike[str],
    list_file: str | os.PathLike[str],
    max_videos: int | None,
) -> FrameFolderDataset | VideoFileDataset:
    source = Path(list_file)
    k = len(ck.class_names)
    if source.is_dir() or source.suffix.lower() == ".csv":
        if source.is_dir():
            found, names = scan_video_folder(source)
            unknown = [n for n in names if n not in ck.class_names]
            if unknown:
                raise ValueError(
                    f"{source}: class folder {unknown[0]!r} is not one of {ck.path.name}'s {k} classes"
                )
            index = {n: ck.class_names.index(n) for n in names}
            videos = [dataclasses.replace(r, label=index[names[r.label]]) for r in found]
        else:
            videos, _ = read_video_csv(source, ck.class_names, root=root or None)
        if not videos:
            raise ValueError(f"{source}: no videos")
        if max_videos is not None:
            if max_videos < 1:
                raise ValueError(f"max_videos = {max_videos} must be at least 1")
            videos = videos[:max_videos]
        transform = EvalTransform.from_preprocessing(ck.preprocessing)
        return VideoFileDataset(videos, Sampling.from_dict(ck.sampling), transform, train=False)
    records = read_list(list_file)
    if not records:
        raise ValueError(f"{list_file}: no videos")
    bad = [r for r in records if r.label >= k]
    if bad:
        raise ValueError(
            f"{list_file}: {bad[0].path} has label {bad[0].label}, but {ck.path.name} has {k} classes; "
            "is this the list the checkpoint was trained for?"
        )
    return build_eval_dataset_from(root, records, ck.preprocessing, ck.sampling, max_videos)


def resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {device}: no CUDA device on this machine")
    return torch.device(device)


# -- metrics --------------------------------------------------------------------------------------


def video_scores(clip_scores: np.ndarray, video_index: np.ndarray, num_videos: int) -> np.ndarray:
    """Mean of each video's clip scores: (N, K) -> (V, K)."""
    sums = np.zeros((num_videos, clip_scores.shape[1]))
    np.add.at(sums, video_index, clip_scores)
    counts = np.bincount(video_index, minlength=num_videos)
    if (counts == 0).any():
        raise ValueError(f"video {int(np.argmin(counts))} has no clips")
    return sums / counts[:, None]


def accuracy_summary(
    clip_scores: np.ndarray,
    video_index: np.ndarray,
    clip_labels: np.ndarray,
    num_classes: int,
    logits: bool = False,
) -> dict[str, Any]:
    """Video-level top1/top5, mean class accuracy, per-class top-1, confusion (rows true, cols predicted).

    The video's score is the mean of its clips'; `confidence` is that score at the prediction, or with
    `logits` the softmax of the mean logits there."""
    acc = video_level_accuracy(clip_scores, video_index, clip_labels)
    num_videos = int(video_index.max()) + 1
    scores = video_scores(clip_scores, video_index, num_videos)
    labels = np.zeros(num_videos, np.int64)
    labels[video_index] = clip_labels
    pred = scores.argmax(axis=1)
    if logits:
        scores = np.exp(scores - scores.max(axis=1, keepdims=True))
        scores /= scores.sum(axis=1, keepdims=True)
    confusion = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(confusion, (labels, pred), 1)
    support = confusion.sum(axis=1)
    per_class = [float(confusion[c, c] / support[c]) if support[c] else None for c in range(num_classes)]
    present = [a for a in per_class if a is not None]
    return {
        "top1": acc["top1"],
        "top5": acc["top5"],
        "mean_class": float(np.mean(present)),
        "per_class": per_class,
        "confusion": confusion,
        "pred": pred,
        "labels": labels,
        "confidence": scores[np.arange(num_videos), pred],
    }


@torch.no_grad()
def evaluate_checkpoint(
    ck: LoadedCheckpoint,
    root: str | os.PathLike[str],
    list_file: str | os.PathLike[str],
    *,
    batch_size: int = 8,
    workers: int = 2,
    device: str | torch.device = "auto",
    max_videos: int | None = None,
    protocol: Protocol | None = None,
) -> dict[str, Any]:
    """Video-level accuracy of `ck` on `list_file` (clip predictions averaged per video), as plain data.

    Keys: checkpoint, list, protocol (`Protocol.describe`), videos, clips, class_names, branches, fused
    {top1, top5, mean_class}, per_branch {name: {...}}, per_class {name: {videos, top1}} (fused; top1
    None for absent classes),
    confusion (K x K list, rows true, columns predicted, fused), predictions (per video), and
    localisation (SA/LA against the boxes) where the root has SynthActions ground truth.
    """
    protocol = protocol or Protocol()
    by_logits = protocol.name == "authors"
    dev = resolve_device(device)
    dataset = build_eval_dataset(ck, root, list_file, max_videos, protocol)
    model = ck.model.to(dev).eval()
    names = model.branch_names
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=workers, pin_memory=dev.type == "cuda"
    )
    map_names = [name.upper() for name in model.spec.maps]  # GLANet: SA, LA; SMNet: SE
    localise = bool(map_names) and has_ground_truth(root, dataset.records)
    stats = LocalisationStats(ck.preprocessing, names=map_names) if localise else None
    cache = GroundTruthCache(root) if localise else None
    fused, probs, videos, labels = [], [], [], []
    seen = 0
    for clips, y, v in loader:
        out = model(clips.to(dev, non_blocking=True))
        if by_logits:  # the authors' test: (GP + SA + LA) / 3 of the logits, per branch its logits
            fused.append(out.logits.float().mean(dim=1).cpu())
            probs.append(out.logits.float().cpu())
        else:
            fused.append(out.fused.float().cpu())
            probs.append(out.probs.float().cpu())
        videos.append(v)
        labels.append(y)
        if stats is not None and cache is not None:
            maps = {k: m.float().cpu() for k, m in out.maps.items()}  # one device sync per batch
            for b in range(clips.shape[0]):
                video, indices = dataset.items[seen + b]
                add_clip(stats, cache, dataset.records[video], indices, {k: m[b] for k, m in maps.items()})
        seen += clips.shape[0]
    video_index = torch.cat(videos).numpy()
    clip_labels = torch.cat(labels).numpy()
    k = len(ck.class_names)
    main = accuracy_summary(torch.cat(fused).double().numpy(), video_index, clip_labels, k, by_logits)
    branch_probs = torch.cat(probs).double().numpy()  # (N, S, K): probabilities, or logits (authors)
    per_branch = {}
    for s, name in enumerate(names):
        acc = accuracy_summary(branch_probs[:, s], video_index, clip_labels, k, by_logits)
        per_branch[name] = {m: acc[m] for m in METRICS}
    support = main["confusion"].sum(axis=1)
    result: dict[str, Any] = {
        "checkpoint": str(ck.path),
        "checkpoint_name": ck.path.name,
        "weights_sha256": ck.weights_sha256,
        "root": str(root),
        "list": str(list_file),
        "protocol": protocol.describe(dataset.sampling),
        "videos": dataset.num_videos,
        "clips": len(dataset),
        "class_names": list(ck.class_names),
        "branches": list(names),
        "fused": {m: main[m] for m in METRICS},
        "per_branch": per_branch,
        "per_class": {
            name: {"videos": int(support[c]), "top1": main["per_class"][c]}
            for c, name in enumerate(ck.class_names)
        },
        "confusion": main["confusion"].tolist(),
        "predictions": [
            {
                "path": r.path,
                "label": int(main["labels"][i]),
                "pred": int(main["pred"][i]),
                "confidence": float(main["confidence"][i]),
            }
            for i, r in enumerate(dataset.records)
        ],
    }
    if stats is not None:
        result["localisation"] = stats.report()
    log.info(
        "%s on %s (%s protocol): %d videos, %d clips, top-1 %.1f%%",
        ck.path.name,
        Path(list_file).name,
        protocol.name,
        dataset.num_videos,
        len(dataset),
        100 * main["top1"],
    )
    return result


def mean_over_runs(results: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The mean of each accuracy (fused, per branch) and localisation figure over several evaluations."""
    out: dict[str, Any] = {
        "runs": len(results),
        "fused": {m: float(np.mean([r["fused"][m] for r in results])) for m in METRICS},
    }
    branches = [s for s in results[0]["branches"] if all(s in r["per_branch"] for r in results)]
    out["per_branch"] = {
        s: {m: float(np.mean([r["per_branch"][s][m] for r in results])) for m in METRICS} for s in branches
    }
    if all(r.get("localisation", {}).get("frames") for r in results):
        out["localisation"] = {
            part: {key: float(np.mean([r["localisation"][part][key] for r in results])) for key in values}
            for part, values in results[0]["localisation"].items()
            if isinstance(values, dict)
        }
    return out


# -- pictures -------------------------------------------------------------------------------------

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_INK = (30, 30, 30)


def _text_width(text: str, scale: float) -> int:
    return cv2.getTextSize(text, _FONT, scale, 1)[0][0]


def _heat_colour(v: float) -> tuple[int, int, int]:
    """White (0) to dark blue (1), BGR."""
    lo, hi = np.array([255.0, 255.0, 255.0]), np.array([120.0, 45.0, 8.0])
    c = lo + (hi - lo) * float(np.clip(v, 0.0, 1.0))
    return int(c[0]), int(c[1]), int(c[2])


def confusion_image(
    confusion: np.ndarray | Sequence[Sequence[int]], class_names: Sequence[str], title: str = ""
) -> np.ndarray:
    """A K x K heat grid (BGR uint8): colour = share of the row, counts written where the cells are big."""
    cm = np.asarray(confusion, dtype=np.int64)
    k = cm.shape[0]
    cell = int(np.clip(1000 // max(k, 1), 10, 40))
    scale = float(np.clip(cell / 30.0, 0.3, 0.45))
    label_w = max(_text_width(n, scale) for n in class_names) + 8
    title_h, caption = 46, 18
    left, top = label_w + caption, title_h + label_w + caption
    width = max(left + k * cell + 12, _text_width(title, 0.5) + 20)
    img = np.full((top + k * cell + 12, width, 3), 255, np.uint8)
    rows = cm.sum(axis=1, keepdims=True)
    share = np.where(rows > 0, cm / np.maximum(rows, 1), 0.0)
    for i in range(k):
        for j in range(k):
            y, x = top + i * cell, left + j * cell
            v = float(share[i, j])
            cv2.rectangle(img, (x, y), (x + cell - 1, y + cell - 1), _heat_colour(v), -1)
            if cell >= 20 and cm[i, j]:
                text = str(cm[i, j])
                s = min(scale, 0.4)
                (tw, th), _ = cv2.getTextSize(text, _FONT, s, 1)
                ink = (255, 255, 255) if v > 0.5 else _INK
                cv2.putText(
                    img, text, (x + (cell - tw) // 2, y + (cell + th) // 2), _FONT, s, ink, 1, cv2.LINE_AA
                )
    grid = (200, 200, 200) if cell >= 16 else (235, 235, 235)  # faint where cells are small
    for i in range(k + 1):
        cv2.line(img, (left, top + i * cell), (left + k * cell, top + i * cell), grid, 1)
        cv2.line(img, (left + i * cell, top), (left + i * cell, top + k * cell), grid, 1)
    # Row labels right-aligned against the grid; column labels the same, drawn on a strip then turned.
    strip = np.full((k * cell, label_w, 3), 255, np.uint8)
    th = cv2.getTextSize("Ag", _FONT, scale, 1)[0][1]
    for i, name in enumerate(class_names):
        x = label_w - 4 - _text_width(name, scale)
        y = top + i * cell + (cell + th) // 2
        cv2.putText(img, name, (caption + x, y), _FONT, scale, _INK, 1, cv2.LINE_AA)
        cv2.putText(strip, name, (x, i * cell + (cell + th) // 2), _FONT, scale, _INK, 1, cv2.LINE_AA)
    img[title_h + caption : title_h + caption + label_w, left : left + k * cell] = cv2.rotate(
        strip, cv2.ROTATE_90_COUNTERCLOCKWISE
    )
    cv2.putText(img, title, (10, 22), _FONT, 0.5, _INK, 1, cv2.LINE_AA)
    cv2.putText(
        img, "colour: share of the row (true class)", (10, 40), _FONT, 0.4, (90, 90, 90), 1, cv2.LINE_AA
    )
    cv2.putText(img, "predicted", (left, title_h + 13), _FONT, 0.4, (90, 90, 90), 1, cv2.LINE_AA)
    vertical = np.full((caption, 60, 3), 255, np.uint8)
    cv2.putText(vertical, "true", (2, 13), _FONT, 0.4, (90, 90, 90), 1, cv2.LINE_AA)
    turned = cv2.rotate(vertical, cv2.ROTATE_90_COUNTERCLOCKWISE)  # (60, caption)
    h = min(60, img.shape[0] - top)
    img[top : top + h, 0:caption] = turned[60 - h :]
    return img


def overlay(frame_bgr: np.ndarray, att_map: np.ndarray | Tensor, alpha: float = 0.5) -> np.ndarray:
    """Blend the heat map of `att_map` over the frame: the same colouring as the live overlay."""
    m = att_map.detach().float().cpu().numpy() if isinstance(att_map, Tensor) else np.asarray(att_map)
    heat = heatmap(m, frame_bgr.shape[1], frame_bgr.shape[0])
    return cv2.addWeighted(frame_bgr, 1.0 - alpha, heat, alpha, 0.0)


MAP_TITLES = {"sa": "SA (statistic)", "la": "LA (learned)", "se": "SE (spatial excitation)"}
_BOX_INK = (0, 255, 0)


@dataclass(frozen=True)
class Example:
    frame: np.ndarray  # (H, W, 3) uint8 BGR at the crop size
    maps: dict[str, np.ndarray]  # the model's named attention maps, (h, w) each
    true: str
    pred: str
    confidence: float
    box: tuple[int, int, int, int] | None = None  # the actor's ground-truth box in crop pixels, if known


def attention_image(examples: Sequence[Example], tile: int = 192) -> np.ndarray:
    """Rows "frame | one overlay per attention map" with the true class, the clip's prediction and, where
    the data has one, the actor's ground-truth box drawn on every tile (the paper's Fig. 8)."""
    caption, header, gap = 24, 26, 4
    names = list(examples[0].maps) if examples else []
    columns = ["frame", *(MAP_TITLES.get(n, n.upper()) for n in names)]
    width = len(columns) * tile + (len(columns) + 1) * gap
    img = np.full((header + len(examples) * (caption + tile + gap), width, 3), 255, np.uint8)
    for c, name in enumerate(columns):
        x = gap + c * (tile + gap) + (tile - _text_width(name, 0.55)) // 2
        cv2.putText(img, name, (x, 19), _FONT, 0.55, _INK, 1, cv2.LINE_AA)
    for r, ex in enumerate(examples):
        y = header + r * (caption + tile + gap)
        ok = ex.true == ex.pred
        colour = (40, 140, 40) if ok else (30, 30, 200)
        text = f"true {ex.true}  pred {ex.pred} ({ex.confidence:.2f})"
        if ex.box is not None:
            text += "   green: actor box"
        cv2.putText(img, text, (gap, y + 17), _FONT, 0.5, colour, 1, cv2.LINE_AA)
        frame = cv2.resize(ex.frame, (tile, tile), interpolation=cv2.INTER_CUBIC)
        tiles = [frame, *(overlay(frame, ex.maps[n]) for n in names)]
        for c, t in enumerate(tiles):
            if ex.box is not None:
                scale = tile / ex.frame.shape[0]
                x0, y0, x1, y1 = (round(v * scale) for v in ex.box)
                t = t.copy()
                cv2.rectangle(t, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), _BOX_INK, 2, cv2.LINE_AA)
            x = gap + c * (tile + gap)
            img[y + caption : y + caption + tile, x : x + tile] = t
    return img


@torch.no_grad()
def collect_examples(
    ck: LoadedCheckpoint, dataset: FrameFolderDataset | VideoFileDataset, count: int, root: str = ""
) -> list[Example]:
    """The middle frame of the middle clip of `count` videos spread evenly over the dataset, with the
    actor's box when `root` holds SynthActions ground truth for these frame folders."""
    if count < 1:
        return []
    model = ck.model.eval()
    device = next(model.parameters()).device
    transform = EvalTransform.from_preprocessing(ck.preprocessing)
    truth = (
        GroundTruthCache(root)
        if isinstance(dataset, FrameFolderDataset) and has_ground_truth(root, dataset.records)
        else None
    )
    clips_of: dict[int, list[int]] = {}
    for i, (video, _) in enumerate(dataset.items):
        clips_of.setdefault(video, []).append(i)
    videos = sorted(
        {int(v) for v in np.linspace(0, dataset.num_videos - 1, min(count, dataset.num_videos)).round()}
    )
    examples = []
    for video in videos:
        items = clips_of[video]
        clip, label, _ = dataset[items[len(items) // 2]]
        out = model(clip[None].to(device))
        t = clip.shape[0] // 2
        pred = int(out.fused[0].argmax())
        box = None
        if truth is not None:
            boxes, height, width = truth.get(dataset.records[video])
            frame_index = int(dataset.items[items[len(items) // 2]][1][t])
            crop_box = box_to_crop(boxes[frame_index], height, width, ck.preprocessing)
            box = (
                None
                if crop_box[2] <= crop_box[0] or crop_box[3] <= crop_box[1]
                else tuple(map(int, crop_box))
            )
        examples.append(
            Example(
                transform.denormalise(clip[t]),
                {name: m[0, t].float().cpu().numpy() for name, m in out.maps.items()},
                ck.class_names[label],
                ck.class_names[pred],
                float(out.fused[0, pred]),
                box,
            )
        )
    return examples


def _write_png(file: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(file), image):
        raise OSError(f"cv2.imwrite could not write {file}")


def write_report(
    result: Mapping[str, Any],
    out_dir: str | os.PathLike[str],
    ck: LoadedCheckpoint,
    dataset: FrameFolderDataset,
    *,
    examples: int = 8,
) -> Path:
    """confusion.png, attention.png (with `examples` rows) and report.json (written last) in `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    title = (
        f"{result['checkpoint_name']}: {result['videos']} videos, top-1 {100 * result['fused']['top1']:.1f}%"
    )
    _write_png(out / "confusion.png", confusion_image(result["confusion"], result["class_names"], title))
    picked = collect_examples(ck, dataset, examples, str(result.get("root", "")))
    if picked:
        _write_png(
            out / "attention.png", attention_image(picked, tile=max(192, int(ck.preprocessing["crop"])))
        )
    report = out / "report.json"
    write_text_atomic(report, json.dumps(result, indent=1) + "\n")
    return report


# -- printing -------------------------------------------------------------------------------------


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def results_table(results: Sequence[Mapping[str, Any]], mean: Mapping[str, Any] | None = None) -> Table:
    branches = list(dict.fromkeys(s for r in results for s in r["branches"]))
    title = "video-level accuracy (%)"
    proto = results[0].get("protocol", {}) if results else {}
    if proto.get("name") == "authors":
        title += (
            f", authors' protocol: {proto['draws']} draws a video (seed {proto['seed']}), logits averaged"
        )
    table = Table(title=title)
    for col in (
        "checkpoint",
        "list",
        "videos",
        "clips",
        "top-1",
        "top-5",
        "mean class",
        *(f"{s} top-1" for s in branches),
    ):
        table.add_column(col, justify="left" if col in ("checkpoint", "list") else "right")
    for r in results:
        table.add_row(
            r["checkpoint_name"],
            Path(r["list"]).name,
            str(r["videos"]),
            str(r["clips"]),
            *(_pct(r["fused"][m]) for m in METRICS),
            *(_pct(r["per_branch"][s]["top1"]) if s in r["per_branch"] else "–" for s in branches),
        )
    if mean is not None:
        table.add_row(
            f"mean of {mean['runs']}",
            "",
            "",
            "",
            *(_pct(mean["fused"][m]) for m in METRICS),
            *(_pct(mean["per_branch"][s]["top1"]) if s in mean["per_branch"] else "–" for s in branches),
            style="bold",
        )
    return table


def localisation_table(name: str, loc: Mapping[str, Any]) -> Table:
    table = Table(title=f"attention localisation, {name} ({loc.get('frames', 0)} frames)")
    for col in ("map", "mass in box", "box share", "ratio (mean per frame)", "ratio of means", "pointing"):
        table.add_column(col, justify="left" if col == "map" else "right")
    for part, v in loc.items():  # the maps, then uniform
        if isinstance(v, dict) and "mass_in_box" in v:
            table.add_row(
                part,
                f"{100 * v['mass_in_box']:.1f}%",
                f"{100 * v['box_share']:.1f}%",
                f"{v['ratio_mean_per_frame']:.2f}x",
                f"{v['ratio_of_means']:.2f}x",
                f"{100 * v['pointing']:.1f}%" if "pointing" in v else "–",
            )
    if "centre_point" in loc:
        table.add_row("centre point", "", "", "", "", f"{100 * loc['centre_point']['pointing']:.1f}%")
    return table


# -- command line ---------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = Parser(
        prog="python -m glanet.evaluate",
        description="Evaluate GLANet checkpoints on frame-folder lists, video CSVs or class folders.",
    )
    p.add_argument(
        "--checkpoint", action="append", required=True, help="a checkpoint; repeat, paired with --list"
    )
    p.add_argument(
        "--list",
        action="append",
        required=True,
        help="what glanet.train reads: a `path nframes label` list of frame folders, a CSV of videos "
        "(path,label[,start,end]) or a folder <class>/<video>.mp4; one per --checkpoint",
    )
    p.add_argument(
        "--root",
        default="",
        help="frame folders are <root>/<path>/<i>.jpg (a list file needs it); a CSV's relative paths too",
    )
    p.add_argument("--out", required=True, help="report folder")
    p.add_argument("--batch-size", type=number(int, 1), default=8, help="clips per forward pass")
    p.add_argument("--workers", type=number(int, 0), default=2, help="DataLoader processes (0: in this one)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--examples", type=number(int, 0), default=8, help="rows of attention.png (0: none)")
    p.add_argument("--max-videos", type=number(int, 1), help="only the first N videos of each list")
    p.add_argument(
        "--protocol",
        choices=PROTOCOLS,
        default="default",
        help="default: the checkpoint's test clips, fused probabilities averaged; authors: the published "
        "code's test, random TSN draws per video with their logits averaged",
    )
    p.add_argument(
        "--draws", type=number(int, 1), help=f"--protocol authors: random draws per video (default: {DRAWS})"
    )
    p.add_argument("--seed", type=number(int, 0), help="--protocol authors: seed of the draws (default: 0)")
    args = p.parse_args(argv)
    if len(args.checkpoint) != len(args.list):
        p.error(f"{len(args.checkpoint)} --checkpoint but {len(args.list)} --list: give them in pairs")
    if args.protocol != "authors" and (args.draws is not None or args.seed is not None):
        p.error("--draws and --seed choose the authors' random draws: add --protocol authors")
    return args


def protocol_of(args: argparse.Namespace) -> Protocol:
    if args.protocol != "authors":
        return Protocol(args.protocol)
    return Protocol(
        "authors", DRAWS if args.draws is None else args.draws, 0 if args.seed is None else args.seed
    )


def check_out_folder(out: Path) -> None:
    """The report folder can be made and written: an OSError naming it, else nothing (a probe file is
    written and removed)."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"--out {out} is a file; the report needs a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise OSError(f"--out {out}: cannot write there ({e.strerror or e})") from None


def run(args: argparse.Namespace, console: Console | None = None) -> dict[str, Any]:
    """Evaluate each (checkpoint, list) pair, write the reports, print the tables; returns report.json."""
    if console is None:
        console = Console()
        if not console.is_terminal:  # a log file: no reason to squeeze the table into 80 columns
            console = Console(width=160)
    out = Path(args.out)
    check_out_folder(out)  # before minutes of evaluation, not after
    device = resolve_device(args.device)
    protocol = protocol_of(args)
    pairs = list(zip(args.checkpoint, args.list, strict=True))
    results = []
    for n, (ckpt, list_file) in enumerate(pairs, start=1):
        ck = load_checkpoint(ckpt, map_location=device)
        result = evaluate_checkpoint(
            ck,
            args.root,
            list_file,
            batch_size=args.batch_size,
            workers=args.workers,
            device=device,
            max_videos=args.max_videos,
            protocol=protocol,
        )
        folder = out if len(pairs) == 1 else out / f"{n}_{Path(ckpt).stem}"
        dataset = build_eval_dataset(ck, args.root, list_file, args.max_videos, protocol)
        log.info("wrote %s", write_report(result, folder, ck, dataset, examples=args.examples))
        figures = [folder / name for name in ("confusion.png", "attention.png") if (folder / name).is_file()]
        log.info("figures: %s", ", ".join(str(f) for f in figures))
        results.append(result)
    summary: dict[str, Any] = dict(results[0])
    mean = None
    if len(results) > 1:
        mean = mean_over_runs(results)
        summary = {"runs": results, "mean": mean}
        write_text_atomic(out / "report.json", json.dumps(summary, indent=1) + "\n")
        log.info("wrote %s", out / "report.json")
    console.print(results_table(results, mean))
    for r in results:
        if r.get("localisation", {}).get("frames"):
            console.print(localisation_table(r["checkpoint_name"], r["localisation"]))
    if mean is not None and "localisation" in mean:
        console.print(localisation_table(f"mean of {len(results)}", mean["localisation"]))
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    try:
        run(args)
    except (ValueError, OSError) as e:  # CheckpointError, ListError, FrameError, missing files, bad values
        print(f"glanet.evaluate: {error_line(e)}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
