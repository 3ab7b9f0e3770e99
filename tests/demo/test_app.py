"""The Gradio app around the tiny random model: served in-process, driven through gradio_client; plus its handlers
and its formatting without a server. CPU only, a few seconds."""
from __future__ import annotations

import copy
import os
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image


import app
from demo import gpu
from demo.gpu import gpu_slots
from demo.launch import parse_args
from omnimamba.engine import Engine
from omnimamba.config import EOS_ID

from .showo_files import file_path, write_showo_manifest, write_showo_set

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
        yield engine, Client(url, verbose=False, download_files=False, httpx_kwargs={"timeout": 120})
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


def test_the_api_takes_keywords_and_fills_in_the_rest(served):
    _, client = served
    answer, metrics, session = client.predict(question="What is it?", max_new_tokens=2, api_name="/chat")
    assert isinstance(answer, str) and session and metrics["tokens"] <= 2 and metrics["seed"] >= 0
    assert metrics["backend"] and metrics["done"]
    names = [p["parameter_name"] for p in client.view_api(print_info=False, return_format="dict")
             ["named_endpoints"]["/text_to_image"]["parameters"]]
    assert names == ["prompt", "num_images", "seed", "temperature", "top_k", "top_p", "guidance_scale", "previews"]


def test_text_to_image_streams_previews_then_final_pngs(served):
    _, client = served
    outputs = text_to_image(client, num_images=2, seed=7)
    with_images = [images for images, _ in outputs if images]
    assert len(with_images) >= 2, "previews first, then the final images"
    final, metrics = outputs[-1]
    assert len(final) == 2
    for item in final:
        with Image.open(item["path"]) as image:
            assert image.size == (64, 64) and image.format == "PNG"
    assert METRIC_FIELDS <= set(metrics) and {"rows_done"} <= set(metrics)
    assert metrics["task"] == "t2i" and metrics["done"] and metrics["tokens"] == 2 * 64 and metrics["seed"] == 7
    assert [m["done"] for _, m in outputs].count(True) == 1

    again = text_to_image(client, num_images=2, seed=7, previews=False)
    assert [images for images, _ in again if images] == [again[-1][0]], "no previews when they are off"
    for a, b in zip(final, again[-1][0]):
        assert Image.open(a["path"]).tobytes() == Image.open(b["path"]).tobytes()


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
    (lambda c, tmp: chat(c, image=tmp / "notes.txt"), "could not be read as an image"),
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


def test_a_batching_app_lets_requests_in_together_and_a_single_one_does_not(tiny_model_shared, tokenizer):
    def most_at_once(batching: bool) -> int:
        """How many chat requests were inside the engine at once while two clients asked together (counted on
        the server: what a client sees of two streams lags behind it)."""
        engine = Engine(copy.deepcopy(tiny_model_shared), tokenizer, use_cuda_graphs=False, batching=batching)
        inside, most, lock = 0, 0, threading.Lock()
        real_chat = engine.chat

        def counted_chat(*args, **kwargs):
            nonlocal inside, most
            with lock:
                inside += 1
                most = max(most, inside)
            try:
                yield from real_chat(*args, **kwargs)
            finally:
                with lock:
                    inside -= 1

        engine.chat = counted_chat
        demo = app.build_demo(engine)
        url = app.serve(demo, host="127.0.0.1", port=free_port(), block=False, queue_size=8,
                        slots=gpu_slots(batching))
        try:
            client = Client(url, verbose=False, download_files=False, httpx_kwargs={"timeout": 120})
            jobs = [client.submit(None, "Tell me a long story.", "", 1000, 1.0, 1, 0.0, -1, api_name="/chat")
                    for _ in range(2)]
            # until both are in (batching) or the second one streams (one at a time: after the first has ended)
            deadline = time.monotonic() + WAIT_S
            while (time.monotonic() < deadline and most < 2 and not all(j.done() for j in jobs)
                   and min(len(j.outputs()) for j in jobs) < 2):
                time.sleep(0.005)
            for job in jobs:
                job.cancel()
            return most
        finally:
            demo.close()
            engine.close()

    assert most_at_once(batching=True) == 2
    assert most_at_once(batching=False) == 1


def test_batching_follows_the_flag_and_stays_off_on_zero_gpu(monkeypatch):
    assert parse_args([]).batching == "auto" and parse_args(["--batching", "off"]).batching == "off"
    assert gpu.wants_batching("auto") and gpu.wants_batching("on") and not gpu.wants_batching("off")
    monkeypatch.setattr(gpu, "ZERO_GPU", True)
    assert not gpu.wants_batching("auto")
    assert gpu_slots(True) == 16 and gpu_slots(False) == 1


def test_the_image_tab_starts_from_the_models_suggested_settings(tiny_model_shared, tokenizer):
    from omnimamba.sampling import ImageDefaults

    def start_values(engine: Engine) -> list:
        demo = app.build_demo(engine)
        (images,) = [fn for fn in demo.fns.values() if fn.name == "images"]
        return [c.value for c in images.inputs[3:7]]  # temperature, top-k, top-p, guidance

    official = Engine(copy.deepcopy(tiny_model_shared), tokenizer, use_cuda_graphs=False)
    assert start_values(official) == [1.0, 1, 0.0, 1.0]  # greedy, no guidance: the official setting
    suggested = ImageDefaults(temperature=0.9, top_k=0, top_p=0.0, guidance_scale=3.0)
    shapes_like = Engine(copy.deepcopy(tiny_model_shared), tokenizer, use_cuda_graphs=False, image_defaults=suggested)
    assert start_values(shapes_like) == [0.9, 0, 0.0, 3.0]


def test_a_page_view_copies_no_weights(engine, monkeypatch):
    import gradio.utils
    import torch

    demo = app.build_demo(engine)
    config = demo.get_config_file()
    copied = []
    monkeypatch.setattr(torch.nn.Parameter, "__deepcopy__", lambda self, memo: copied.append(self) or self)
    monkeypatch.setattr(torch.Tensor, "__deepcopy__", lambda self, memo: copied.append(self) or self)
    gradio.utils.safe_deepcopy(config["components"])  # what Gradio does to the config on every page view
    assert copied == [], f"a page view deep-copies {len(copied)} tensors (a component property holds the engine)"


def test_gpu_handlers_share_one_queue(engine):
    demo = app.build_demo(engine)
    gpu = {fn.name: fn for fn in demo.fns.values() if fn.concurrency_id == app.GPU_QUEUE}
    assert {"respond", "images", "chat", "text_to_image", "compare_images_ui", "compare_answers_ui",
            "compare_text_to_image", "compare_chat", "make_pair", "make_all", "compare_pair"} <= set(gpu)
    assert all(fn.concurrency_limit == "default" for fn in gpu.values())  # the queue's width, set at launch
    public = {fn.api_name for fn in demo.fns.values() if fn.api_visibility == "public"}
    assert public == {"chat", "text_to_image", "compare_text_to_image", "compare_chat", "compare_load",
                      "compare_pair"}, "the page's own events stay private"


def test_on_zero_gpu_each_api_call_reserves_what_its_arguments_ask_for(engine, monkeypatch):
    import functools

    from gradio.utils import get_function_params

    asked = []

    class FakeSpaces:  # the `spaces` package's decorator: functools.wraps around the handler, duration(*args)
        @staticmethod
        def GPU(duration):
            def decorate(fn):
                @functools.wraps(fn)
                def stream(*args, **kwargs):
                    asked.append(duration(*args, **kwargs))
                    yield from fn(*args, **kwargs)
                return stream
            return decorate

    monkeypatch.setattr(gpu, "spaces", FakeSpaces)
    demo = app.build_demo(engine)
    chat_fn = next(fn for fn in demo.fns.values() if fn.api_name == "chat")
    outputs = list(chat_fn.fn(None, "Hello", "", 7, 1.0, 1, 0.0, 0))
    assert asked == [gpu.seconds(tokens=7)] and outputs[-1][1]["done"]
    params = [name for name, *_ in get_function_params(chat_fn.fn)]  # what gr.api published
    assert params == ["image", "question", "session_id", "max_new_tokens", "temperature", "top_k", "top_p", "seed"]


# ---------------------------------------------------------------------------------------------- command line
def test_without_weights_the_official_model_fails_fast_with_the_loaders_message(tmp_path):
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "OMNIMAMBA_CACHE": str(tmp_path)}
    env.pop("OMNIMAMBA_TOKENIZER", None)
    done = subprocess.run([sys.executable, str(ROOT / "app.py"), "--offline", "--model", "hustvl/OmniMamba",
                           "--port", str(free_port())],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=WAIT_S)
    assert done.returncode != 0 and "error:" in done.stderr and "Traceback" not in done.stderr
    assert "OmniMamba weights" in done.stderr and "--model /path/to/OmniMamba-1.3b.pth" in done.stderr
    assert "tokenizer" not in done.stderr, "the tokenizer ships with the package"
    assert "Running on" not in done.stdout


def test_flags_fall_back_to_environment_variables(monkeypatch):
    monkeypatch.setenv("OMNIMAMBA_MODEL", "tiny-random")
    monkeypatch.setenv("OMNIMAMBA_PORT", "7999")
    args = parse_args([])
    assert args.model == "tiny-random" and args.port == 7999 and args.host == "127.0.0.1" and not args.share
    assert parse_args(["--model", "x", "--share"]).model == "x"
    assert not args.int8_decode and parse_args(["--int8-decode"]).int8_decode
    monkeypatch.setenv("OMNIMAMBA_INT8_DECODE", "1")
    assert parse_args([]).int8_decode
    monkeypatch.delenv("OMNIMAMBA_INT8_DECODE")
    assert not args.bf16_decode and parse_args(["--bf16-decode"]).bf16_decode
    with pytest.raises(SystemExit):
        parse_args(["--bf16-decode", "--int8-decode"])


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


def test_the_api_loads_a_showo_set_and_compares_it_pair_by_pair(served, tmp_path):
    _, client = served
    files = write_showo_manifest(tmp_path / "run")
    loaded = client.predict([handle_file(str(f)) for f in files], "", api_name="/compare_load")
    set_id = loaded["set_id"]
    assert loaded["pairs"] == 2 and [item["task"] for item in loaded["showo"]] == ["t2i", "mmu"]
    assert loaded["showo"][0]["seconds"] == 3.25 and loaded["showo"][0]["image"] == "000.png"

    picture, record = client.predict(set_id, 1, -1, 1.0, 1, 0.0, 1.0, 8, api_name="/compare_pair")
    showo, ours = record["showo"], record["omnimamba"]
    assert record["pair"] == 1 and showo["seconds"] == 3.25 and showo["seed"] == 42 and showo["peak_vram_gib"] == 9.5
    assert ours["seed"] == 42 and ours["seconds"] > 0, "the default seed is Show-o's"
    assert ours["resolution"] == 64 and Image.open(file_path(picture)).size == (64, 64)

    picture, record = client.predict(set_id, 2, 5, 1.0, 1, 0.0, 1.0, 6, api_name="/compare_pair")
    assert picture is None and record["showo"]["answer"] == "A house." and record["omnimamba"]["answer"]
    assert record["omnimamba"]["seed"] == 5 and record["omnimamba"]["seconds"] > 0 and record["showo"]["seconds"] == 0.8
    assert record["omnimamba"]["image"] == record["showo"]["image"] == "house.png"

    with pytest.raises(AppError, match="pair must be a whole number in 1..2"):
        client.predict(set_id, 3, -1, 1.0, 1, 0.0, 1.0, 6, api_name="/compare_pair")
    with pytest.raises(AppError, match="Unknown or expired set_id"):
        client.predict("not-a-set", 1, -1, 1.0, 1, 0.0, 1.0, 6, api_name="/compare_pair")
    # another client's load gets its own set: the first one still answers
    other = client.predict([handle_file(str(f)) for f in files[:1] + files[1:]], "", api_name="/compare_load")
    assert other["set_id"] != set_id
    assert client.predict(set_id, 2, 5, 1.0, 1, 0.0, 1.0, 6, api_name="/compare_pair")[1]["pair"] == 2
    mismatched = write_showo_set(tmp_path / "folder")[1:]  # two images, three prompts
    with pytest.raises(AppError, match="2 images uploaded but prompts.txt has 3 prompts") as error:
        client.predict([handle_file(str(f)) for f in mismatched], "", api_name="/compare_load")
    assert "Traceback" not in str(error.value) and "/tmp" not in str(error.value)
    with pytest.raises(AppError, match="path on the server is turned off"):
        client.predict([], str(tmp_path / "run" / "manifest.jsonl"), api_name="/compare_load")


# ---------------------------------------------------------------------------------------------- compare: a Show-o set


# ---------------------------------------------------------------------------------------------- issue 13 through the API
def test_a_question_that_does_not_fit_and_a_full_chat_are_messages(served):
    engine, client = served
    with pytest.raises(AppError, match="holds at most"):
        chat(client, HOUSE, question="why " * 200)
    session = chat(client, HOUSE, question="Describe it.", max_new_tokens=1024, top_k=0, seed=3)[-1][2]
    with pytest.raises(AppError, match="This conversation is full") as error:
        for _ in range(40):
            chat(client, question="And what else is there?", session=session, max_new_tokens=1024, top_k=0, seed=3)
    assert "Start a new chat" in str(error.value) and not engine.lock.locked()
    assert chat(client, max_new_tokens=2)[-1][1]["done"]


def raw_call(client: Client, api: str, data: str) -> str:
    """An API call sent as raw JSON text (it may hold NaN, which gradio_client cannot send); the event stream."""
    import httpx

    base = client.src.rstrip("/")
    posted = httpx.post(f"{base}/gradio_api/call/{api}", content='{"data": ' + data + "}",
                        headers={"Content-Type": "application/json"}, timeout=WAIT_S)
    event_id = posted.json()["event_id"]
    return httpx.get(f"{base}/gradio_api/call/{api}/{event_id}", timeout=WAIT_S).text


@pytest.mark.parametrize("api, data", [
    ("chat", '[null, "What is it?", "", NaN, 1.0, 1, 0.0, -1]'),
    ("chat", '[null, "What is it?", "", Infinity, 1.0, 1, 0.0, -1]'),
    ("text_to_image", '["a red cube", NaN, 7, 1.0, 1, 0.0, 1.0, false]'),
], ids=["nan-tokens", "inf-tokens", "nan-images"])
def test_not_a_number_is_a_message(served, api, data):
    _, client = served
    stream = raw_call(client, api, data)
    assert "event: error" in stream and "must be a whole number" in stream, stream
    assert "null" not in stream.split("event: error", 1)[1].splitlines()[1], stream


@pytest.mark.parametrize("api, data, message", [
    ("chat", '[null, 5, "", 8, 1.0, 1, 0.0, -1]', "question must be text"),
    ("text_to_image", '[["a", "list"], 1, 7, 1.0, 1, 0.0, 1.0, false]', "prompt must be text"),
    ("text_to_image", '["a red cube", 1, 7, 1.0, 1, 0.0, "strong", false]', "guidance scale must be in"),
    ("chat", '["/etc/passwd", "What is it?", "", 8, 1.0, 1, 0.0, -1]', "handle_file"),
], ids=["number-question", "list-prompt", "text-guidance", "bare-path"])
def test_json_of_the_wrong_kind_is_a_message(served, api, data, message):
    _, client = served
    stream = raw_call(client, api, data)
    assert "event: error" in stream and message in stream, stream


def test_compare_load_refuses_huge_images_before_decoding_them_and_runs_two_at_a_time(served, engine, tmp_path):
    _, client = served
    files = write_showo_set(tmp_path / "folder")
    write_png_header(files[0], 13_000, 13_000)
    with pytest.raises(AppError, match="megapixels"):
        client.predict([handle_file(str(f)) for f in files], "", api_name="/compare_load")
    demo = app.build_demo(engine)
    loads = [fn for fn in demo.fns.values() if fn.concurrency_id == "compare_load"]
    assert len(loads) == 2 and all(fn.concurrency_limit == 2 for fn in loads), "the API's and the tab's"


def exif_rotated(path: Path) -> Path:
    """A 40x20 JPEG whose EXIF says: turn me 90 degrees (a phone photo taken upright)."""
    image = Image.new("RGB", (40, 20), "blue")
    exif = image.getexif()
    exif[0x0112] = 6
    image.save(path, exif=exif)
    return path


def test_every_door_sees_a_photo_upright(served, tmp_path, monkeypatch):
    engine, client = served
    photo, seen = exif_rotated(tmp_path / "photo.jpg"), []
    new_session = engine.new_session
    monkeypatch.setattr(engine, "new_session", lambda image=None: seen.append(image.size) or new_session(image))
    chat(client, photo, max_new_tokens=2)
    client.predict(handle_file(str(photo)), "What is it?", "", 2, 1.0, 1, 0.0, 0, api_name="/compare_chat")
    from omnimamba.cli import main
    main(["chat", "--model", "tiny-random", "--image", str(photo), "--question", "hi", "--max-new-tokens", "2",
          "--device", "cpu"])
    assert seen[:2] == [(20, 40), (20, 40)]


def test_the_default_model_is_the_shipped_one_with_a_banner(tmp_path, monkeypatch):
    from omnimamba import hub
    from omnimamba.cli import open_engine
    from tests.test_model_choice import write_packed

    shipped = tmp_path / "shapes" / "weights" / "model.safetensors"
    write_packed(shipped)
    monkeypatch.setattr(hub, "SHIPPED_SHAPES", shipped)
    monkeypatch.setattr(hub, "official_cached", lambda *args, **kwargs: False)
    engine, choice = open_engine(None, device="cpu")
    assert "shapes" in engine.info()["model"] and choice.model == str(shipped)
    header = app.header_html({**engine.info(), "size": app.model_size(engine.model)}, choice.notice)
    assert "om-banner" in header and "python -m omnimamba download" in header
    assert "one 1.3B-parameter" not in header and "-parameter Mamba-2 model" in header, "the real size"


def test_a_clients_session_owner_reaches_an_engine_that_takes_one(served, monkeypatch):
    """Issue 13 item 22, the app's side: when the engine bounds sessions per owner (new_session(..., owner=)), each
    API client's chats are opened under its own Gradio session."""
    engine, client = served
    owners, new_session = [], engine.new_session

    def per_owner(image=None, owner=None):
        owners.append(owner)
        return new_session(image)
    monkeypatch.setattr(engine, "new_session", per_owner)
    chat(client, max_new_tokens=2)
    other = Client(client.src, verbose=False, download_files=False, httpx_kwargs={"timeout": 120})
    chat(other, max_new_tokens=2)
    assert len(owners) == 2 and all(owners) and owners[0] != owners[1]


def test_a_remote_api_client_downloads_the_images_it_is_sent(served, tmp_path):
    """`predict` fetches each returned file over HTTP, as a client on another machine must: the app serves the
    files its endpoints write (a 403 here once left API users with paths they could not open)."""
    _, client = served
    remote = Client(client.src, verbose=False, download_files=str(tmp_path))  # the default: fetch every file
    paths, metrics = remote.predict("a red cube on a table", 1, 7, 1.0, 0, 0.0, 1.0, False, api_name="/text_to_image")
    assert metrics["done"] and len(paths) == 1, (paths, metrics)
    assert Path(paths[0]).is_relative_to(tmp_path), paths
    with Image.open(paths[0]) as image:
        assert image.size == (64, 64)


def test_the_drawing_endpoints_default_to_the_models_suggested_setting(tiny_model_shared, tokenizer):
    """As the Text to image tab starts from them: a shapes model suggests sampling with guidance (its greedy
    image is the background alone), the official model greedy decoding without guidance."""
    from omnimamba.sampling import ImageDefaults

    suggested = ImageDefaults(temperature=0.9, top_k=0, top_p=0.0, guidance_scale=3.0)
    engine = Engine(copy.deepcopy(tiny_model_shared), tokenizer, label="tiny (test)", use_cuda_graphs=False,
                    image_defaults=suggested)
    demo = app.build_demo(engine)
    url = app.serve(demo, host="127.0.0.1", port=free_port(), block=False, queue_size=8)
    try:
        api = Client(url, verbose=False, download_files=False).view_api(print_info=False, return_format="dict")
    finally:
        demo.close()
    for endpoint in ("/text_to_image", "/compare_text_to_image"):
        defaults = {p["parameter_name"]: p["parameter_default"] for p in api["named_endpoints"][endpoint]["parameters"]}
        assert {k: defaults[k] for k in ("temperature", "top_k", "top_p", "guidance_scale")} == \
            {"temperature": 0.9, "top_k": 0, "top_p": 0.0, "guidance_scale": 3.0}, endpoint
    chat = {p["parameter_name"]: p["parameter_default"] for p in api["named_endpoints"]["/chat"]["parameters"]}
    assert chat["top_k"] == 1  # answers stay greedy


def test_an_endpoint_with_model_defaults_fills_what_a_call_leaves_out():
    from demo.api import with_defaults

    def draw(prompt: str = "", temperature: float = 1.0, guidance_scale: float = 1.0):
        yield prompt, temperature, guidance_scale
    suggested = with_defaults(draw, {"guidance_scale": 3.0})
    assert list(suggested("a cat")) == [("a cat", 1.0, 3.0)]
    assert list(suggested("a cat", guidance_scale=1.0)) == [("a cat", 1.0, 1.0)]
