"""Overlay drawing: heat map placement, blending confined to the crop box, output sizes, the text panel."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from fake_prediction import fake_prediction

from stream.overlay import blend_attention, draw_overlay, heatmap, overlay_size
from stream.types import Prediction, SourceStatus, StatsSnapshot, StatusUpdate

CLASSES = tuple(f"action_{i:02d}" for i in range(12))
JET = cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_JET)[:, 0]  # (256, 3)


def one_hot_map(row: int = 0, col: int = 2) -> np.ndarray:
    m = np.zeros((3, 3), np.float32)
    m[row, col] = 1.0
    return m


def make_prediction(
    *,
    top: int = 0,
    history: int = 30,
    window: int = 30,
    width: int = 128,
    height: int = 128,
    box: tuple[float, float, float, float] | None = None,
    sa_map: np.ndarray | None = None,
) -> Prediction:
    """K=12 classes, streams GS/GL/GP, 3×3 attention maps, a gray frame; class `top` is the top-1."""
    probs = np.full(12, 0.02, np.float32)
    probs[top], probs[(top + 1) % 12] = 0.6, 0.2
    probs /= probs.sum()
    image = np.full((height, width, 3), 120, np.uint8)
    side = min(width, height)
    if box is None:
        x0, y0 = (width - side) / 2, (height - side) / 2
        box = (x0, y0, x0 + side, y0 + side)
    sa = one_hot_map() if sa_map is None else sa_map
    return fake_prediction(
        probs, CLASSES, image=image, sa_map=sa, la_map=sa.T.copy(), box=box, history=history, window=window
    )


def gray_levels(bgr: np.ndarray) -> np.ndarray:
    """Invert the JET colour map: the 0..255 level of each pixel (nearest colour in the map)."""
    d = ((bgr.reshape(-1, 1, 3).astype(np.int32) - JET[None].astype(np.int32)) ** 2).sum(-1)
    return d.argmin(1).reshape(bgr.shape[:2])


# --- heatmap -------------------------------------------------------------------------------------------


def test_heatmap_peak_of_a_one_hot_map_lands_in_its_cell():
    heat = heatmap(one_hot_map(0, 2), 90, 60)
    assert heat.shape == (60, 90, 3) and heat.dtype == np.uint8
    level = gray_levels(heat)
    # bilinear up-sampling: the whole top-right cell beyond its centre is at the peak, the far side at 0
    assert (level[:10, 75:] == 255).all()
    assert (level[20:, :45] == 0).all()
    ys, xs = np.nonzero(level == level.max())
    assert ys.max() < 20 and xs.min() >= 60  # every peak pixel is in the top-right cell
    # the colour falls off away from the peak, along the top row and down the right column
    assert (np.diff(level[0, ::-1]) <= 0).all() and (np.diff(level[:, -1]) <= 0).all()


def test_heatmap_is_min_max_normalised():
    a = one_hot_map(1, 1)
    np.testing.assert_array_equal(heatmap(a, 30, 30), heatmap(a * 0.001 + 5.0, 30, 30))


@pytest.mark.parametrize("value", [0.0, 1.0 / 9.0])
def test_heatmap_of_a_constant_map_is_uniform_without_dividing_by_zero(value):
    with np.errstate(all="raise"):
        heat = heatmap(np.full((3, 3), value), 20, 10)
    assert (heat == JET[0]).all()


def test_heatmap_rejects_a_map_that_is_not_2d():
    with pytest.raises(ValueError, match="2-D"):
        heatmap(np.zeros((1, 3, 3)), 10, 10)


# --- blend_attention -----------------------------------------------------------------------------------


def test_blend_changes_only_the_box_and_not_the_input():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (100, 160, 3), dtype=np.uint8)
    before = image.copy()
    out = blend_attention(image, one_hot_map(), (40.0, 20.0, 100.0, 80.0))
    np.testing.assert_array_equal(image, before)
    inside = np.zeros(image.shape[:2], bool)
    inside[20:80, 40:100] = True
    np.testing.assert_array_equal(out[~inside], image[~inside])
    assert (out[inside] != image[inside]).any(axis=-1).mean() > 0.9


def test_blend_puts_the_peak_at_the_top_right_of_the_box():
    image = np.full((100, 160, 3), 120, np.uint8)
    out = blend_attention(image, one_hot_map(0, 2), (40, 20, 100, 80)).astype(int)
    redness = out[..., 2] - out[..., 0]  # JET: high = red, low = blue
    top_right, bottom_left = redness[20:40, 80:100].mean(), redness[60:80, 40:60].mean()
    assert top_right > 40 > -40 > bottom_left


def test_blend_clips_the_box_to_the_image():
    image = np.full((50, 50, 3), 120, np.uint8)
    out = blend_attention(image, one_hot_map(0, 2), (-50, -10, 30, 70))
    assert out.shape == image.shape
    np.testing.assert_array_equal(out[:, 30:], image[:, 30:])
    # the map spans the whole box, not just its visible part: the same as blending on a larger image
    big = np.full((100, 100, 3), 120, np.uint8)
    big_out = blend_attention(big, one_hot_map(0, 2), (0, 0, 80, 80))
    np.testing.assert_array_equal(out, big_out[10:60, 50:100])
    np.testing.assert_array_equal(blend_attention(image, one_hot_map(), (60, 60, 90, 90)), image)


# --- draw_overlay ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size", [(96, 96), (128, 128), (320, 240), (640, 360), (640, 480), (1280, 720), (1920, 1080), (90, 300)]
)
def test_output_size_is_overlay_size(size):
    w, h = size
    prediction = make_prediction(width=w, height=h, history=3)
    stats = StatsSnapshot(fps={"capture": 30.0, "model": 15.0}, latency_p50_ms=40.0, latency_p95_ms=70.0)
    status = StatusUpdate(SourceStatus.RECONNECTING, "lost", attempt=3, retry_in_s=2.0)
    for pred, attention in ((prediction, "sa"), (prediction, "la"), (prediction, "none"), (None, "sa")):
        out = draw_overlay(prediction.frame.image, pred, attention=attention, stats=stats, status=status)
        assert out.dtype == np.uint8 and (out.shape[1], out.shape[0]) == overlay_size(w, h)
    ow, oh = overlay_size(w, h)
    assert ow >= w and oh >= max(h, 360)


def test_wide_frames_keep_their_size_and_narrow_ones_get_a_side_panel():
    assert overlay_size(1920, 1080) == (1920, 1080)
    assert overlay_size(1280, 720) == (1280, 720)
    w, h = overlay_size(640, 480)
    assert h == 480 and w > 640
    w, h = overlay_size(96, 96)
    assert h >= 360 and w > h  # enlarged, with a panel beside it


def test_overlay_does_not_modify_the_input():
    prediction = make_prediction(width=640, height=480)
    image = prediction.frame.image.copy()
    draw_overlay(prediction.frame.image, prediction, stats=StatsSnapshot(), paused=True)
    np.testing.assert_array_equal(prediction.frame.image, image)


def test_panel_text_depends_on_the_top_class():
    a, b = make_prediction(width=640, height=480, top=0), make_prediction(width=640, height=480, top=5)
    out_a = draw_overlay(a.frame.image, a, attention="none")
    out_b = draw_overlay(b.frame.image, b, attention="none")
    differs = (out_a != out_b).any(axis=-1)
    assert differs.any()
    assert not differs[:, :640].any()  # 640×480 gets a side panel: only the panel changed


def test_warming_up_no_prediction_and_paused_are_drawn():
    warm = make_prediction(width=640, height=480, history=30)
    cold = make_prediction(width=640, height=480, history=12)
    image = warm.frame.image
    out_warm = draw_overlay(image, warm, attention="none")
    assert (out_warm != draw_overlay(image, cold, attention="none")).any()
    assert (out_warm != draw_overlay(image, None)).any()
    paused = draw_overlay(image, warm, attention="none", paused=True)
    changed = (paused != out_warm).any(axis=-1)
    assert changed[200:280, 200:440].any() and not changed[:, 640:].any()  # centred on the frame


def test_banner_only_when_the_source_is_not_live():
    prediction = make_prediction(width=640, height=480)
    image = prediction.frame.image
    plain = draw_overlay(image, prediction, attention="none")
    live = draw_overlay(image, prediction, attention="none", status=StatusUpdate(SourceStatus.LIVE))
    np.testing.assert_array_equal(plain, live)
    status = StatusUpdate(SourceStatus.RECONNECTING, "connection lost", attempt=3, retry_in_s=2.0)
    banner = draw_overlay(image, prediction, attention="none", status=status)
    changed = (banner != plain).any(axis=-1)
    assert changed[420:, :640].any() and not changed[:300].any()  # at the bottom of the frame
    # without a StatusUpdate, the status in the stats is used
    stats = StatsSnapshot(status=SourceStatus.ENDED)
    with_stats = draw_overlay(image, prediction, attention="none", stats=stats)
    assert (with_stats[420:, :640] != plain[420:, :640]).any()


def test_attention_is_blended_over_the_crop_box_scaled_to_the_image():
    # the model saw the top-left quarter of a 640×480 frame; the display shows it at 1280×960
    prediction = make_prediction(width=640, height=480, box=(0.0, 0.0, 320.0, 240.0))
    shown = np.full((960, 1280, 3), 120, np.uint8)
    out = draw_overlay(shown, prediction, attention="sa")
    assert (out[100:600, 700:1200] == 120).all()  # outside the (scaled) box: untouched
    redness = out[..., 2].astype(int) - out[..., 0]
    assert redness[20:150, 500:620].mean() > 40  # the top-right of the box is the hot part
    assert redness[350:460, 20:150].mean() < -40
    none = draw_overlay(shown, prediction, attention="none")
    assert (none[300:400, 200:400] == 120).all()


def test_bad_arguments_name_the_value():
    prediction = make_prediction()
    with pytest.raises(ValueError, match="'xa'"):
        draw_overlay(prediction.frame.image, prediction, attention="xa")
    with pytest.raises(ValueError, match="uint8"):
        draw_overlay(np.zeros((10, 10), np.uint8), prediction)
