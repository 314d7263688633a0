"""The window's strip under the picture: the keys and the heat map's colour scale, checked on the pixels of
the frame the window is given (no display needed: the window itself is replaced by one that keeps frames)."""

from __future__ import annotations

import numpy as np
import pytest
from fake_prediction import fake_prediction

from stream.output import Output, View
from stream.sinks import window
from stream.sinks.window import MosaicWindow, legend_text, with_legend
from stream.types import SourceStatus, StatsSnapshot, StatusUpdate

BG = np.array([28, 28, 28])  # the strip's background (BGR)


def picture(h: int = 448, w: int = 681) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def jet_low(px: np.ndarray) -> np.ndarray:
    """JET's low end: dark to full blue, no green or red (BGR)."""
    return (px[..., 0] > 120) & (px[..., 1] < 40) & (px[..., 2] < 40)


def jet_high(px: np.ndarray) -> np.ndarray:
    return (px[..., 2] > 120) & (px[..., 1] < 40) & (px[..., 0] < 40)


def test_the_strip_goes_under_the_picture_and_leaves_it_as_it_was() -> None:
    image = picture()
    out = with_legend(image, View(("sa", "la"), "sa"))
    assert out.shape[1:] == image.shape[1:] and out.shape[0] > image.shape[0]
    np.testing.assert_array_equal(out[: image.shape[0]], image)


def test_the_colour_bar_runs_from_low_blue_on_the_left_to_high_red_on_the_right() -> None:
    image = picture()
    strip = with_legend(image, View(("sa", "la"), "sa"))[image.shape[0] :].astype(int)
    low_x = np.nonzero(jet_low(strip).any(axis=0))[0]
    high_x = np.nonzero(jet_high(strip).any(axis=0))[0]
    assert low_x.size and high_x.size, "no colour bar in the strip"
    assert low_x.max() < high_x.min()  # blue (low) left of red (high)
    assert low_x.min() > image.shape[1] / 2  # on the right, away from the keys
    # cyan and yellow between: the whole scale, not two blocks of colour
    middle = strip[:, low_x.max() : high_x.min()]
    cyan = (middle[..., 0] > 150) & (middle[..., 1] > 150) & (middle[..., 2] < 120)
    yellow = (middle[..., 2] > 150) & (middle[..., 1] > 150) & (middle[..., 0] < 120)
    assert cyan.any() and yellow.any()


def test_the_keys_are_written_on_the_left() -> None:
    image = picture()
    strip = with_legend(image, View(("sa", "la"), "sa"))[image.shape[0] :].astype(int)
    text = np.abs(strip - BG).sum(axis=2) > 150  # light text on the dark strip
    columns = np.nonzero(text.any(axis=0))[0]
    assert columns.size and columns.min() < 20  # starts at the left edge
    assert text[:, : image.shape[1] // 3].sum() > 200  # a line of words, not a dot


def test_with_the_heat_map_off_there_is_no_colour_bar() -> None:
    image = picture()
    strip = with_legend(image, View(("sa", "la"), "none"))[image.shape[0] :].astype(int)
    assert not jet_low(strip).any() and not jet_high(strip).any()


def test_the_legend_names_each_key_and_what_space_does_now() -> None:
    view = View(("sa", "la"), "sa")
    assert legend_text(view) == "q: quit   space: pause   a: next heat map"
    view.toggle_pause()
    assert "space: resume" in legend_text(view)


class KeptFrames:
    """Stands for WindowSink: keeps what it is shown, presses no key."""

    def __init__(self, title: str) -> None:
        self.shown: list[np.ndarray] = []

    def show(self, image: np.ndarray) -> set[str]:
        self.shown.append(image)
        return set()

    def close(self) -> None:
        pass


@pytest.mark.parametrize("cameras", [["demo"], ["front", "back"]])
def test_the_window_shows_the_overlay_with_the_strip(monkeypatch, cameras: list[str]) -> None:
    monkeypatch.setattr(window, "WindowSink", KeptFrames)
    view = View(("sa", "la"), "sa")
    mosaic_window = MosaicWindow("glanet", cameras, view, on_quit=lambda: None)
    image = np.full((224, 224, 3), 90, np.uint8)
    sa = np.zeros((7, 7), np.float32)
    sa[3, 3] = 1.0
    probs = np.array([0.7, 0.2, 0.1], np.float32)
    prediction = fake_prediction(
        probs, ("a", "b", "c"), image=image, sa_map=sa, la_map=sa, box=(0.0, 0.0, 224.0, 224.0)
    )
    stats = StatsSnapshot(status=SourceStatus.LIVE)
    for name in cameras:
        out = Output(name, prediction.frame, prediction, True, StatusUpdate(SourceStatus.LIVE), stats)
        mosaic_window.write(out)
    shown = mosaic_window.window.shown[-1]  # type: ignore[attr-defined]
    tile = out.overlay(view)
    grid = tile if len(cameras) == 1 else window.mosaic([tile] * len(cameras), len(cameras))
    np.testing.assert_array_equal(shown, with_legend(grid, view))
    strip = shown[grid.shape[0] :].astype(int)
    assert jet_low(strip).any() and jet_high(strip).any()
