"""The Gradio app around the tiny random model: served in-process, driven through gradio_client; plus its handlers
and its formatting without a server. CPU only, a few seconds."""
from __future__ import annotations

import copy
import os
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

import app
from omnimamba.engine import Engine
from omnimamba.metrics import RequestMetrics
from omnimamba.config import EOS_ID
from omnimamba.sampling import SamplingParams
from omnimamba.compare import CompareError, Item, write_manifest
from demo.showo_set import BASE_SEED, SET_MANIFEST
from demo.format import header_html, md_escape, pair_table, panel_html

ROOT = Path(__file__).resolve().parents[2]
HOUSE = ROOT / "assets" / "examples" / "house.png"
WAIT_S = 60  # no single call below should come near this
METRIC_FIELDS = {"task", "device", "dtype", "backend", "tokens", "steps", "ttft_s", "decode_tokens_per_s",
                 "ms_per_step", "total_s", "peak_vram_gib", "vram_in_use_gib", "vram_total_gib", "done",
                 "stop_reason", "seed", "note"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def engine(tiny_model_shared, tokenizer) -> Engine:
    return Engine(copy.deepcopy(tiny_model_shared), tokenizer, label="tiny-random (test)", use_cuda_graphs=False)


@pytest.fixture(scope="module")
def served(engine):
    demo = app.build_demo(engine)
    url = app.serve(demo, host="127.0.0.1", port=free_port(), block=False, queue_size=8)
    try:
        yield engine, Client(url, verbose=False, download_files=False)
    finally:
        demo.close()


def chat(client: Client, image=None, question="What is in the picture?", session="", max_new_tokens=12,
         temperature=1.0, top_k=1, top_p=0.0, seed=-1):
    job = client.submit(handle_file(str(image)) if image else None, question, session, max_new_tokens,
                        temperature, top_k, top_p, seed, api_name="/chat")
    job.result(timeout=WAIT_S)
    return job.outputs()


def text_to_image(client: Client, prompt="a red cube on a table", num_images=2, seed=7, temperature=1.0, top_k=0,
                  top_p=0.0, guidance_scale=1.0, previews=True):
    job = client.submit(prompt, num_images, seed, temperature, top_k, top_p, guidance_scale, previews,
                        api_name="/text_to_image")
    job.result(timeout=WAIT_S)
    return job.outputs()


# ---------------------------------------------------------------------------------------------- through the API
def test_the_api_names_its_endpoints(served):
    _, client = served
    api = client.view_api(print_info=False, return_format="dict")
    assert {"/chat", "/text_to_image", "/compare_text_to_image", "/compare_chat", "/compare_load",
            "/compare_pair"} <= set(api["named_endpoints"])


def test_chat_streams_text_and_metrics_and_a_follow_up_reuses_the_state(served):
    engine, client = served
    outputs = chat(client, HOUSE, max_new_tokens=12)
    texts = [text for text, _, _ in outputs]
    assert len(outputs) >= 3 and len(set(texts)) >= 3, "the answer should arrive in several updates"
    assert all(texts[i + 1].startswith(texts[i]) for i in range(len(texts) - 1))
    text, metrics, session = outputs[-1]
    assert METRIC_FIELDS <= set(metrics)
    assert metrics["task"] == "chat" and metrics["device"] == "CPU" and metrics["done"]
    assert 1 <= metrics["tokens"] <= 12 and metrics["ttft_s"] > 0 and metrics["vram_total_gib"] is None
    assert not outputs[0][1]["done"], "metrics stream too, not only at the end"

    live = engine.sessions[session]
    before, pending = live.state.seqlen, list(live.pending)
    outputs = chat(client, question="And the colours?", session=session, max_new_tokens=5)
    assert outputs[-1][2] == session and engine.sessions[session].turns == 2
    fed = engine.sessions[session].state.seqlen - before  # only the new turn, not the image again
    turn = len(engine.tokenizer.chat_turn("And the colours?"))
    assert fed == len(pending) + (pending != [EOS_ID]) + turn + outputs[-1][1]["tokens"] - 1


def test_text_to_image_streams_previews_then_final_pngs(served):
    _, client = served
    outputs = text_to_image(client, num_images=2, seed=7)
    with_images = [images for images, _ in outputs if images]
    assert len(with_images) >= 2, "previews first, then the final images"
    final, metrics = outputs[-1]
    assert len(final) == 2
    for item in final:
        with Image.open(item["image"]["path"]) as image:
            assert image.size == (64, 64) and image.format == "PNG"
    assert METRIC_FIELDS <= set(metrics) and {"rows_done"} <= set(metrics)
    assert metrics["task"] == "t2i" and metrics["done"] and metrics["tokens"] == 2 * 64 and metrics["seed"] == 7
    assert [m["done"] for _, m in outputs].count(True) == 1

    again = text_to_image(client, num_images=2, seed=7, previews=False)
    assert [images for images, _ in again if images] == [again[-1][0]], "no previews when they are off"
    for a, b in zip(final, again[-1][0]):
        assert Image.open(a["image"]["path"]).tobytes() == Image.open(b["image"]["path"]).tobytes()


def test_a_long_prompt_is_truncated_with_a_note(served):
    _, client = served
    _, metrics = text_to_image(client, prompt="a very long prompt " * 20, num_images=1, previews=False)[-1]
    assert "truncated" in metrics["note"]


def write_png_header(path: Path, width: int, height: int) -> Path:
    """A PNG that claims `width` x `height` pixels but holds almost nothing: a decompression bomb's header."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


@pytest.mark.parametrize("call, message", [
    (lambda c, tmp: chat(c, question="   "), "empty"),
    (lambda c, tmp: chat(c, top_p=2.0), "top_p"),
    (lambda c, tmp: chat(c, seed=1.5), "seed"),
    (lambda c, tmp: chat(c, max_new_tokens=0), "max new tokens"),
    (lambda c, tmp: chat(c, session="no-such-session"), "expired"),
    (lambda c, tmp: chat(c, image=tmp / "notes.txt"), "Invalid file type"),
    (lambda c, tmp: chat(c, image=tmp / "fake.png"), "could not be read as an image"),
    (lambda c, tmp: chat(c, image=write_png_header(tmp / "bomb.png", 30_000, 30_000)), "too large"),
    (lambda c, tmp: chat(c, image=write_png_header(tmp / "big.png", 8_000, 6_000)), "megapixels"),
    (lambda c, tmp: text_to_image(c, prompt=""), "empty"),
    (lambda c, tmp: text_to_image(c, num_images=9), "number of images"),
    (lambda c, tmp: text_to_image(c, temperature=-1.0), "temperature"),
    (lambda c, tmp: text_to_image(c, guidance_scale=50.0), "guidance"),
], ids=["empty-question", "top-p", "seed", "max-tokens", "session", "text-file", "not-an-image", "bomb",
        "48-megapixels", "empty-prompt", "nine-images", "temperature", "guidance"])
def test_bad_input_is_a_message_and_the_server_keeps_serving(served, tmp_path, call, message):
    engine, client = served
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "fake.png").write_text("not an image either")
    with pytest.raises(AppError, match=message) as error:
        call(client, tmp_path)
    assert "Traceback" not in str(error.value)
    assert not engine.lock.locked()
    assert chat(client, max_new_tokens=2)[-1][1]["done"]


def test_a_cancelled_request_frees_the_engine(served):
    engine, client = served
    job = client.submit(None, "Tell me a long story.", "", 150, 1.0, 1, 0.0, -1, api_name="/chat")
    deadline = time.monotonic() + WAIT_S
    while len(job.outputs()) < 2 and not job.done() and time.monotonic() < deadline:
        time.sleep(0.01)
    job.cancel()
    outputs = chat(client, max_new_tokens=3)
    assert outputs[-1][1]["done"] and not engine.lock.locked()


def test_gpu_handlers_share_one_queue(engine):
    demo = app.build_demo(engine)
    gpu = {fn.name: fn for fn in demo.fns.values() if fn.concurrency_id == app.GPU_QUEUE}
    assert {"respond", "images", "api_chat", "api_text_to_image", "compare_images_ui", "compare_answers_ui",
            "api_compare_images", "api_compare_answers", "make_pair", "make_all", "api_compare_pair"} <= set(gpu)
    assert all(fn.concurrency_limit == 1 for fn in gpu.values())
    public = {fn.api_name for fn in demo.fns.values() if fn.api_visibility == "public"}
    assert {"chat", "text_to_image"} <= public


# ---------------------------------------------------------------------------------------------- handlers directly
def run_turn(ui: app.App, message: dict, history: list, conv: app.Conversation, **settings):
    history, _, conv = ui.add_message(message, history, conv)
    values = dict(max_new_tokens=6, temperature=1.0, top_k=1, top_p=0.0, seed=-1) | settings
    outputs = list(ui.respond(history, conv, *values.values()))
    return outputs[-1][0], outputs[-1][1], outputs


def test_ui_chat_turns_retry_and_a_lost_session_rebuild_the_same_context(engine):
    ui = app.App(engine)
    history, conv, outputs = run_turn(ui, {"text": "What is it?", "files": [str(HOUSE)]}, [], app.Conversation())
    assert history[0]["content"] == {"path": str(HOUSE)} and history[-1]["role"] == "assistant"
    assert "data-live=\"true\"" in outputs[1][2] and "data-live=\"false\"" in outputs[-1][2]
    history, conv, _ = run_turn(ui, {"text": "Colours?", "files": []}, history, conv, top_k=0, seed=5)
    first_answer = history[-1]["content"]
    assert len(conv.turns) == 2 and conv.turns[1].params == SamplingParams(1.0, 0, 0.0, 5)

    history, conv, _ = ui.retry(history, conv)  # the same settings again: a replayed context gives the same answer
    outputs = list(ui.respond(history, conv, 6, 1.0, 0, 0.0, 5))
    assert outputs[-1][0][-1]["content"] == first_answer and len(outputs[-1][0]) == len(history) + 1

    engine.end_session(conv.session_id)  # as if evicted: the next turn rebuilds it from the recorded turns
    history, conv, _ = run_turn(ui, {"text": "More?", "files": []}, outputs[-1][0], outputs[-1][1])
    assert engine.sessions[conv.session_id].turns == 3

    history, _, conv = ui.add_message({"text": "", "files": [str(HOUSE)]}, history, conv)
    assert conv.turns == [] and conv.pending == app.DEFAULT_QUESTION and len(history) == 2, "new image, new chat"


def test_ui_refuses_bad_messages_before_the_gpu(engine, tmp_path):
    ui = app.App(engine)
    (tmp_path / "x.png").write_bytes(b"not a png")
    for message in [{"text": "  ", "files": []}, {"text": "hi", "files": [str(tmp_path / "x.png")]},
                    {"text": "x" * (app.MAX_QUESTION_CHARS + 1), "files": []}, None]:
        with pytest.raises(app.gr.Error):
            ui.add_message(message, [], app.Conversation())
    with pytest.raises(app.gr.Error, match="no answer to retry"):
        ui.retry([], app.Conversation())


def test_ui_images_streams_previews_and_notes(engine):
    ui = app.App(engine)
    outputs = list(ui.images("a blue ball", 3, 11, 1.0, 0, 0.0, 1.0, True))
    gallery, note, panel = outputs[-1]
    assert len(gallery.value) == 3 and gallery.columns == 3 and "seed `11`" in note and "64×64" in note
    assert "Generating" in outputs[0][1] and "row" in outputs[0][2]


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


# ---------------------------------------------------------------------------------------------- command line
def test_without_weights_the_app_fails_fast_with_the_loaders_message(tmp_path):
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "OMNIMAMBA_CACHE": str(tmp_path)}
    env.pop("OMNIMAMBA_TOKENIZER", None)
    done = subprocess.run([sys.executable, str(ROOT / "app.py"), "--offline", "--port", str(free_port())],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=WAIT_S)
    assert done.returncode != 0 and "error:" in done.stderr and "Traceback" not in done.stderr
    assert "Running on" not in done.stdout


def test_flags_fall_back_to_environment_variables(monkeypatch):
    monkeypatch.setenv("OMNIMAMBA_MODEL", "tiny-random")
    monkeypatch.setenv("OMNIMAMBA_PORT", "7999")
    args = app.parse_args([])
    assert args.model == "tiny-random" and args.port == 7999 and args.host == "127.0.0.1" and not args.share
    assert app.parse_args(["--model", "x", "--share"]).model == "x"


# ---------------------------------------------------------------------------------------------- compare
def test_compare_endpoints_record_both_sides(served, tmp_path):
    _, client = served
    showo = tmp_path / "showo.png"
    Image.new("RGB", (256, 256), (200, 40, 40)).save(showo)
    job = client.submit("A red apple on a white plate.", 3, handle_file(str(showo)), 1.0, 1, 0.0, 1.0,
                        api_name="/compare_text_to_image")
    picture, record = job.result(timeout=WAIT_S)
    with Image.open(picture["path"] if isinstance(picture, dict) else picture) as grid:
        assert grid.width > 2 * 64, "a grid page: Show-o left, OmniMamba right"
    assert record["showo"]["resolution"] == 256 and record["omnimamba"]["resolution"] == 64
    assert record["omnimamba"]["seed"] == 3 and record["omnimamba"]["image"] == "t2i_000.png"
    assert record["omnimamba"]["seconds"] > 0 and record["showo"]["seconds"] is None, "one upload: no Show-o time"

    job = client.submit(handle_file(str(HOUSE)), "What colour is the roof?", "Red.", 5, 1.0, 1, 0.0, 0,
                        api_name="/compare_chat")
    answer, record = job.result(timeout=WAIT_S)
    assert answer == record["omnimamba"]["answer"] and record["showo"]["answer"] == "Red."
    assert record["omnimamba"]["image"] == record["showo"]["image"] == "house.png"
    assert record["omnimamba"]["seed"] == 0 and record["omnimamba"]["seconds"] > 0


def file_path(value) -> str:
    """A file value as a path, whether a component or the client gives it as a path or as FileData."""
    return value["path"] if isinstance(value, dict) else value.path if hasattr(value, "path") else str(value)


def write_showo_set(folder: Path, sizes=(256, 256, 256)) -> list[Path]:
    """Show-o's outputs as its script names them (img_10 after img_2) and the prompts file they were made from."""
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for number, size in zip((1, 2, 10), sizes):
        images.append(folder / f"img_{number}.png")
        Image.new("RGB", (size, size), (20 * number, 90, 160)).save(images[-1])
    (folder / "prompts.txt").write_text("A red apple.\nA blue car.\nA green tree.\n")
    return images + [folder / "prompts.txt"]


def write_showo_manifest(folder: Path) -> list[Path]:
    """A manifest in Show-o's run folder naming images under images/, with seeds and times; one image chat."""
    (folder / "images").mkdir(parents=True)
    Image.new("RGB", (512, 512), "orange").save(folder / "images" / "000.png")
    Image.open(HOUSE).save(folder / "images" / "house.png")
    items = [Item("t2i", "An orange sun.", image=str(folder / "images" / "000.png"), seed=42, resolution=512,
                  sampler={"steps": 50, "guidance_scale": 5.0}, seconds=3.25, peak_vram_gib=9.5, model="showlab/show-o",
                  device="NVIDIA H100 80GB HBM3 (bfloat16)"),
             Item("mmu", "What is this?", image=str(folder / "images" / "house.png"), answer="A house.", seed=7,
                  seconds=0.8, model="showlab/show-o")]
    return [write_manifest(items, folder / "manifest.jsonl"), folder / "images" / "000.png",
            folder / "images" / "house.png"]


def test_the_api_loads_a_showo_set_and_compares_it_pair_by_pair(served, tmp_path):
    _, client = served
    files = write_showo_manifest(tmp_path / "run")
    loaded = client.predict([handle_file(str(f)) for f in files], "", api_name="/compare_load")
    assert loaded["pairs"] == 2 and [item["task"] for item in loaded["showo"]] == ["t2i", "mmu"]
    assert loaded["showo"][0]["seconds"] == 3.25 and loaded["showo"][0]["image"] == "000.png"

    picture, record = client.predict(1, -1, 1.0, 1, 0.0, 1.0, 8, api_name="/compare_pair")
    showo, ours = record["showo"], record["omnimamba"]
    assert record["pair"] == 1 and showo["seconds"] == 3.25 and showo["seed"] == 42 and showo["peak_vram_gib"] == 9.5
    assert ours["seed"] == 42 and ours["seconds"] > 0, "the default seed is Show-o's"
    assert ours["resolution"] == 64 and Image.open(file_path(picture)).size == (64, 64)

    picture, record = client.predict(2, 5, 1.0, 1, 0.0, 1.0, 6, api_name="/compare_pair")
    assert picture is None and record["showo"]["answer"] == "A house." and record["omnimamba"]["answer"]
    assert record["omnimamba"]["seed"] == 5 and record["omnimamba"]["seconds"] > 0 and record["showo"]["seconds"] == 0.8
    assert record["omnimamba"]["image"] == record["showo"]["image"] == "house.png"

    with pytest.raises(AppError, match="pair must be a whole number in 1..2"):
        client.predict(3, -1, 1.0, 1, 0.0, 1.0, 6, api_name="/compare_pair")
    mismatched = write_showo_set(tmp_path / "folder")[1:]  # two images, three prompts
    with pytest.raises(AppError, match="2 images uploaded but prompts.txt has 3 prompts") as error:
        client.predict([handle_file(str(f)) for f in mismatched], "", api_name="/compare_load")
    assert "Traceback" not in str(error.value) and "/tmp" not in str(error.value)
    with pytest.raises(AppError, match="path on the server is turned off"):
        client.predict([], str(tmp_path / "run" / "manifest.jsonl"), api_name="/compare_load")


# ---------------------------------------------------------------------------------------------- compare: a Show-o set
def test_a_folder_upload_pairs_image_i_with_prompt_line_i_in_natural_order(tmp_path):
    files = write_showo_set(tmp_path / "upload")
    cset = app.load_showo_set([str(f) for f in reversed(files)], None, allow_paths=False)
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
        app.load_showo_set([str(f) for f in pick(files)], "", allow_paths=False)
    assert str(tmp_path) not in str(error.value) and "omnimamba-set-" not in str(error.value)
    with pytest.raises(app.gr.Error, match=message):  # as the app's handler shows it
        app.user_errors(app.load_showo_set)([str(f) for f in pick(files)], "", False)


def test_a_manifest_upload_finds_its_images_by_name_and_reads_nothing_else(tmp_path):
    files = write_showo_manifest(tmp_path / "run")
    cset = app.load_showo_set([str(f) for f in files], None, allow_paths=False)
    assert [i.task for i in cset.showo] == ["t2i", "mmu"] and cset.default_seed(0) == 42
    assert all(Path(i.image).parent == Path(cset.folder) for i in cset.showo)
    cset.close()
    with pytest.raises(CompareError, match=r"names 1 image\(s\) that were not uploaded: house.png"):
        app.load_showo_set([str(f) for f in files[:2]], None, allow_paths=False)
    outside = tmp_path / "evil.jsonl"
    outside.write_text('{"task": "t2i", "prompt": "x", "image": "/etc/secret.png"}\n')
    with pytest.raises(CompareError, match="secret.png"):
        app.load_showo_set([str(outside)], None, allow_paths=False)


def test_a_server_path_loads_only_when_allowed(tmp_path):
    write_showo_set(tmp_path / "out")
    with pytest.raises(CompareError, match="turned off"):
        app.load_showo_set(None, str(tmp_path / "out"), allow_paths=False)
    cset = app.load_showo_set(None, str(tmp_path / "out"), allow_paths=True)  # prompts.txt kept in the folder
    assert len(cset.showo) == 3 and cset.source.endswith("out + prompts.txt")
    cset.close()
    (tmp_path / "out" / "prompts.txt").unlink()
    with pytest.raises(CompareError, match="also upload the prompts .txt"):
        app.load_showo_set(None, str(tmp_path / "out"), allow_paths=True)


def test_browsing_a_set_makes_each_side_once_and_shows_it_again_instantly(engine, tmp_path, monkeypatch):
    ui = app.App(engine)
    files = write_showo_set(tmp_path, sizes=(256, 512, 256))
    cset, picker, status, download, *view = ui.load_set([str(f) for f in files], "", app.CompareSet())
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
        list(ui.make_pair(app.CompareSet(), 0, None, 1.0, 1, 0.0, 1.0, 8))
    cset.close()


def test_an_image_chat_pair_shows_the_image_once_and_both_answers(engine, tmp_path):
    ui = app.App(engine)
    files = write_showo_manifest(tmp_path / "run")
    cset = ui.load_set([str(f) for f in files], "", app.CompareSet())[0]
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
    app.warm_up(engine)
    assert not engine.lock.locked()
