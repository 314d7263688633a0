"""The web view in a real browser: Debian's Chromium, headless, driven by Playwright, on the page that
run_camera.py --serve makes for three cameras (the demo and two video files)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from web_helpers import get_json, serve, wait_for, write_demo_video

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TOKEN = "browser-test-token-42"
# the flags a closed network wants: no background connections, no update checks, no first-run dialogs
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]  # fmt: skip

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - the dev extra installs it
    sync_playwright = None

pytestmark = [
    pytest.mark.skipif(
        CHROMIUM is None, reason="chromium not installed (bash .ci/run installs it) — this test has NOT run"
    ),
    pytest.mark.skipif(
        sync_playwright is None,
        reason="playwright not installed (pip install -e '.[dev]') — this test has NOT run",
    ),
]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("web_browser")
    hall = write_demo_video(folder / "hall.mp4", 40, seed=3)
    yard = write_demo_video(folder / "yard.mp4", 40, seed=4)
    served = serve(
        "--source", "lobby=demo", "--source", f"hall={hall}", "--source", f"yard={yard}",
        "--events", str(folder / "events.jsonl"), "--duration", "600",
        env={"GLANET_TOKEN": TOKEN, "GLANET_CACHE_DIR": str(folder / "cache")},
    )  # fmt: skip
    served.folder = folder
    yield served
    assert served.stop() == 0, served.stderr
    assert "Traceback" not in served.stderr


@pytest.fixture(scope="module")
def page(server):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 820})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{server.url}?token={TOKEN}")
        page.errors = errors
        yield page
        browser.close()
    assert not errors, errors


def tile_picture(page, name: str) -> np.ndarray:
    png = page.locator(f'.tile[data-camera="{name}"] .frame').screenshot()
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)


def picture_loaded(page, name: str, timeout_ms: float = 30000) -> None:
    page.wait_for_function(
        "name => { const img = document.querySelector(`.tile[data-camera='${name}'] img`);"
        " return img && img.complete && img.naturalWidth > 0; }",
        arg=name,
        timeout=timeout_ms,
    )


def test_three_tiles_whose_pictures_move(page):
    page.wait_for_selector(".tile >> nth=2", timeout=30000)
    names = page.eval_on_selector_all(".tile", "tiles => tiles.map(t => t.dataset.camera)")
    assert names == ["lobby", "hall", "yard"]
    for name in names:
        picture_loaded(page, name)
    first = {name: tile_picture(page, name) for name in names}
    time.sleep(1.5)
    for name in names:
        later = tile_picture(page, name)
        change = np.abs(later.astype(np.int16) - first[name].astype(np.int16)).mean()
        assert change > 0.5, f"{name}: the tile did not change in 1.5 s (mean change {change:.2f})"
        status = page.locator(f'.tile[data-camera="{name}"] .status').inner_text()
        assert status == "live"


def js_number(value: float) -> str:
    """How JavaScript prints a JSON number (12.0 -> "12"), for the rows' keys."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def test_an_event_is_listed_within_2_s_of_its_line_in_the_events_file(page, server):
    path: Path = server.folder / "events.jsonl"
    seen = len(path.read_text().splitlines()) if path.exists() else 0

    def new_line():
        lines = path.read_text().splitlines() if path.exists() else []
        return lines[seen] if len(lines) > seen else None

    line = wait_for(new_line, 60, "a new event in the events file", interval=0.02)
    written = time.monotonic()
    event = json.loads(line)
    key = f"{event['camera']}|{js_number(event['start_ts'])}|{event['label']}"
    left_ms = max(1.0, 2000 - 1000 * (time.monotonic() - written))
    page.wait_for_function(
        "([key, kind]) => { const row = [...document.querySelectorAll('#events tbody tr')]"
        ".find(r => r.dataset.key === key);"
        " return row && (kind === 'start' || row.children[3].textContent !== 'ongoing'); }",
        arg=[key, event["event"]],
        timeout=left_ms,
    )
    assert time.monotonic() - written <= 2.0
    row = page.locator(f'#events tbody tr[data-key="{key}"]')
    assert row.locator("td").nth(0).inner_text() == event["camera"]
    assert row.locator("td").nth(1).inner_text() == event["label"]
    assert row.locator("td").nth(4).inner_text().endswith("%")


def test_the_attention_switch_of_a_tile(page):
    with page.expect_response(
        lambda r: "/cameras/lobby/snapshot.jpg?attention=la" in r.url and r.status == 200
    ):
        page.locator('.tile[data-camera="lobby"] button[data-mode="la"]').click()
    assert (
        page.locator('.tile[data-camera="lobby"] button[data-mode="la"]').get_attribute("aria-pressed")
        == "true"
    )
    assert (
        page.locator('.tile[data-camera="hall"] button[data-mode="sa"]').get_attribute("aria-pressed")
        == "true"
    )


def test_a_camera_added_and_removed_from_the_page(page, server):
    page.fill("#add input[name=name]", "porch")
    page.fill("#add input[name=source]", "demo")
    page.click("#add button[type=submit]")
    page.wait_for_selector('.tile[data-camera="porch"]', timeout=10000)
    picture_loaded(page, "porch")
    names = [c["name"] for c in get_json(server.url + "api/cameras", {"Authorization": f"Bearer {TOKEN}"})]
    assert names == ["lobby", "hall", "yard", "porch"]
    shot = os.environ.get("GLANET_WEB_SCREENSHOT")  # the README's picture: see the README's web view section
    time.sleep(1.0)
    page.screenshot(path=str(server.folder / "page.png"))
    if shot:
        page.screenshot(path=shot)
    # a bad source is told in the form, in one line
    page.fill("#add input[name=name]", "bad")
    page.fill("#add input[name=source]", "/etc/hostname")
    page.click("#add button[type=submit]")
    page.wait_for_function(
        "() => document.querySelector('#add-error').textContent.includes('--serve-allow-files')"
    )
    page.locator('.tile[data-camera="porch"] button.remove').click()
    page.wait_for_selector('.tile[data-camera="porch"]', state="detached", timeout=5000)
    assert page.locator(".tile").count() == 3
