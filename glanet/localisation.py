"""How well the SA and LA attention maps point at the actor: SynthActions boxes against the maps.

Per frame, the (h, w) attention map is up-sampled bilinearly to the crop the model saw and compared
with the actor's ground-truth box mapped through the same eval transform (resize, centre crop):
the attention mass inside the box against the box's share of the crop (a uniform map scores
mass = share, ratio 1), and the pointing game of Zhang et al. (ECCV 2016): does the map's maximum
fall inside the box, give or take a few pixels.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np
import torch

from glanet.data.datasets import build_eval_dataset_from
from glanet.data.lists import VideoRecord, read_list
from glanet.data.sampling import Sampling
from glanet.data.synth import load_ground_truth
from glanet.data.transforms import center_crop_box, resized_size

log = logging.getLogger(__name__)

ATTENTION_MAPS = ("SA", "LA")
# Zhang et al. count a hit within 15 px of the object at 224 px; scaled to the crop used.
POINTING_TOLERANCE_AT_224 = 15.0


# -- geometry -------------------------------------------------------------------------------------


def eval_geometry(
    height: int, width: int, preprocessing: Mapping[str, Any]
) -> tuple[float, float, int, int, int]:
    """(scale_y, scale_x, top, left, crop): the eval transform of a height x width frame.

    A point (x, y) of the frame (continuous pixel coordinates, edges at integers) lands at
    (x * scale_x - left, y * scale_y - top) in the crop, as cv2.resize and the centre crop place it.
    """
    crop = int(preprocessing["crop"])
    rh, rw = resized_size(height, width, preprocessing["resize"])
    top, left = center_crop_box(rh, rw, crop)
    return rh / height, rw / width, top, left, crop


def box_to_crop(
    box: Sequence[float] | np.ndarray, height: int, width: int, preprocessing: Mapping[str, Any]
) -> np.ndarray:
    """A frame box (x0, y0, x1, y1), x1/y1 exclusive, as int (x0, y0, x1, y1) in crop pixels.

    A crop pixel belongs to the box when its centre lies inside the mapped box. The result is
    clipped to the crop, so it is empty (x1 <= x0 or y1 <= y0) when the box falls outside it.
    """
    sy, sx, top, left, crop = eval_geometry(height, width, preprocessing)
    x0, y0, x1, y1 = (float(v) for v in box)
    mapped = np.array([x0 * sx - left, y0 * sy - top, x1 * sx - left, y1 * sy - top])
    # pixel j is inside [lo, hi) when lo <= j + 0.5 < hi, i.e. ceil(lo - 0.5) <= j < ceil(hi - 0.5)
    edges = np.ceil(mapped - 0.5 - 1e-9).astype(np.int64)
    return np.clip(edges, 0, crop)


def _is_empty(box: np.ndarray) -> bool:
    return bool(box[2] <= box[0] or box[3] <= box[1])


def upsample_map(att_map: np.ndarray | torch.Tensor, crop: int) -> np.ndarray:
    """(h, w) map -> (crop, crop) float64, bilinear (cv2 INTER_LINEAR), summing to 1."""
    m = att_map.detach().float().cpu().numpy() if isinstance(att_map, torch.Tensor) else att_map
    m = np.asarray(m, dtype=np.float32)
    if m.ndim != 2:
        raise ValueError(f"attention map {m.shape} must be (h, w)")
    up = np.clip(cv2.resize(m, (crop, crop), interpolation=cv2.INTER_LINEAR), 0.0, None).astype(np.float64)
    total = up.sum()
    if not total > 0:
        return np.full((crop, crop), 1.0 / crop**2)  # an all-zero map says nothing: treat as uniform
    return up / total


# -- per-frame measures ---------------------------------------------------------------------------


def attention_mass_in_box(
    att_map: np.ndarray | torch.Tensor, box_crop: Sequence[int] | np.ndarray, crop: int
) -> tuple[float, float]:
    """(mass, area_share): the up-sampled map's mass inside the crop box, and the box's share of the crop."""
    x0, y0, x1, y1 = (int(v) for v in box_crop)
    if x1 <= x0 or y1 <= y0:
        return 0.0, 0.0
    up = upsample_map(att_map, crop)
    return float(up[y0:y1, x0:x1].sum()), (x1 - x0) * (y1 - y0) / crop**2


def default_tolerance(crop: int) -> float:
    return POINTING_TOLERANCE_AT_224 * crop / 224.0


def _point_hits(px: float, py: float, box: np.ndarray, tolerance: float) -> bool:
    """Does the point lie within `tolerance` px (Euclidean) of the box [x0, x1) x [y0, y1)?"""
    dx = max(box[0] - px, 0.0, px - box[2])
    dy = max(box[1] - py, 0.0, py - box[3])
    return math.hypot(dx, dy) <= tolerance


def map_peak(att_map: np.ndarray | torch.Tensor, crop: int) -> tuple[float, float]:
    """(x, y) of the centre of the up-sampled map's maximum pixel (the first one on a tie)."""
    up = upsample_map(att_map, crop)
    i, j = np.unravel_index(int(np.argmax(up)), up.shape)
    return j + 0.5, i + 0.5


def pointing_hit(
    att_map: np.ndarray | torch.Tensor,
    box_crop: Sequence[int] | np.ndarray,
    crop: int,
    tolerance_px: float | None = None,
) -> bool:
    """The pointing game: the up-sampled map's arg-max lies in the box or within `tolerance_px` of it.

    The default tolerance is Zhang et al.'s 15 px at 224 px, scaled to the crop (about 3 px at 40).
    """
    box = np.asarray(box_crop, dtype=np.float64)
    if _is_empty(box):
        return False
    tol = default_tolerance(crop) if tolerance_px is None else float(tolerance_px)
    return _point_hits(*map_peak(att_map, crop), box, tol)


# -- accumulating over frames ---------------------------------------------------------------------


class LocalisationStats:
    """Per-frame measures for each attention branch, and the report of their means.

    Frames whose box is empty in the crop (the actor hidden or cropped away) are counted as skipped.
    Baselines ride along on the same frames: a uniform map (mass = share) and a point at the crop's centre.
    """

    def __init__(
        self,
        preprocessing: Mapping[str, Any],
        tolerance_px: float | None = None,
        names: Sequence[str] = ATTENTION_MAPS,
    ) -> None:
        self.names = tuple(names)  # the maps scored: GLANet's SA and LA, SMNet's SE
        self.preprocessing = dict(preprocessing)
        self.crop = int(preprocessing["crop"])
        self.tolerance = default_tolerance(self.crop) if tolerance_px is None else float(tolerance_px)
        self.mass: dict[str, list[float]] = {name: [] for name in self.names}
        self.hits: dict[str, list[bool]] = {name: [] for name in self.names}
        self.shares: list[float] = []
        self.centre_hits: list[bool] = []
        self.skipped = 0

    def add_frame(
        self,
        maps: Mapping[str, np.ndarray | torch.Tensor],
        box: Sequence[int] | np.ndarray,
        height: int,
        width: int,
    ) -> None:
        """One frame: `maps` {"SA": (h, w), "LA": (h, w)}; `box` (x0, y0, x1, y1) in original frame pixels."""
        crop_box = box_to_crop(box, height, width, self.preprocessing)
        if _is_empty(crop_box):
            self.skipped += 1
            return
        x0, y0, x1, y1 = (int(v) for v in crop_box)
        box = crop_box.astype(np.float64)
        for name in self.names:
            up = upsample_map(maps[name], self.crop)
            self.mass[name].append(float(up[y0:y1, x0:x1].sum()))
            i, j = np.unravel_index(int(np.argmax(up)), up.shape)
            self.hits[name].append(_point_hits(j + 0.5, i + 0.5, box, self.tolerance))
        self.shares.append((x1 - x0) * (y1 - y0) / self.crop**2)
        c = self.crop / 2.0
        self.centre_hits.append(_point_hits(c, c, box, self.tolerance))

    @property
    def frames(self) -> int:
        return len(self.shares)

    def _summary(self, mass: np.ndarray, hits: np.ndarray, share: np.ndarray) -> dict[str, float]:
        return {
            "mass_in_box": float(mass.mean()),
            "box_share": float(share.mean()),
            "ratio_mean_per_frame": float((mass / share).mean()),  # mean over frames of mass/share
            "ratio_of_means": float(mass.mean() / share.mean()),  # mean mass / mean share
            "pointing": float(hits.mean()),
        }

    def report(self) -> dict[str, Any]:
        """{"SA": {...}, "LA": {...}, "uniform": {...}, "centre_point": {...}, "frames", "skipped_frames"}."""
        out: dict[str, Any] = {
            "frames": self.frames,
            "skipped_frames": self.skipped,
            "crop": self.crop,
            "pointing_tolerance_px": self.tolerance,
        }
        if not self.frames:
            return out
        share = np.asarray(self.shares)
        for name in self.names:
            out[name] = self._summary(np.asarray(self.mass[name]), np.asarray(self.hits[name]), share)
        # A uniform map: mass = share in every frame; it points nowhere, so the centre point stands in.
        out["uniform"] = self._summary(share, np.asarray(self.centre_hits), share)
        out["uniform"].pop("pointing")
        out["centre_point"] = {"pointing": float(np.mean(self.centre_hits))}
        return out


# -- ground truth ---------------------------------------------------------------------------------


def ground_truth_file(root: str | os.PathLike[str], record_path: str, split: str | None = None) -> Path:
    """`<root>/<split>/<class>/<name>` (a list path) -> `<root>/<split>_gt/<class>/<name>.npz`."""
    parts = PurePosixPath(record_path).parts
    if len(parts) < 2:
        raise ValueError(f"list path {record_path!r} is not <split>/<class>/<name> (SynthActions layout)")
    if split is not None and parts[0] != split:
        raise ValueError(f"list path {record_path!r} is not under split {split!r}")
    *folders, name = parts[1:]
    return Path(root, f"{parts[0]}_gt", *folders, f"{name}.npz")


def has_ground_truth(root: str | os.PathLike[str], records: Sequence[VideoRecord]) -> bool:
    """True when the first video of the list has a SynthActions ground-truth file."""
    if not records:
        return False
    try:
        return ground_truth_file(root, records[0].path).is_file()
    except ValueError:
        return False


class GroundTruthCache:
    """Boxes and frame size of the last video asked for (a dataset's clips come video by video)."""

    def __init__(self, root: str | os.PathLike[str], split: str | None = None) -> None:
        self.root, self.split = Path(root), split
        self._key: str | None = None
        self._value: tuple[np.ndarray, int, int] = (np.zeros((0, 4), np.int32), 0, 0)

    def get(self, record: VideoRecord) -> tuple[np.ndarray, int, int]:
        """(boxes (T, 4), height, width) of `record`'s video."""
        if record.path != self._key:
            file = ground_truth_file(self.root, record.path, self.split)
            if not file.is_file():
                raise FileNotFoundError(f"{file}: ground truth missing for {record.path}")
            boxes, masks = load_ground_truth(file)
            if len(boxes) < record.num_frames:
                raise ValueError(
                    f"{file}: ground truth has {len(boxes)} frames, the list says {record.num_frames}"
                )
            self._key, self._value = record.path, (boxes, int(masks.shape[1]), int(masks.shape[2]))
        return self._value


def add_clip(
    stats: LocalisationStats,
    cache: GroundTruthCache,
    record: VideoRecord,
    indices: np.ndarray,
    maps: Mapping[str, torch.Tensor],
) -> None:
    """Add every frame of one clip: `indices` (T,) frame numbers, `maps` {"sa": (T, h, w), ...} as the
    model names them (scored as "SA", ...)."""
    boxes, height, width = cache.get(record)
    arrays = {name.upper(): m.float().cpu().numpy() for name, m in maps.items()}
    for t, frame in enumerate(np.asarray(indices).tolist()):
        stats.add_frame({name: a[t] for name, a in arrays.items()}, boxes[frame], height, width)


# -- a whole split --------------------------------------------------------------------------------


@torch.no_grad()
def localisation_report(
    model: torch.nn.Module,
    dataset_root: str | os.PathLike[str],
    split: str,
    list_file: str | os.PathLike[str],
    preprocessing: Mapping[str, Any],
    sampling: Sampling | Mapping[str, Any],
    device: torch.device | str,
    max_videos: int | None = None,
    *,
    batch_size: int = 8,
    tolerance_px: float | None = None,
) -> dict[str, Any]:
    """Run `model` on every test clip of a SynthActions split and score its SA/LA maps per frame.

    Returns LocalisationStats.report(): {"SA": {mass_in_box, box_share, ratio_mean_per_frame,
    ratio_of_means, pointing}, "LA": {...}, "uniform": {...}, "centre_point": {...}, "frames", ...}.
    """
    records = read_list(list_file)
    dataset = build_eval_dataset_from(dataset_root, records, preprocessing, sampling, max_videos)
    stats = LocalisationStats(preprocessing, tolerance_px)
    cache = GroundTruthCache(dataset_root, split)
    model = model.to(device).eval()
    for start in range(0, len(dataset), batch_size):
        idx = range(start, min(start + batch_size, len(dataset)))
        clips = torch.stack([dataset[i][0] for i in idx]).to(device)
        out = model(clips)
        for b, i in enumerate(idx):
            video, indices = dataset.items[i]
            add_clip(stats, cache, dataset.records[video], indices, {k: m[b] for k, m in out.maps.items()})
    report = stats.report()
    log.info("localisation on %s: %d frames (%d skipped)", split, stats.frames, stats.skipped)
    return report
