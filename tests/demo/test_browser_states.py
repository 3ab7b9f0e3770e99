"""The app's states in a real browser (issue 13): a chat that does not fit never jams the tab, Stop says "stopped"
and the numbers stop, several images are sampled and say so, Enter generates, mistakes are shown beside the input
without blanking what is there. Same server and browser as test_browser.py (chromium, the tiny model)."""
from __future__ import annotations

import time

import pytest

from .test_browser import HOUSE, panel_text, watch, url, page, shot  # noqa: F401  (fixtures)

pytestmark = pytest.mark.browser


def chat_input(page):
    return page.locator("#om-chat-input textarea")


def ask(page, text: str, image=None) -> None:
    if image is not None:
        page.locator("#om-chat-input input[type=file]").set_input_files(str(image))
        page.wait_for_selector("#om-chat-input img")
    chat_input(page).fill(text)
    chat_input(page).press("Enter")


def no_toasts_or_error_pills(page) -> None:
    assert page.locator("[data-testid=toast-body]").count() == 0, "a mistake is shown beside the input, not a toast"
    assert page.locator(".error").filter(has_text="Error").count() == 0, "no red Error pill over an output"


def test_a_question_that_does_not_fit_leaves_the_chat_usable(page, shot):
    ask(page, "why " * 200, HOUSE)
    watch(lambda: page.inner_text("#om-chat-note"), lambda text: "holds at most" in text)
    watch(lambda: chat_input(page).is_enabled(), bool, timeout_s=10)  # the input comes back with the last update
    assert "Working" not in panel_text(page)
    assert chat_input(page).input_value().startswith("why why"), "the question stays in the box, to be shortened"
    no_toasts_or_error_pills(page)
    shot(page, "10-does-not-fit")
    chat_input(page).fill("What colour is the roof?")
    chat_input(page).press("Enter")
    watch(lambda: panel_text(page), lambda text: "Done" in text)
    watch(lambda: chat_input(page).is_enabled(), bool, timeout_s=10)
    assert "holds at most" not in page.inner_text("#om-chat-note")


def test_stop_in_chat_says_stopped_and_the_count_stops(page, shot):
    page.get_by_label("number input for Max new tokens").fill("1024")
    page.get_by_label("number input for Max new tokens").press("Tab")
    page.get_by_label("number input for Top-k").fill("0")
    page.get_by_label("number input for Top-k").press("Tab")
    ask(page, "Tell me a long story about this house.", HOUSE)
    watch(lambda: panel_text(page), lambda text: "Generating" in text)
    page.locator("#om-chat-input button.stop-button, #om-chat-input [aria-label*=top i]").first.click()
    watch(lambda: panel_text(page), lambda text: "Stopped" in text)
    watch(lambda: page.inner_text("#om-chat-note"), lambda text: "Stopped" in text, timeout_s=5)
    before = panel_text(page)
    time.sleep(1.0)
    assert panel_text(page) == before, "nothing creeps on after Stop"
    watch(lambda: str(chat_input(page).is_enabled()), lambda text: text == "True")
    shot(page, "11-chat-stopped")


def test_several_images_are_sampled_and_say_so_enter_generates_and_stop_says_stopped(page, shot):
    page.get_by_role("tab", name="Text to image").click()
    count = page.get_by_label("number input for Number of images")
    count.fill("3")
    count.press("Tab")
    prompt = page.locator("#om-t2i-prompt textarea")
    prompt.fill("A red circle to the left of a blue square.")
    prompt.press("Enter")  # Enter generates
    watch(lambda: page.inner_text("#om-t2i-note"), lambda text: "3 images" in text and "Generating" not in text)
    note = page.inner_text("#om-t2i-note")
    assert "Several images are sampled" in note
    assert page.locator("#om-gallery img").count() == 3
    shot(page, "12-three-sampled")

    count.fill("8")
    count.press("Tab")
    page.locator("#om-t2i-go").click()
    watch(lambda: page.inner_text("#om-t2i-note"), lambda text: "Generating 8 images" in text)
    page.locator("#om-t2i-stop").click()
    watch(lambda: page.inner_text("#om-t2i-note"), lambda text: "Stopped" in text)
    assert "Stopped" in panel_text(page)
    before = panel_text(page)
    time.sleep(1.0)
    assert panel_text(page) == before
    shot(page, "13-t2i-stopped")


def test_mistakes_are_shown_beside_the_input_and_nothing_is_blanked(page, shot, tmp_path):
    page.get_by_role("tab", name="Text to image").click()
    prompt = page.locator("#om-t2i-prompt textarea")
    prompt.fill("A green triangle.")
    prompt.press("Enter")
    watch(lambda: page.inner_text("#om-t2i-note"), lambda text: "1 image" in text and "Generating" not in text)
    prompt.fill("   ")
    page.locator("#om-t2i-go").click()
    watch(lambda: page.inner_text("#om-t2i-note"), lambda text: "empty" in text)
    assert page.locator("#om-gallery img").count() == 1, "the last images stay"
    no_toasts_or_error_pills(page)

    page.get_by_role("tab", name="Image chat").click()
    fake = tmp_path / "fake.png"
    fake.write_text("not an image")
    ask(page, "What is it?", None)
    watch(lambda: panel_text(page), lambda text: "Done" in text)
    page.locator("#om-chat-input input[type=file]").set_input_files(str(fake))
    chat_input(page).fill("And this one?")
    chat_input(page).press("Enter")
    watch(lambda: page.inner_text("#om-chat-note"), lambda text: "could not be read as an image" in text)
    assert page.locator("#om-chat [data-testid=bot]").count() == 1, "the conversation stays"
    assert chat_input(page).is_enabled()
    no_toasts_or_error_pills(page)
    shot(page, "14-mistakes-beside")
