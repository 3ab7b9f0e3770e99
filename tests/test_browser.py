"""The app in a real browser: headless Debian chromium driven by Playwright, around the tiny random model.

Uploads an image and asks about it (the answer streams in), makes two images (the gallery fills), compares with a
"Show-o" image, and watches the live panel change. Screenshots go to pytest's tmp dir, and to outputs/screenshots/
when OMNIMAMBA_SCREENSHOTS is set. Needs /usr/bin/chromium (apt-get install chromium) and the playwright package;
never `playwright install` (it downloads a browser).
"""
from __future__ import annotations

import copy
import os
import shutil
import socket
import time
from contextlib import closing
from pathlib import Path

import pytest
from PIL import Image

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ROOT = Path(__file__).resolve().parents[1]
HOUSE = ROOT / "assets" / "examples" / "house.png"
WAIT_MS = 30_000
EVENT_DELAY_S = 0.03  # the tiny model answers in milliseconds; slowed down, the stream is there to be seen

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                                                     "(apt-get install -y chromium)"),
]
sync_api = pytest.importorskip("playwright.sync_api", reason="needs the playwright package (pip install playwright)")


@pytest.fixture(scope="module")
def url(tiny_model_shared, tokenizer):
    import app
    from omnimamba.engine import Engine

    engine = Engine(copy.deepcopy(tiny_model_shared), tokenizer, label="tiny-random (random weights: outputs are "
                    "noise)", use_cuda_graphs=False)
    engine.chat, engine.text_to_image = slowed(engine.chat), slowed(engine.text_to_image)
    demo = app.build_demo(engine)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    try:
        yield app.serve(demo, host="127.0.0.1", port=port, block=False)
    finally:
        demo.close()


def slowed(stream):
    """The same stream of events, each one a little later."""
    def wrapper(*args, **kwargs):
        with closing(stream(*args, **kwargs)) as events:
            for event in events:
                time.sleep(EVENT_DELAY_S)
                yield event
    return wrapper


@pytest.fixture
def page(url):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(WAIT_MS)
            page.goto(url, wait_until="domcontentloaded")  # "networkidle" never comes offline
            page.wait_for_selector(".om-panel")
            yield page
        finally:
            browser.close()


@pytest.fixture
def shot(tmp_path):
    keep = ROOT / "outputs" / "screenshots" if os.environ.get("OMNIMAMBA_SCREENSHOTS") else None

    def save(page, name: str) -> Path:
        path = tmp_path / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        if keep is not None:
            keep.mkdir(parents=True, exist_ok=True)
            shutil.copy(path, keep / path.name)
        return path
    return save


def watch(read, until, timeout_s: float = WAIT_MS / 1000) -> list[str]:
    """Poll `read()` until `until(value)`; returns the distinct values seen, in order."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = read()
        if not seen or value != seen[-1]:
            seen.append(value)
        if until(value):
            return seen
        time.sleep(0.01)
    raise AssertionError(f"timed out; last values seen: {seen[-3:]}")


def panel_text(page) -> str:
    return page.inner_text(".om-panel")


def test_chat_streams_an_answer_and_the_panel_follows(page, shot):
    assert "Idle" in panel_text(page) and "CPU (no GPU)" in panel_text(page)
    assert page.locator(".om-banner").is_visible(), "random weights must be labelled"
    shot(page, "01-start")

    box = page.locator("#om-chat-input")
    box.locator("input[type=file]").set_input_files(str(HOUSE))
    page.wait_for_selector("#om-chat-input img")  # the thumbnail of the attached image
    box.locator("textarea").fill("What colour is the roof?")
    box.locator("textarea").press("Enter")

    bot = page.locator("#om-chat [data-testid=bot]")
    panels: list[str] = []

    def answer_so_far() -> str:
        panels.append(panel_text(page))
        text = bot.last.inner_text() if bot.count() else ""
        if "Generating" in panels[-1] and text and not streaming_shot:
            streaming_shot.append(shot(page, "02-chat-streaming"))  # the live panel, mid-answer
        return text
    streaming_shot: list[Path] = []
    texts = watch(answer_so_far, lambda _: "Done" in panels[-1])
    assert len([t for t in texts if t.strip()]) >= 2, f"the answer should grow while it streams: {texts}"
    assert any("Generating" in p for p in panels), "the panel should update during generation"
    final = panel_text(page)
    assert "Image chat" in final and "tok/s" in final
    assert page.locator("#om-chat [data-testid=user] img").count() == 1
    shot(page, "03-chat")


def test_two_images_fill_the_gallery(page, shot):
    page.get_by_role("tab", name="Text to image").click()
    page.get_by_label("Prompt").fill("A lighthouse on a rocky cliff under a starry night sky.")
    count = page.get_by_label("number input for Number of images")
    count.fill("2")
    count.press("Tab")
    page.get_by_role("button", name="Generate").click()
    watch(lambda: page.inner_text(".om-note"), lambda text: "2 images" in text and "seed" in text
          and "Generating" not in text)
    assert page.locator("#om-gallery img").count() == 2
    final = panel_text(page)
    assert "Text to image" in final and "tok/s" in final
    shot(page, "04-text-to-image")


def test_compare_puts_both_sides_in_one_picture(page, shot, tmp_path):
    showo = tmp_path / "showo.png"
    Image.new("RGB", (256, 256), (40, 120, 200)).save(showo)
    page.get_by_role("tab", name="Compare").click()
    page.locator("#om-showo-image input[type=file]").set_input_files(str(showo))
    page.wait_for_selector("#om-showo-image img")
    page.get_by_role("button", name="Make OmniMamba's image").click()
    watch(lambda: panel_text(page), lambda text: "Compare" in text and "Done" in text)
    page.wait_for_selector("#om-compare-picture img")
    width = page.evaluate("document.querySelector('#om-compare-picture img').naturalWidth")
    assert width > 2 * 64, "a grid page with both sides, not OmniMamba's image alone"
    shot(page, "05-compare")
