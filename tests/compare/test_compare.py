"""The Show-o comparison: manifests, importers, pairing, grids and the HTML report, end to end through the CLI
with the tiny random model on CPU."""
from __future__ import annotations

import base64
import contextlib
import io
import json
import re
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from omnimamba.cli import build_parser, main
from omnimamba.compare import (CompareError, Item, import_showo, pair_items, read_manifest, read_prompts,
                               read_questions, run, write_manifest)
from omnimamba.compare.report import CAPTION, GAP, HEADER, MARGIN

RED, GREEN, BLUE, GREY = (220, 30, 30), (30, 200, 60), (40, 60, 230), (128, 128, 128)
CELL = 256
TRICKY = 'a <b>bold</b> sign that says "A&B"'  # must come out HTML-escaped


def solid(path: Path, colour: tuple[int, int, int], size: int = 256) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour).save(path)
    return path


def cli(*args: str) -> str:
    """Run `python -m omnimamba compare` in-process on the tiny model; returns what it printed."""
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        main(["compare", "--model", "tiny-random", "--offline", *args])
    return stdout.getvalue()


def cli_error(tmp_path: Path, *args: str) -> str:
    """The message the compare command stops with; the model must not be loaded for bad inputs."""
    parsed = build_parser().parse_args(["compare", "--out", str(tmp_path / "out"), *args])
    with pytest.raises(SystemExit) as exc:
        run(parsed, lambda _: pytest.fail("the model was loaded before the inputs were checked"))
    return str(exc.value)


def near(pixel: tuple, colour: tuple, tol: int = 2) -> bool:
    return all(abs(a - b) <= tol for a, b in zip(pixel, colour))


def cell_box(row: int, column: int) -> tuple[int, int, int, int]:
    left = MARGIN + column * (CELL + GAP)
    top = MARGIN + HEADER + row * (CELL + CAPTION)
    return left, top, left + CELL, top + CELL


def embedded_images(report: str) -> list[Image.Image]:
    found = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", report)
    return [Image.open(io.BytesIO(base64.b64decode(data))) for data in found]


# ---------------------------------------------------------------------------------------------- folder import, t2i
@pytest.fixture(scope="module")
def folder_run(tmp_path_factory) -> tuple[Path, str]:
    """Show-o's side as a folder: 1.png, 2.png, 10.png (natural order) from three prompt lines."""
    root = tmp_path_factory.mktemp("folder_run")
    solid(root / "showo" / "1.png", RED)
    solid(root / "showo" / "2.png", GREEN)
    solid(root / "showo" / "10.png", BLUE, size=512)
    (root / "showo" / "notes.txt").write_text("not an image, ignored")
    (root / "prompts.txt").write_text(f"a red square\na green square\n{TRICKY}\n")
    printed = cli("--prompts", str(root / "prompts.txt"), "--showo", str(root / "showo"),
                  "--out", str(root / "out"), "--seed", "7", "--num-per-page", "2")
    return root / "out", printed


def test_folder_run_writes_omnimamba_manifest_with_settings(folder_run):
    out, _ = folder_run
    items = read_manifest(out / "omnimamba" / "manifest.jsonl")
    assert [i.task for i in items] == ["t2i"] * 3
    assert [i.prompt for i in items] == ["a red square", "a green square", TRICKY]
    assert [i.seed for i in items] == [7, 8, 9]
    for item in items:
        assert item.sampler == {"temperature": 1.0, "top_k": 1, "top_p": 0.0, "guidance_scale": 1.0, "steps": 64}
        assert item.seconds > 0 and item.peak_vram_gib is None  # CPU: no VRAM
        assert item.model.startswith("tiny-random") and item.device == "CPU (float32)"
        assert not Path(item.image).is_absolute()  # stored relative to the manifest's folder
        with Image.open(out / "omnimamba" / item.image) as image:
            assert image.size == (64, 64) == (item.resolution, item.resolution)


def test_folder_run_imports_showo_in_natural_order(folder_run):
    out, _ = folder_run
    showo = read_manifest(out / "showo" / "manifest.jsonl")
    assert [Path(i.image).name for i in showo] == ["1.png", "2.png", "10.png"]
    assert [i.resolution for i in showo] == [256, 256, 512]
    assert all((out / "showo" / i.image).is_file() for i in showo)


def test_folder_run_grid_pages_and_layout(folder_run):
    out, printed = folder_run
    assert sorted(p.name for p in out.glob("grid_*.png")) == ["grid_01.png", "grid_02.png"]
    width = 2 * MARGIN + 2 * CELL + GAP
    first, second = Image.open(out / "grid_01.png"), Image.open(out / "grid_02.png")
    assert first.size == (width, 2 * MARGIN + HEADER + 2 * (CELL + CAPTION))
    assert second.size == (width, 2 * MARGIN + HEADER + 1 * (CELL + CAPTION))
    # Show-o on the left, in prompt order; the 512 px image is shown at the same 256 px cell size
    for page, row, colour in ((first, 0, RED), (first, 1, GREEN), (second, 0, BLUE)):
        left = page.crop(cell_box(row, 0))
        assert near(left.getpixel((5, 5)), colour) and near(left.getpixel((250, 250)), colour)
    # OmniMamba's own image on the right, scaled to the cell
    ours = Image.open(out / "omnimamba" / "t2i_001.png").convert("RGB")
    expected = ImageOps.pad(ours, (CELL, CELL), Image.LANCZOS)
    assert first.crop(cell_box(1, 1)).tobytes() == expected.tobytes()
    assert str(out / "grid_02.png") in printed and str(out / "report.html") in printed


def test_folder_run_report_rows_images_and_timings(folder_run):
    out, _ = folder_run
    report = (out / "report.html").read_text()
    assert report.count("<tr class='pair t2i'>") == 3 and "pair mmu" not in report
    images = embedded_images(report)
    assert len(images) == 6  # two per pair, the files themselves
    assert images[0].size == (256, 256) and near(images[0].convert("RGB").getpixel((9, 9)), RED)
    assert images[4].size == (512, 512) and images[5].size == (64, 64)
    ours = read_manifest(out / "omnimamba" / "manifest.jsonl")
    for item in ours:
        assert f"seed {item.seed} · {item.seconds:.2f} s" in report
    assert f"<th>total time</th><td>–</td><td>{sum(i.seconds for i in ours):.2f} s</td>" in report
    assert "&lt;b&gt;bold&lt;/b&gt; sign that says &quot;A&amp;B&quot;" in report and "<b>bold</b>" not in report


# ------------------------------------------------------------------------------------ manifest import, t2i + mmu
def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@pytest.fixture(scope="module")
def manifest_run(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("manifest_run")
    solid(root / "showo" / "imgs" / "cat.png", GREEN, size=512)
    solid(root / "showo" / "inputs" / "shapes.png", RED)
    solid(root / "questions" / "shapes.png", RED)
    solid(root / "questions" / "grey.png", GREY)
    sampler = {"steps": 50, "guidance_scale": 5, "temperature": 1.0}
    write_jsonl(root / "showo" / "manifest.jsonl", [
        {"task": "t2i", "prompt": "a cat", "image": "imgs/cat.png", "seed": 3, "resolution": 512,
         "sampler": sampler, "seconds": 2.5, "peak_vram_gib": 9.75, "model": "showlab/show-o-512x512"},
        {"task": "mmu", "prompt": "What colour is it?", "image": "inputs/grey.png", "answer": "Grey & <dull>.",
         "seconds": 0.9, "model": "showlab/show-o-512x512"},
        {"task": "mmu", "prompt": "What colour is it?", "image": "inputs/shapes.png", "answer": "Red.",
         "seconds": 0.8, "model": "showlab/show-o-512x512"},
    ])
    solid(root / "showo" / "inputs" / "grey.png", GREY)
    (root / "prompts.txt").write_text("a cat\n")
    (root / "questions" / "questions.txt").write_text(
        "# image<TAB>question\nshapes.png\tWhat colour is it?\n\ngrey.png\tWhat colour is it?\n")
    cli("--prompts", str(root / "prompts.txt"), "--questions", str(root / "questions/questions.txt"),
        "--showo", str(root / "showo" / "manifest.jsonl"), "--out", str(root / "out"), "--seed", "100",
        "--max-new-tokens", "5")
    return root / "out"


def test_manifest_run_answers_questions(manifest_run):
    items = read_manifest(manifest_run / "omnimamba" / "manifest.jsonl")
    assert [(i.task, i.prompt) for i in items] == [("t2i", "a cat")] + [("mmu", "What colour is it?")] * 2
    chats = items[1:]
    assert [Path(i.image).name for i in chats] == ["shapes.png", "grey.png"]
    assert all((manifest_run / "omnimamba" / i.image).resolve().is_file() for i in chats)
    assert [i.seed for i in items] == [100, 101, 102]
    for chat in chats:
        assert isinstance(chat.answer, str) and chat.seconds > 0
        assert chat.sampler == {"temperature": 1.0, "top_k": 1, "top_p": 0.0, "max_new_tokens": 5}
        assert chat.resolution == 28  # the tiny model's vision input side


def test_manifest_run_report_pairs_answers_by_image(manifest_run):
    report = (manifest_run / "report.html").read_text()
    assert report.count("<tr class='pair t2i'>") == 1 and report.count("<tr class='pair mmu'>") == 2
    rows = report.split("<tr class='pair mmu'>")[1:]
    assert "Red." in rows[0] and "Grey &amp; &lt;dull&gt;." in rows[1]  # paired by file name, not by order
    ours = read_manifest(manifest_run / "omnimamba" / "manifest.jsonl")
    for row, item, showo_seconds in zip(rows, ours[1:], ("0.80 s", "0.90 s")):
        assert f"{item.seconds:.2f} s" in row and showo_seconds in row
    assert "seed 3 · 2.50 s · 9.75 GiB" in report
    assert "<th>total time</th><td>4.20 s</td>" in report and "<th>peak VRAM (max)</th><td>9.75 GiB</td>" in report
    assert "showlab/show-o-512x512" in report and "&quot;steps&quot;: 50" in report
    # chat inputs are embedded as thumbnails: red first (shapes.png), then grey
    inputs = embedded_images(report)[-2:]
    assert near(inputs[0].convert("RGB").getpixel((3, 3)), RED)
    assert near(inputs[1].convert("RGB").getpixel((3, 3)), GREY)


def test_manifest_run_grid_leaves_chats_to_the_report(manifest_run):
    grids = sorted(manifest_run.glob("grid_*.png"))
    assert len(grids) == 1
    page = Image.open(grids[0])
    assert page.height == 2 * MARGIN + HEADER + CELL + CAPTION
    assert near(page.crop(cell_box(0, 0)).getpixel((128, 128)), GREEN)


# ---------------------------------------------------------------------------------------------- clear errors
def test_error_mismatched_counts(tmp_path):
    solid(tmp_path / "showo" / "0.png", RED)
    solid(tmp_path / "showo" / "1.png", GREEN)
    (tmp_path / "p.txt").write_text("one\ntwo\nthree\n")
    message = cli_error(tmp_path, "--prompts", str(tmp_path / "p.txt"), "--showo", str(tmp_path / "showo"))
    assert f"{tmp_path / 'showo'} has 2 images but {tmp_path / 'p.txt'} has 3 prompts" in message


def test_error_unreadable_image(tmp_path):
    solid(tmp_path / "showo" / "0.png", RED)
    (tmp_path / "showo" / "1.png").write_bytes(b"this is not a PNG")
    (tmp_path / "p.txt").write_text("one\ntwo\n")
    message = cli_error(tmp_path, "--prompts", str(tmp_path / "p.txt"), "--showo", str(tmp_path / "showo"))
    assert "could not read image" in message and str(tmp_path / "showo" / "1.png") in message


def test_error_missing_image_in_manifest(tmp_path):
    write_jsonl(tmp_path / "m.jsonl", [{"task": "t2i", "prompt": "one", "image": "gone.png"}])
    (tmp_path / "p.txt").write_text("one\n")
    message = cli_error(tmp_path, "--prompts", str(tmp_path / "p.txt"), "--showo", str(tmp_path / "m.jsonl"))
    assert "item 1" in message and f"{tmp_path / 'gone.png'} is missing" in message


def test_error_unmatched_prompts(tmp_path):
    solid(tmp_path / "a.png", RED)
    write_jsonl(tmp_path / "m.jsonl", [{"task": "t2i", "prompt": "a dog", "image": "a.png"}])
    (tmp_path / "p.txt").write_text("a cat\n")
    message = cli_error(tmp_path, "--prompts", str(tmp_path / "p.txt"), "--showo", str(tmp_path / "m.jsonl"))
    assert "1 Show-o item(s) have no OmniMamba partner: t2i 'a dog'" in message
    assert "1 OmniMamba item(s) have no Show-o partner: t2i 'a cat'" in message


def test_error_folder_without_prompts_and_missing_source(tmp_path):
    solid(tmp_path / "showo" / "0.png", RED)
    (tmp_path / "q.txt").write_text("0.png\tWhat is it?\n")
    solid(tmp_path / "0.png", RED)
    assert "also give the prompts file" in cli_error(tmp_path, "--questions", str(tmp_path / "q.txt"),
                                                     "--showo", str(tmp_path / "showo"))
    assert "not found" in cli_error(tmp_path, "--questions", str(tmp_path / "q.txt"), "--showo", str(tmp_path / "x"))


@pytest.mark.parametrize("line, expected", [
    ("{not json", "line 2: not valid JSON"),
    ('{"task": "video", "prompt": "x"}', "line 2: task must be one of ['t2i', 'mmu'], found 'video'"),
    ('{"task": "t2i", "prompt": "x", "image": "a.png", "secs": 1}', "line 2: unknown field(s) ['secs']"),
    ('{"task": "t2i", "prompt": "x"}', "line 2: a t2i item needs 'image'"),
    ('{"task": "mmu", "prompt": "x", "image": "a.png"}', "line 2: an mmu item needs 'answer'"),
    ('{"task": "t2i", "prompt": "x", "image": "a.png", "seed": true}', "line 2: seed must be a whole number"),
    ('{"task": "t2i", "prompt": "x", "image": "a.png", "seconds": -1}', "line 2: seconds must be >= 0"),
    ('["t2i", "x"]', "line 2: expected a JSON object, found list"),
])
def test_manifest_validation_names_line_and_problem(tmp_path, line, expected):
    path = tmp_path / "m.jsonl"
    path.write_text('{"task": "t2i", "prompt": "ok", "image": "a.png"}\n' + line + "\n")
    with pytest.raises(CompareError, match=re.escape(expected)):
        read_manifest(path)


def test_blank_prompt_line_and_bad_question_line_are_refused(tmp_path):
    (tmp_path / "p.txt").write_text("one\n\nthree\n\n")
    solid(tmp_path / "showo" / "0.png", RED)
    assert "line 2 is blank" in cli_error(tmp_path, "--prompts", str(tmp_path / "p.txt"),
                                          "--showo", str(tmp_path / "showo"))
    (tmp_path / "q.txt").write_text("shapes.png What is it?\n")
    with pytest.raises(CompareError, match="line 1: expected 'image_path<TAB>question'"):
        read_questions(tmp_path / "q.txt")


# ---------------------------------------------------------------------------------------------- library pieces
def test_manifest_round_trip(tmp_path):
    solid(tmp_path / "out" / "images" / "0.png", RED)
    items = [Item("t2i", "a red square", image=str(tmp_path / "out" / "images" / "0.png"), seed=1, resolution=256,
                  sampler={"steps": 16, "guidance_scale": 1.75}, seconds=1.25, peak_vram_gib=3.5,
                  model="showlab/show-o", revision="abc123", device="NVIDIA H100 80GB HBM3 (bfloat16)"),
             Item("mmu", "What is it?", image="inputs/x.png", answer="A square.", seed=None, model="m")]
    path = write_manifest(items, tmp_path / "out" / "manifest.jsonl")
    back = read_manifest(path)
    assert back[0].image == "images/0.png" and back[1].image == "inputs/x.png"
    assert back[0].to_dict() | {"image": items[0].image} == items[0].to_dict()
    assert back[1] == items[1]
    assert write_manifest(back, tmp_path / "out" / "again.jsonl").read_text() == path.read_text()


def test_import_showo_manifest_makes_paths_absolute(tmp_path):
    solid(tmp_path / "run" / "imgs" / "a.png", RED, size=512)
    write_jsonl(tmp_path / "run" / "manifest.jsonl",
                [{"task": "t2i", "prompt": "a", "image": "imgs/a.png", "seed": 5, "sampler": {"steps": 50}}])
    [item] = import_showo(tmp_path / "run" / "manifest.jsonl", prompts_file=None)
    assert Path(item.image) == (tmp_path / "run" / "imgs" / "a.png").resolve()
    assert (item.seed, item.sampler) == (5, {"steps": 50})


def test_pair_items_by_occurrence_and_image_name():
    showo = [Item("t2i", "x", image="s1.png", seed=1), Item("mmu", "q", image="a/red.png", answer="r"),
             Item("t2i", "x", image="s2.png", seed=2), Item("mmu", "q", image="a/blue.png", answer="b")]
    ours = [Item("mmu", "q", image="/in/blue.png", answer="B"), Item("t2i", "x", image="o1.png"),
            Item("mmu", "q", image="/in/red.png", answer="R"), Item("t2i", "x", image="o2.png")]
    pairs = pair_items(showo, ours)
    assert [(s.image, o.image) for s, o in pairs] == [("a/blue.png", "/in/blue.png"), ("s1.png", "o1.png"),
                                                      ("a/red.png", "/in/red.png"), ("s2.png", "o2.png")]
    with pytest.raises(CompareError, match=r"1 Show-o item\(s\) have no OmniMamba partner: t2i 'x'"):
        pair_items(showo, ours[:3])


def test_bundled_prompts_and_questions_parse():
    root = Path(__file__).resolve().parents[2] / "assets"
    prompts = read_prompts(root / "prompts.txt")
    assert 16 <= len(prompts) <= 24 and len(set(prompts)) == len(prompts)
    questions = read_questions(root / "questions.txt")  # also checks that every image is there and readable
    assert len(questions) >= 4
    assert all(image is not None and image.parent == root / "examples" for image, _ in questions)
