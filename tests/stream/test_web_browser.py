"""The web view in a real browser: Debian's Chromium, headless, driven by Playwright, on the page that
run_camera.py --serve makes for five cameras: the demo, two video files, a network camera that goes away
(reconnecting) and one that was never there (failed)."""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from web_helpers import MjpegCamera, get_json, serve, wait_for, write_demo_video

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
TOKEN = "browser-test-token-42"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NAMES = ["lobby", "hall", "yard", "gate", "door"]
PAGE = 10  # events on a page of the panel (app.js)
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
    gate = MjpegCamera()
    served = serve(
        "--source", "lobby=demo", "--source", f"hall={hall}", "--source", f"yard={yard}",
        "--source", f"gate={gate.url}", "--source", "door=rtsp://127.0.0.1:9/cam",  # nothing listens on 9
        "--events", str(folder / "events.jsonl"), "--duration", "600",
        env={"GLANET_TOKEN": TOKEN, "GLANET_CACHE_DIR": str(folder / "cache")},
    )  # fmt: skip
    served.folder = folder
    served.gate = gate
    yield served
    gate.stop()
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
    page.wait_for_selector(".tile >> nth=4", timeout=30000)
    names = page.eval_on_selector_all(".tile", "tiles => tiles.map(t => t.dataset.camera)")
    assert names == NAMES
    names = names[:3]
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
    key = f"{event['camera']}|{js_number(event['start_ts'])}|{event['label']}|{event['event']}"
    left_ms = max(1.0, 2000 - 1000 * (time.monotonic() - written))
    page.wait_for_function(
        "key => [...document.querySelectorAll('#events li')].some(r => r.dataset.key === key)",
        arg=key,
        timeout=left_ms,
    )
    assert time.monotonic() - written <= 2.0
    row = page.locator(f'#events li[data-key="{key}"]')
    assert row.get_attribute("data-camera") == event["camera"]
    assert row.locator(".label").inner_text() == event["label"]
    assert row.locator(".peak").inner_text().endswith("%")


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
    names = [c["name"] for c in get_json(server.url + "api/cameras", AUTH)]
    assert names == [*NAMES, "porch"]
    shot = os.environ.get("GLANET_WEB_SCREENSHOT")  # docs/web.md's picture (see its "Tested")
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
    assert page.locator(".tile").count() == len(NAMES)


# -- a camera that is not live says why, over its picture or in place of it --------------------------------
def notice(page, name: str) -> dict[str, str]:
    return page.eval_on_selector(
        f'.tile[data-camera="{name}"]',
        "t => ({hidden: t.querySelector('.notice').hidden, head: t.querySelector('.notice-head').textContent,"
        " reason: t.querySelector('.notice-reason').textContent,"
        " retry: t.querySelector('.notice-retry').textContent, img: t.querySelector('img').hidden})",
    )


def test_a_failed_camera_says_why_in_place_of_a_picture(page):
    page.wait_for_function(
        "() => document.querySelector('.tile[data-camera=door] .notice-head')?.textContent === 'failed'",
        timeout=30000,
    )
    said = notice(page, "door")
    assert not said["hidden"] and said["img"], said  # the reason shown, no broken-image icon
    assert "cannot connect to rtsp://127.0.0.1:9/cam" in said["reason"], said
    assert "connection refused" in said["reason"] and said["retry"] == "no more retries", said
    assert page.locator('.tile[data-camera="door"] .notice').is_visible()
    assert not page.locator('.tile[data-camera="door"] img').is_visible()
    assert notice(page, "lobby")["hidden"]  # a live camera: its picture alone


def test_a_camera_that_goes_away_says_why_and_when_it_retries(page, server):
    picture_loaded(page, "gate")
    server.gate.stop()
    retry = re.compile(r"attempt \d+ · retry in \d+ s \(at \d{2}:\d{2}:\d{2}\)")
    page.wait_for_function(
        "() => /attempt \\d+ · retry in \\d+ s/.test("
        "document.querySelector('.tile[data-camera=gate] .notice-retry')?.textContent || '')",
        timeout=40000,
    )
    said = notice(page, "gate")
    assert said["head"] == "reconnecting" and retry.fullmatch(said["retry"]), said
    assert "connection refused" in said["reason"], said
    assert not said["img"]  # the last picture stays, the reason over it
    camera = get_json(server.url + "api/cameras/gate", AUTH)
    assert camera["status"] == "reconnecting" and camera["attempt"] >= 1


# -- the text is the page's, the picture has the heat map and the box only ---------------------------------
def test_the_tiles_text_is_html_and_the_picture_has_none(page, server):
    picture_loaded(page, "lobby")
    page.wait_for_function(
        "() => document.querySelectorAll('.tile[data-camera=lobby] .top5 li .pct').length === 5",
        timeout=30000,
    )
    tile = page.locator('.tile[data-camera="lobby"]')
    rows = tile.locator(".top5 li")
    labels = [rows.nth(i).locator(".label").inner_text() for i in range(5)]
    assert all(re.fullmatch(r"\d+%", rows.nth(i).locator(".pct").inner_text()) for i in range(5))
    assert len(set(labels)) == 5 and all(labels), labels
    assert re.search(r"GS \S+ \d+% · GL \S+ \d+% · GP \S+ \d+%", tile.locator(".branches").inner_text())
    assert re.search(r"fps capture \d+\.\d · model \d+\.\d", tile.locator(".stats").inner_text())
    size = float(rows.nth(0).evaluate("e => parseFloat(getComputedStyle(e).fontSize)"))
    assert size >= 14, size  # readable at any tile size: not scaled with the picture
    # the demo's frames are square: a picture with the burned-in panel beside it would be wider than high
    natural = tile.locator("img").evaluate("i => [i.naturalWidth, i.naturalHeight]")
    assert natural[0] == natural[1] and natural[0] >= 360, natural


# -- the events: newest first, a page at a time, one camera or all, wall-clock times, a peak picture -------
def event_rows(page) -> list[dict]:
    return page.eval_on_selector_all(
        "#events li",
        "rows => rows.map(r => ({id: Number(r.dataset.id), camera: r.dataset.camera,"
        " time: r.querySelector('time').textContent, sub: r.querySelector('.sub').textContent}))",
    )


def test_events_are_paged_newest_first_with_wall_clock_times(page, server):
    wait_for(lambda: len(get_json(server.url + "api/events?limit=1000", AUTH)) > 2 * PAGE + 2, 120,
             f"over {2 * PAGE + 2} events")  # fmt: skip
    page.reload()
    page.wait_for_selector(f"#events li >> nth={PAGE - 1}", timeout=10000)
    first = event_rows(page)
    assert len(first) == PAGE
    ids = [r["id"] for r in first]
    assert ids == sorted(ids, reverse=True), ids
    for row in first:
        assert re.fullmatch(r"\d{2}:\d{2}:\d{2}", row["time"]), row  # today's events: the time of day
        assert "(video)" not in row["sub"] and " s (" not in row["time"]
    assert (
        page.locator("#events-newer").is_disabled() and page.locator("#events-page").inner_text() == "newest"
    )
    # new events may come in meanwhile (the newest page is live): the next page starts under the oldest row
    # shown at the click
    cursor = page.evaluate(
        "() => { const rows = document.querySelectorAll('#events li');"
        " const id = Number(rows[rows.length - 1].dataset.id);"
        " document.querySelector('#events-older').click(); return id; }"
    )
    page.wait_for_function("() => document.querySelector('#events-page').textContent === 'page 2'")
    page.wait_for_function(f"() => Number(document.querySelector('#events li').dataset.id) < {cursor}")
    second = event_rows(page)
    older = [r["id"] for r in second]
    assert len(older) == PAGE and older == sorted(older, reverse=True) and max(older) < cursor, (ids, older)
    expected = [e["id"] for e in get_json(server.url + f"api/events?before={cursor}&limit={PAGE}", AUTH)]
    assert older == expected[::-1]
    page.click("#events-newer")
    page.wait_for_function("() => document.querySelector('#events-page').textContent === 'newest'")
    # one camera's events only
    page.select_option("#events-camera", "lobby")
    page.wait_for_function(
        "() => [...document.querySelectorAll('#events li')].length > 0 &&"
        " [...document.querySelectorAll('#events li')].every(r => r.dataset.camera === 'lobby')",
        timeout=10000,
    )
    shown = [r["id"] for r in event_rows(page)]
    lobby = [e["id"] for e in get_json(server.url + "api/events?camera=lobby&limit=1000", AUTH)]
    assert len(shown) <= PAGE and set(shown) <= set(lobby), (shown, lobby)
    page.select_option("#events-camera", "")
    page.wait_for_function("() => new Set([...document.querySelectorAll('#events li')]"
                           ".map(r => r.dataset.camera)).size > 1", timeout=10000)  # fmt: skip


def test_each_event_shows_its_peak_frame(page, server):
    page.wait_for_function(
        "() => [...document.querySelectorAll('#events li .thumb img')]"
        ".some(i => i.complete && i.naturalWidth > 0)",
        timeout=30000,
    )
    sizes = page.eval_on_selector_all(
        "#events li .thumb img",
        "imgs => imgs.filter(i => i.naturalWidth).map(i => [i.naturalWidth, i.naturalHeight])",
    )
    assert sizes and all(0 < w <= 192 and 0 < h <= 144 for w, h in sizes), sizes


def test_the_page_fits_1280_px(page):
    page.set_viewport_size({"width": 1280, "height": 800})
    try:
        time.sleep(0.5)
        widths = page.evaluate(
            "() => [document.documentElement.scrollWidth, document.documentElement.clientWidth,"
            " document.querySelector('aside').getBoundingClientRect().right,"
            " Math.max(...[...document.querySelectorAll('#events li')]"
            ".map(r => r.getBoundingClientRect().right))]"
        )
        assert widths[0] <= widths[1] and widths[2] <= 1280 and widths[3] <= widths[2], widths
    finally:
        page.set_viewport_size({"width": 1400, "height": 820})
