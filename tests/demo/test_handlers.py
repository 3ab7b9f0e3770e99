"""The app's handlers and formatting without a server: chat turns, images, Show-o sets, the warm-up."""
from __future__ import annotations

import copy
from pathlib import Path

import gradio as gr
import pytest
from PIL import Image

from demo.chat import ChatHandlers, Conversation
from demo.compare_pairs import ComparePairHandlers
from demo.format import header_html, md_escape, pair_table, panel_html
from demo.handlers import user_errors
from demo.images import ImageHandlers
from demo.inputs import DEFAULT_QUESTION, MAX_QUESTION_CHARS
from demo.launch import warm_up
from demo.showo_set import BASE_SEED, SET_MANIFEST, CompareSet, load_showo_set
from omnimamba.compare import CompareError, Item
from omnimamba.engine import Engine
from omnimamba.metrics import RequestMetrics
from omnimamba.sampling import SamplingParams

from .showo_files import HOUSE, file_path, write_showo_manifest, write_showo_set


@pytest.fixture(scope="module")
def engine(tiny_model_shared, tokenizer) -> Engine:
    return Engine(copy.deepcopy(tiny_model_shared), tokenizer, label="tiny-random (test)", use_cuda_graphs=False)


# ---------------------------------------------------------------------------------------------- handlers directly
def run_turn(ui: ChatHandlers, message: dict, history: list, conv: Conversation, **settings):
    history, _, conv, _ = ui.add_message(message, history, conv)
    values = dict(max_new_tokens=6, temperature=1.0, top_k=1, top_p=0.0, seed=-1) | settings
    outputs = shown(ui.respond(history, conv, *values.values()))
    return outputs[-1][0], outputs[-1][1], outputs


def shown(updates) -> list[tuple]:
    """A stream's updates that change the chat (the last one only re-enables the input)."""
    return [update for update in updates if not isinstance(update[0], type(gr.skip()))]


def test_ui_chat_turns_retry_and_a_lost_session_rebuild_the_same_context(engine):
    ui = ChatHandlers(engine)
    history, conv, outputs = run_turn(ui, {"text": "What is it?", "files": [str(HOUSE)]}, [], Conversation())
    assert history[0]["content"] == {"path": str(HOUSE)} and history[-1]["role"] == "assistant"
    assert "data-live=\"true\"" in outputs[1][2] and "data-live=\"false\"" in outputs[-1][2]
    history, conv, _ = run_turn(ui, {"text": "Colours?", "files": []}, history, conv, top_k=0, seed=5)
    first_answer = history[-1]["content"]
    assert len(conv.turns) == 2 and conv.turns[1].params == SamplingParams(1.0, 0, 0.0, 5)

    history, conv, _, _ = ui.retry(history, conv)  # the same settings again: a replayed context gives the same answer
    outputs = shown(ui.respond(history, conv, 6, 1.0, 0, 0.0, 5))
    assert outputs[-1][0][-1]["content"] == first_answer and len(outputs[-1][0]) == len(history) + 1

    engine.end_session(conv.session_id)  # as if evicted: the next turn rebuilds it from the recorded turns
    history, conv, _ = run_turn(ui, {"text": "More?", "files": []}, outputs[-1][0], outputs[-1][1])
    assert engine.sessions[conv.session_id].turns == 3

    history, _, conv, note = ui.add_message({"text": "", "files": [str(HOUSE)]}, history, conv)
    assert note == "New image: a new conversation starts."
    assert conv.turns == [] and conv.pending == DEFAULT_QUESTION and len(history) == 2, "new image, new chat"


def test_ui_refuses_bad_messages_beside_the_input_and_changes_nothing_else(engine, tmp_path):
    ui = ChatHandlers(engine)
    (tmp_path / "x.png").write_bytes(b"not a png")
    for message, words in [({"text": "  ", "files": []}, "Type a question"),
                           ({"text": "hi", "files": [str(tmp_path / "x.png")]}, "could not be read as an image"),
                           ({"text": "x" * (MAX_QUESTION_CHARS + 1), "files": []}, "the limit is"),
                           (None, "Type a question")]:
        conv = Conversation()
        history, box, conv, note = ui.add_message(message, [], conv)
        assert isinstance(history, type(gr.skip())) and box.interactive and conv.pending is None
        assert note.startswith("⚠️") and md_escape(words) in note
        assert list(ui.respond([], conv, 6, 1.0, 1, 0.0, -1))[-1][-1].interactive  # nothing to answer; ready
    _, _, _, note = ui.retry([], Conversation())
    assert "no answer to retry" in note


def test_a_question_that_does_not_fit_is_refused_before_any_work(engine):
    ui = ChatHandlers(engine)
    history, _, conv, note = ui.add_message({"text": "why " * 200, "files": [str(HOUSE)]}, [], Conversation())
    assert "tokens; this model's chat holds at most" in note.replace("\\", "") and conv.pending is None


def test_a_chat_that_fills_up_ends_cleanly_and_says_what_to_do(engine):
    """Until the positions run out, then every follow-up: the stream ends, the input is ready again (holding the
    question), the panel leaves its working state, and the note says to start a new chat."""
    ui = ChatHandlers(engine)
    history, conv = [], Conversation()
    history, _, conv, _ = ui.add_message({"text": "Describe it.", "files": [str(HOUSE)]}, history, conv)
    history = shown(ui.respond(history, conv, 1024, 1.0, 0, 0.0, 3))[-1][0]
    for _ in range(40):
        history, _, conv, note = ui.add_message({"text": "And what else is there?", "files": []}, history, conv)
        if conv.pending is None:
            break
        outputs = list(ui.respond(history, conv, 1024, 1.0, 0, 0.0, 3))
        final = outputs[-1]
        assert final[-1].interactive, "the input is ready again"
        history = shown(outputs)[-1][0]
    assert "This conversation is full" in note.replace("\\", "") and "Start a new chat" in note


def test_any_failure_while_answering_ends_the_stream_cleanly(engine, monkeypatch):
    ui = ChatHandlers(engine)
    history, _, conv, _ = ui.add_message({"text": "What is it?", "files": [str(HOUSE)]}, [], Conversation())

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")
        yield
    monkeypatch.setattr(engine, "chat", broken)
    chat, conv, panel, note, box = list(ui.respond(history, conv, 6, 1.0, 1, 0.0, -1))[-1]
    assert chat == history[:-1] and box.interactive and box.value == {"text": "What is it?", "files": []}
    assert "Not answered" in panel and 'data-live="false"' in panel and "Something went wrong" in note


def test_stop_says_stopped(engine):
    ui = ChatHandlers(engine)
    conv = Conversation(last_metrics=RequestMetrics("chat", "CPU", "float32", "x", tokens=7, done=False))
    panel, note, box = ui.stopped(conv)
    assert "Stopped" in panel and "7 tokens" in panel and 'data-live="false"' in panel and "Stopped" in note
    note, panel = ImageHandlers(engine).stopped(None)
    assert "Stopped" in note and "Stopped" in panel


def test_ui_images_streams_previews_and_notes(engine):
    ui = ImageHandlers(engine)
    outputs = list(ui.images("a blue ball", 1, 11, 1.0, 0, 0.0, 1.0, True))
    gallery, note, panel, metrics = outputs[-1]
    assert len(gallery.value) == 1 and "seed `11`" in note and "64×64" in note and metrics.done
    assert "Generating" in outputs[0][1] and "row" in outputs[0][2]


def test_several_images_are_sampled_and_named_by_prompt_and_seed(engine):
    ui = ImageHandlers(engine)
    outputs = list(ui.images("A red circle!", 3, 11, 1.0, 1, 0.0, 1.0, False))
    gallery, note, _, _ = outputs[-1]
    assert len(gallery.value) == 3 and gallery.columns == 3
    assert "Several images are sampled" in note
    names = [item["image"]["orig_name"] for item in gallery.value]
    # one seed each (the engine's seed + i): image i is reproduced alone by its own seed
    assert names == ["a-red-circle_seed11_1.png", "a-red-circle_seed12_2.png", "a-red-circle_seed13_3.png"]
    assert [item["caption"] for item in gallery.value] == ["#1 · seed 11", "#2 · seed 12", "#3 · seed 13"]
    _, note, _, _ = list(ui.images("A red circle", 1, 11, 1.0, 1, 0.0, 1.0, False))[-1]
    assert "sampled" not in note, "one image stays greedy"


# ---------------------------------------------------------------------------------------------- formatting
def test_panel_on_cpu_and_on_a_gpu():
    cpu_info = {"model": "tiny-random (random weights)", "device": "CPU", "dtype": "float32",
                "backend": "scan: pytorch reference, conv: pytorch conv1d, decode: pytorch reference",
                "vram_total_gib": None}
    html = panel_html(cpu_info)
    assert "CPU (no GPU)" in html and "n/a on CPU" in html and "Idle" in html
    gpu_info = {**cpu_info, "device": "NVIDIA H100 80GB HBM3", "dtype": "bfloat16", "vram_total_gib": 79.1,
                "backend": "scan: triton, conv: causal-conv1d, decode: fused <triton>"}
    live = RequestMetrics("t2i", "NVIDIA H100 80GB HBM3", "bfloat16", "x", tokens=96, steps=5, ttft_s=0.031,
                          decode_tokens_per_s=1234.5, ms_per_step=6.4, total_s=0.1, peak_vram_gib=5.25,
                          vram_in_use_gib=4.5, vram_total_gib=79.1)
    html = panel_html(gpu_info, live, "row 4 of 24")
    assert "1,234.5 tok/s" in html and "31 ms" in html and "4.50 / 79.1 GiB" in html and "peak 5.25 GiB" in html
    assert "Generating" in html and "row 4 of 24" in html and 'data-live="true"' in html
    assert "fused &lt;triton&gt;" in html
    assert "random weights" in header_html(cpu_info) and "om-banner" not in header_html(gpu_info | {"model": "x"})


def test_a_folder_upload_pairs_image_i_with_prompt_line_i_in_natural_order(tmp_path):
    files = write_showo_set(tmp_path / "upload")
    cset = load_showo_set([str(f) for f in reversed(files)], None, allow_paths=False)
    try:
        assert [(Path(i.image).name, i.prompt) for i in cset.showo] == [
            ("img_1.png", "A red apple."), ("img_2.png", "A blue car."), ("img_10.png", "A green tree.")]
        assert cset.source == "3 images + prompts.txt" and Path(cset.showo[0].image).parent == Path(cset.folder)
        assert [cset.default_seed(i) for i in range(3)] == [BASE_SEED, BASE_SEED + 1, BASE_SEED + 2]
    finally:
        cset.close()
    assert not Path(cset.folder).exists(), "the set's temporary folder goes with it"


@pytest.mark.parametrize("pick, message", [
    (lambda f: f[:2] + f[3:], "2 images uploaded but prompts.txt has 3 prompts"),
    (lambda f: f[:3], "Also upload the prompts .txt"),
    (lambda f: [], "Nothing to load"),
    (lambda f: f + [f[0].with_name("notes.md")], "notes.md: expected Show-o's images"),
    (lambda f: f + [f[0].with_name("other.txt")], "Upload one prompts .txt or one manifest"),
    (lambda f: f[:2] + [f[0].with_name("broken.png")] + f[3:], "could not read image broken.png"),
], ids=["mismatched-counts", "no-prompts", "nothing", "other-file", "two-prompt-files", "unreadable-image"])
def test_a_bad_upload_is_refused_with_what_to_change(tmp_path, pick, message):
    files = write_showo_set(tmp_path)
    (tmp_path / "notes.md").write_text("x")
    (tmp_path / "other.txt").write_text("x\n")
    (tmp_path / "broken.png").write_text("not a png")
    with pytest.raises(CompareError, match=message) as error:
        load_showo_set([str(f) for f in pick(files)], "", allow_paths=False)
    assert str(tmp_path) not in str(error.value) and "omnimamba-set-" not in str(error.value)
    with pytest.raises(gr.Error, match=message):  # as the app's handler shows it
        user_errors(load_showo_set)([str(f) for f in pick(files)], "", False)


def test_a_manifest_upload_finds_its_images_by_name_and_reads_nothing_else(tmp_path):
    files = write_showo_manifest(tmp_path / "run")
    cset = load_showo_set([str(f) for f in files], None, allow_paths=False)
    assert [i.task for i in cset.showo] == ["t2i", "mmu"] and cset.default_seed(0) == 42
    assert all(Path(i.image).parent == Path(cset.folder) for i in cset.showo)
    cset.close()
    with pytest.raises(CompareError, match=r"names 1 image\(s\) that were not uploaded: house.png"):
        load_showo_set([str(f) for f in files[:2]], None, allow_paths=False)
    outside = tmp_path / "evil.jsonl"
    outside.write_text('{"task": "t2i", "prompt": "x", "image": "/etc/secret.png"}\n')
    with pytest.raises(CompareError, match="secret.png"):
        load_showo_set([str(outside)], None, allow_paths=False)


def test_a_server_path_loads_only_when_allowed(tmp_path):
    write_showo_set(tmp_path / "out")
    with pytest.raises(CompareError, match="turned off"):
        load_showo_set(None, str(tmp_path / "out"), allow_paths=False)
    cset = load_showo_set(None, str(tmp_path / "out"), allow_paths=True)  # prompts.txt kept in the folder
    assert len(cset.showo) == 3 and cset.source.endswith("out + prompts.txt")
    cset.close()
    (tmp_path / "out" / "prompts.txt").unlink()
    with pytest.raises(CompareError, match="also upload the prompts .txt"):
        load_showo_set(None, str(tmp_path / "out"), allow_paths=True)


def test_browsing_a_set_makes_each_side_once_and_shows_it_again_instantly(engine, tmp_path, monkeypatch):
    ui = ComparePairHandlers(engine)
    files = write_showo_set(tmp_path, sizes=(256, 512, 256))
    cset, picker, status, download, *view = ui.load_set([str(f) for f in files], "", CompareSet())
    assert picker.choices[1] == ("2. A blue car.", 1) and picker.value == 0 and "made for 0 of 3" in status
    assert Path(file_path(download.value)).name == SET_MANIFEST
    showo_pic, ours_pic, _, _, _, table, seed = view
    assert showo_pic.label == "Show-o · 256×256" and ours_pic.label == "OmniMamba · not made yet" and seed == 0
    assert "| Time | not recorded | not made yet |" in table

    outputs = ui.next_pair(cset, 0)
    assert outputs[1] == 1 and outputs[4].label == "Show-o · 512×512" and outputs[-1] == 1
    assert ui.previous_pair(cset, 0)[1] == 0 and ui.next_pair(cset, 2)[1] == 2, "clamped to the set"

    streamed = list(ui.make_pair(cset, 1, 9, 1.0, 1, 0.0, 1.0, 8))
    assert "pair 2" in streamed[0][-1] and "Compare" in streamed[-1][-1] and "Done" in streamed[-1][-1]
    cset, picker, status, download, showo_pic, ours_pic, _, _, _, table, seed = streamed[-1][:-1]
    assert ours_pic.label == "OmniMamba · 64×64 · seed 9" and seed == 9 and "made for 1 of 3" in status
    assert cset.ours[1].seconds > 0 and "| Seed | not recorded | 9 |" in table
    assert Image.open(file_path(ours_pic.value)).size == (64, 64)
    lines = Path(file_path(download.value)).read_text().splitlines()
    assert len(lines) == 4 and '"omnimamba/t2i_001.png"' in lines[-1]

    def no_gpu(*args, **kwargs):
        raise AssertionError("browsing back must not generate again")
    monkeypatch.setattr(engine, "text_to_image", no_gpu)
    again = ui.show_pair(cset, 1)
    assert again[5].label == ours_pic.label and again[5].value == ours_pic.value
    monkeypatch.undo()

    made = list(ui.make_all(cset, 1.0, 1, 0.0, 1.0, 8))
    assert sorted(cset.ours) == [0, 1, 2] and cset.ours[1].seed == 9, "made ones are kept"
    assert len(made) == 4 and made[-1][1] == 2 and "made for 3 of 3" in made[-1][2], "progress, then each pair"
    assert len(list(ui.make_all(cset, 1.0, 1, 0.0, 1.0, 8))) == 1, "nothing left to make: one update, no work"
    with pytest.raises(CompareError, match="Load a Show-o set first"):
        list(ui.make_pair(CompareSet(), 0, None, 1.0, 1, 0.0, 1.0, 8))
    cset.close()


def test_an_image_chat_pair_shows_the_image_once_and_both_answers(engine, tmp_path):
    ui = ComparePairHandlers(engine)
    files = write_showo_manifest(tmp_path / "run")
    cset = ui.load_set([str(f) for f in files], "", CompareSet())[0]
    *_, showo_pic, ours_pic, answers, showo_answer, ours_answer, table, seed = ui.show_pair(cset, 1)
    assert showo_pic.label.startswith("Asked to both") and not ours_pic.visible and answers.visible
    assert showo_answer == "A house." and ours_answer == "(not made yet)" and seed == 7
    assert "| Time | 800 ms | not made yet |" in table and "**Question:** What is this?" in table
    outputs = list(ui.make_pair(cset, 1, None, 1.0, 1, 0.0, 1.0, 5))[-1]
    assert outputs[8] == cset.ours[1].answer and cset.ours[1].seed == 7
    cset.close()


def test_the_pair_table_says_what_each_side_recorded():
    showo = Item("t2i", "A *bold* [link](x) | pipe", image="a.png", seed=42, seconds=3.25, peak_vram_gib=9.5,
                 model="showlab/show-o", device="NVIDIA H100 (bfloat16)", sampler={"steps": 50})
    ours = Item("t2i", showo.prompt, image="b.png", seed=42, seconds=0.45, model="OmniMamba", device="CPU (float32)")
    table = pair_table(showo, ours, ((512, 512), (256, 256)))
    assert md_escape(showo.prompt) in table and "| Peak VRAM | 9\\.50 GiB | n/a \\(no GPU\\) |" in table
    assert "| Time | 3\\.25 s | 450 ms |" in table and "| Native size | 512×512 | 256×256 |" in table
    assert "different devices" in table
    assert md_escape("a|b <i>") == "a\\|b \\<i\\>"


def test_warm_up_runs_one_request_of_each_kind(engine):
    warm_up(engine)
    assert not engine.lock.locked()


def test_a_bad_load_keeps_the_set_loaded_before_and_says_so(engine, tmp_path):
    ui = ComparePairHandlers(engine)
    files = write_showo_set(tmp_path / "good")
    cset = ui.load_set([str(f) for f in files], None, CompareSet())[0]
    try:
        outputs = ui.load_set([str(files[0])], None, cset)
        assert outputs[0] is cset and len(cset.showo) == 3 and Path(cset.folder).is_dir()
        status = outputs[2].replace("\\", "")
        assert "Also upload the prompts" in status and "still loaded (3 pairs)" in status
        assert all(isinstance(value, type(gr.skip())) for i, value in enumerate(outputs) if i not in (0, 2))
    finally:
        cset.close()
