"""glanet.localisation: box mapping through resize + centre crop, mass in box, pointing, a split's report."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest
import torch
from torch import nn

from glanet.config import DataConfig
from glanet.data.sampling import Sampling
from glanet.data.synth import write_dataset
from glanet.data.synth_render import CLASSES
from glanet.data.transforms import ClipTransform, preprocessing_dict
from glanet.localisation import (
    LocalisationStats,
    attention_mass_in_box,
    box_to_crop,
    eval_geometry,
    ground_truth_file,
    localisation_report,
    pointing_hit,
)
from glanet.models.config import ModelConfig
from glanet.models.glanet import GLANet

PRE = preprocessing_dict(DataConfig(resize=(48, 48), crop=40))
SHORT = preprocessing_dict(DataConfig(resize=(48,), crop=40))


def delta_map(i: int, j: int, size: int = 4) -> np.ndarray:
    m = np.zeros((size, size), np.float32)
    m[i, j] = 1.0
    return m


# -- geometry -------------------------------------------------------------------------------------


def test_geometry_square_resize() -> None:
    # 96 x 64 (h x w) -> 48 x 48, crop 40 at (4, 4)
    assert eval_geometry(96, 64, PRE) == (0.5, 0.75, 4, 4, 40)
    # x: 8 * 0.75 - 4 = 2, 40 * 0.75 - 4 = 26; y: 16 * 0.5 - 4 = 4, 80 * 0.5 - 4 = 36
    assert box_to_crop((8, 16, 40, 80), 96, 64, PRE).tolist() == [2, 4, 26, 36]


def test_geometry_short_side_landscape_and_portrait() -> None:
    # 60 x 80 landscape, short side 48 -> 48 x 64, crop 40 at top 4, left 12
    assert eval_geometry(60, 80, SHORT) == (0.8, 0.8, 4, 12, 40)
    assert box_to_crop((20, 10, 60, 50), 60, 80, SHORT).tolist() == [4, 4, 36, 36]
    assert box_to_crop((0, 0, 20, 20), 60, 80, SHORT).tolist() == [0, 0, 4, 12]  # clipped at the crop edge
    out = box_to_crop((0, 0, 10, 10), 60, 80, SHORT)  # x1 = 8 - 12 < 0: left of the crop
    assert out[2] <= out[0]
    # 80 x 60 portrait -> 64 x 48, crop at top 12, left 4
    assert eval_geometry(80, 60, SHORT) == (0.8, 0.8, 12, 4, 40)
    assert box_to_crop((10, 20, 50, 60), 80, 60, SHORT).tolist() == [4, 4, 36, 36]


def test_pixel_centre_rule_for_fractional_edges() -> None:
    # 30 x 30 -> 48 x 48 (scale 1.6), crop at 4: x 5 -> 4.0, 12 -> 15.2, 13 -> 16.8
    pre = preprocessing_dict(DataConfig(resize=(48, 48), crop=40))
    # a crop pixel is inside when its centre is: [4.0, 15.2) holds centres 4.5 .. 14.5; [.., 16.8) up to 16.5
    assert box_to_crop((5, 5, 12, 13), 30, 30, pre).tolist() == [4, 4, 15, 17]


@pytest.mark.parametrize("pre,shape", [(PRE, (96, 64)), (SHORT, (60, 80)), (SHORT, (80, 60))])
def test_box_lands_where_the_transform_puts_it(pre: dict, shape: tuple[int, int]) -> None:
    h, w = shape
    box = (w // 4, h // 3, w // 4 + 24, h // 3 + 30)
    frame = np.zeros((h, w, 3), np.uint8)
    frame[box[1] : box[3], box[0] : box[2]] = 255
    t = ClipTransform(False, tuple(pre["resize"]), pre["crop"], mean=(0, 0, 0), std=(1, 1, 1))
    out = t([frame])[0, 0].numpy()  # (crop, crop), 0..1
    ys, xs = np.nonzero(out > 0.5)
    seen = [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
    assert np.abs(np.array(seen) - box_to_crop(box, h, w, pre)).max() <= 1


# -- mass and pointing ----------------------------------------------------------------------------


def test_all_mass_in_one_cell() -> None:
    m = delta_map(1, 2)  # 4 x 4 map, crop 40: cells of 10 px; cell (1, 2) spans x 20..30, y 10..20
    # Bilinear up-sampling spreads a cell as a tent reaching the neighbouring cells' centres,
    # so the box reaching from those centres (x 15..35, y 5..25) holds everything ...
    mass, share = attention_mass_in_box(m, (15, 5, 35, 25), 40)
    assert mass == pytest.approx(1.0, abs=1e-6)
    assert share == pytest.approx(400 / 1600)
    # ... and the cell's own area the 1-D share of the tent, 0.75, squared (tent centre +- 4.5 px of 10)
    mass, _ = attention_mass_in_box(m, (20, 10, 30, 20), 40)
    assert mass == pytest.approx(0.75**2, abs=1e-5)
    assert attention_mass_in_box(m, (0, 30, 10, 40), 40)[0] == pytest.approx(0.0, abs=1e-9)


def test_uniform_map_mass_equals_share() -> None:
    uniform = np.full((7, 7), 1 / 49, np.float32)
    for box in ((0, 0, 40, 40), (3, 5, 20, 17), (10, 0, 11, 40)):
        mass, share = attention_mass_in_box(uniform, box, 40)
        assert mass == pytest.approx(share, abs=1e-6)
    assert attention_mass_in_box(uniform, (5, 5, 5, 9), 40) == (0.0, 0.0)  # an empty box


def test_pointing_hit_and_miss() -> None:
    m = torch.from_numpy(delta_map(1, 2))  # peak at the cell centre, pixels x 24-25, y 14-15
    assert pointing_hit(m, (20, 10, 30, 20), 40)
    assert not pointing_hit(m, (0, 0, 10, 10), 40)
    # the peak pixel centre (24.5, 14.5) is 3.5 px left of a box starting at x = 28
    assert not pointing_hit(m, (28, 10, 40, 20), 40, tolerance_px=3)
    assert pointing_hit(m, (28, 10, 40, 20), 40, tolerance_px=4)
    assert not pointing_hit(m, (20, 10, 20, 20), 40, tolerance_px=100)  # empty box: never a hit


def test_stats_report_with_uniform_maps_and_a_skipped_frame() -> None:
    stats = LocalisationStats(PRE, tolerance_px=0)
    uniform = {"SA": np.full((2, 2), 0.25), "LA": np.full((2, 2), 0.25)}
    stats.add_frame(uniform, (8, 16, 40, 80), 96, 64)  # crop box (2, 4, 26, 36): share 24 * 32 / 1600
    stats.add_frame(uniform, (0, 0, 8, 8), 96, 64)  # crop box (0, 0, 2, 0): empty, skipped
    stats.add_frame({"SA": delta_map(0, 0, 2), "LA": uniform["LA"]}, (8, 16, 40, 80), 96, 64)
    rep = stats.report()
    assert rep["frames"] == 2 and rep["skipped_frames"] == 1
    share = 24 * 32 / 1600
    assert rep["LA"]["box_share"] == pytest.approx(share)
    assert rep["LA"]["mass_in_box"] == pytest.approx(share, abs=1e-6)
    assert rep["LA"]["ratio_mean_per_frame"] == pytest.approx(1.0, abs=1e-5)
    assert rep["uniform"]["ratio_of_means"] == pytest.approx(1.0)
    assert rep["SA"]["mass_in_box"] > rep["LA"]["mass_in_box"]  # the top-left cell overlaps the box most
    assert 0.0 <= rep["SA"]["pointing"] <= 1.0 and "pointing" in rep["centre_point"]


def test_ground_truth_file_mapping(tmp_path: Path) -> None:
    assert (
        ground_truth_file(tmp_path, "val/walk/walk_000003")
        == tmp_path / "val_gt" / "walk" / "walk_000003.npz"
    )
    with pytest.raises(ValueError, match="not under split 'test'"):
        ground_truth_file(tmp_path, "val/walk/walk_000003", split="test")


# -- a whole split --------------------------------------------------------------------------------


class _Out(NamedTuple):
    maps: dict[str, torch.Tensor]


class UniformMaps(nn.Module):
    """Stands in for GLANet: uniform 5 x 5 attention maps for every frame."""

    def forward(self, clip: torch.Tensor) -> _Out:
        b, t = clip.shape[:2]
        m = torch.full((b, t, 5, 5), 1 / 25)
        return _Out({"sa": m, "la": m})


@pytest.fixture(scope="module")
def synth(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    write_dataset(root, videos_per_class=1, seed=5, split="val", num_frames=8, size=48, classes=CLASSES[:3])
    return root


def test_report_on_a_split(synth: Path) -> None:
    sampling = Sampling(window=4, stride=4)
    uniform = localisation_report(UniformMaps(), synth, "val", synth / "val.txt", PRE, sampling, "cpu")
    assert uniform["frames"] + uniform["skipped_frames"] == 3 * 2 * 4  # videos x clips x frames
    for name in ("SA", "LA"):
        assert uniform[name]["ratio_mean_per_frame"] == pytest.approx(1.0, abs=1e-5)
        assert uniform[name]["mass_in_box"] == pytest.approx(uniform["uniform"]["mass_in_box"], abs=1e-6)

    torch.manual_seed(0)
    model = GLANet(ModelConfig(backbone="resnet18", num_classes=len(CLASSES), sru_hidden=16))
    rep = localisation_report(
        model, synth, "val", synth / "val.txt", PRE, sampling.to_dict(), "cpu", max_videos=2
    )
    assert rep["frames"] + rep["skipped_frames"] == 2 * 2 * 4
    for name in ("SA", "LA"):
        v = rep[name]
        assert 0.0 <= v["mass_in_box"] <= 1.0 and 0.0 <= v["pointing"] <= 1.0
        assert v["box_share"] == pytest.approx(rep["uniform"]["box_share"])
        assert v["ratio_of_means"] == pytest.approx(v["mass_in_box"] / v["box_share"])
