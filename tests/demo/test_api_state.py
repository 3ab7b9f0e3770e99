"""What the API keeps between calls: Show-o sets by set_id (bounded in number and idle time) and the PNG files
written for answers (pruned by age). No server needed."""
from __future__ import annotations

import os
import time

import gradio as gr
import pytest
from PIL import Image

from demo import api
from demo.showo_set import CompareSet


def test_a_set_is_found_by_its_id_and_the_oldest_goes_when_full(monkeypatch, tmp_path):
    monkeypatch.setattr(api, "MAX_SETS", 2)
    sets = api.ApiSets()
    folders = [tmp_path / f"set{i}" for i in range(3)]
    for folder in folders:
        folder.mkdir()
    first, second = (sets.add(CompareSet(folder=str(f))) for f in folders[:2])
    assert sets.get(first).folder == str(folders[0])  # first is now the most recently used
    third = sets.add(CompareSet(folder=str(folders[2])))
    assert sets.get(third) and sets.get(first)
    with pytest.raises(gr.Error, match="Unknown or expired set_id"):
        sets.get(second)
    assert not folders[1].exists(), "an evicted set's folder is removed"
    with pytest.raises(gr.Error, match="Unknown or expired set_id"):
        sets.get(None)


def test_an_idle_set_expires(monkeypatch, tmp_path):
    sets = api.ApiSets()
    set_id = sets.add(CompareSet(folder=str(tmp_path)))
    now = time.monotonic()
    monkeypatch.setattr(api.time, "monotonic", lambda: now + api.SET_IDLE_S + 1)
    with pytest.raises(gr.Error, match="expired"):
        sets.get(set_id)
    assert not tmp_path.exists()


def test_answer_files_are_pngs_and_old_ones_are_pruned(monkeypatch):
    files = api.OutputFiles()
    old = files.png(Image.new("RGB", (4, 4), "red"))
    stale = time.time() - api.OUTPUT_AGE_S - 10
    os.utime(old.path, (stale, stale))
    files.png(Image.new("RGB", (4, 4), "green"))
    assert os.path.exists(old.path), "not looked for again within PRUNE_EVERY_S"
    now = time.monotonic()
    monkeypatch.setattr(api.time, "monotonic", lambda: now + api.PRUNE_EVERY_S + 1)
    new = files.png(Image.new("RGB", (4, 4), "blue"))
    assert Image.open(new.path).format == "PNG" and not os.path.exists(old.path)


def test_a_file_argument_must_be_file_data():
    assert api.file_path({"path": "/tmp/gradio/x.png", "meta": {"_type": "gradio.FileData"}}, "image") == \
        "/tmp/gradio/x.png"
    assert api.file_path(None, "image") is None and api.file_path("", "image") is None
    with pytest.raises(gr.Error, match="handle_file"):
        api.file_path(42, "image")
    with pytest.raises(gr.Error, match="handle_file"):  # a bare path would skip Gradio's upload-folder check
        api.file_path("/etc/passwd", "image")
