"""Show-o outputs written the way Show-o's scripts write them, for the demo tests."""
from __future__ import annotations

from pathlib import Path

from PIL import Image

from omnimamba.compare import Item, write_manifest

HOUSE = Path(__file__).resolve().parents[2] / "assets" / "examples" / "house.png"


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
