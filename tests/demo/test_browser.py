"""The app in a real browser: headless Debian chromium driven by Playwright, around the tiny random model.

Uploads an image and asks about it (the answer streams in), makes two images (the gallery fills), compares with a
"Show-o" image, loads Show-o sets (images + prompts file; a manifest with an image chat), browses their pairs and makes
OmniMamba's side, and watches the live panel change. Screenshots go to pytest's tmp dir, and to outputs/screenshots/
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
ROOT = Path(__file__).resolve().parents[2]
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


def settled(page) -> None:
    """Wait until no component is faded as pending an update (before a screenshot)."""
    page.wait_for_function("document.querySelectorAll('.pending').length === 0")
    page.wait_for_timeout(300)  # the fade back in


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
    watch(lambda: page.inner_text("#om-t2i-note"), lambda text: "2 images" in text and "seed" in text
          and "Generating" not in text)
    assert page.locator("#om-gallery img").count() == 2
    final = panel_text(page)
    assert "Text to image" in final and "tok/s" in final
    shot(page, "04-text-to-image")


def test_compare_puts_both_sides_in_one_picture(page, shot, tmp_path):
    showo = tmp_path / "showo.png"
    Image.new("RGB", (256, 256), (40, 120, 200)).save(showo)
    page.get_by_role("tab", name="Compare").click()
    page.get_by_role("tab", name="One prompt or question").click()
    page.locator("#om-showo-image input[type=file]").set_input_files(str(showo))
    page.wait_for_selector("#om-showo-image img")
    page.get_by_role("button", name="Make OmniMamba's image").click()
    watch(lambda: panel_text(page), lambda text: "Compare" in text and "Done" in text)
    page.wait_for_selector("#om-compare-picture img")
    width = page.evaluate("document.querySelector('#om-compare-picture img').naturalWidth")
    assert width > 2 * 64, "a grid page with both sides, not OmniMamba's image alone"
    assert "not recorded" in page.inner_text("#om-compare-table"), "a single upload carries no Show-o time"
    shot(page, "05-compare")


def draw_showo_set(folder: Path) -> list[Path]:
    """Two 'Show-o' images, the second twice the size, and the prompts file they were made from."""
    folder.mkdir()
    images = [folder / "0.png", folder / "1.png"]
    Image.new("RGB", (256, 256), (220, 90, 40)).save(images[0])
    Image.linear_gradient("L").resize((512, 512)).convert("RGB").save(images[1])
    (folder / "prompts.txt").write_text("An orange square.\nA grey gradient, dark at the top.\n")
    return [*images, folder / "prompts.txt"]


def test_compare_browses_a_showo_set_and_makes_omnimambas_side(page, shot, tmp_path):
    page.get_by_role("tab", name="Compare").click()
    page.locator("#om-set-files input[type=file]").set_input_files([str(p) for p in draw_showo_set(tmp_path / "s")])
    page.locator("#om-set-load").click()
    watch(lambda: page.inner_text("#om-set-status"), lambda text: "2 pairs" in text)
    page.wait_for_selector("#om-set-showo img")
    assert "Show-o · 256×256" in page.inner_text("#om-set-showo")

    page.get_by_role("button", name="Next ▶").click()
    watch(lambda: page.locator("#om-set-pick input").input_value(), lambda text: text.startswith("2. A grey"))
    watch(lambda: page.inner_text("#om-set-showo"), lambda text: "Show-o · 512×512" in text)
    assert page.get_by_label("OmniMamba's seed").input_value() == "1", "no Show-o seed: the pair's index"

    page.locator("#om-set-make").click()
    watch(lambda: panel_text(page), lambda text: "Compare" in text and "Done" in text)
    page.wait_for_selector("#om-set-ours img")
    assert "OmniMamba · 64×64 · seed 1" in page.inner_text("#om-set-ours")
    table = page.inner_text("#om-set-table")
    time_row = next(line for line in table.splitlines() if line.startswith("Time"))
    assert "not recorded" in time_row and ("ms" in time_row or " s" in time_row), time_row
    assert "made for 1 of 2" in page.inner_text("#om-set-status")
    settled(page)
    shot(page, "06-compare-set")

    page.get_by_role("button", name="◀ Previous").click()  # the first pair: not made yet; back again: instant
    watch(lambda: page.inner_text("#om-set-ours"), lambda text: "not made yet" in text)
    page.get_by_role("button", name="Next ▶").click()
    watch(lambda: page.inner_text("#om-set-ours"), lambda text: "seed 1" in text, timeout_s=5)


def write_showo_manifest(folder: Path) -> list[Path]:
    """A Show-o run described by a manifest: an image with its recorded seed and time, and an image chat."""
    from omnimamba.compare import Item, write_manifest

    (folder / "images").mkdir(parents=True)
    Image.new("RGB", (512, 512), (250, 170, 30)).save(folder / "images" / "000.png")
    shutil.copy(HOUSE, folder / "images" / "house.png")
    items = [Item("t2i", "An orange sun.", image=str(folder / "images" / "000.png"), seed=42, resolution=512,
                  sampler={"steps": 50, "guidance_scale": 5.0}, seconds=3.25, peak_vram_gib=9.5,
                  model="showlab/show-o"),
             Item("mmu", "What is in the picture?", image=str(folder / "images" / "house.png"),
                  answer="A house with a red roof.", seed=7, seconds=0.8, model="showlab/show-o")]
    return [write_manifest(items, folder / "manifest.jsonl"), folder / "images" / "000.png",
            folder / "images" / "house.png"]


def test_compare_makes_all_of_a_manifest_set_with_both_sides_timed(page, shot, tmp_path):
    page.get_by_role("tab", name="Compare").click()
    page.locator("#om-set-files input[type=file]").set_input_files([str(p) for p in write_showo_manifest(tmp_path)])
    page.locator("#om-set-load").click()
    watch(lambda: page.inner_text("#om-set-status"), lambda text: "1 text to image, 1 image chat" in text)
    page.get_by_role("button", name="Make all").click()
    watch(lambda: page.inner_text("#om-set-status"), lambda text: "made for 2 of 2" in text)
    watch(lambda: page.locator("#om-set-pick input").input_value(), lambda text: text.startswith("2. chat:"))
    assert "Asked to both" in page.inner_text("#om-set-showo") and not page.locator("#om-set-ours").is_visible()
    assert page.get_by_label("Show-o's answer").input_value() == "A house with a red roof."
    assert page.get_by_label("OmniMamba's answer").input_value().strip()
    time_row = next(line for line in page.inner_text("#om-set-table").splitlines() if line.startswith("Time"))
    assert "800 ms" in time_row and "not" not in time_row, time_row
    settled(page)
    shot(page, "07-compare-set-chat")

    page.locator("#om-set-pick input").click()  # pick the first pair from the list
    page.get_by_role("option", name="1. An orange sun.").click()
    watch(lambda: page.inner_text("#om-set-ours"), lambda text: "OmniMamba · 64×64 · seed 42" in text)
    table = page.inner_text("#om-set-table")
    assert "3.25 s" in table and "9.50 GiB" in table and "steps 50" in table
    settled(page)
    shot(page, "08-compare-set-recorded")
