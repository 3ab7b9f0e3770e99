"""OmniMamba beside Show-o: items and importers (`items.py`), OmniMamba's side and the command (`runs.py`),
grids and the HTML report (`report.py`)."""
from .items import (IMAGE_SUFFIXES, MANIFEST, TASKS, CompareError, Item, check_image_file, import_showo, pair_items,
                    pair_key, read_manifest, read_prompts, read_questions, write_manifest)
from .report import render_grid, write_report
from .runs import add_arguments, answer_item, generate_item, run

__all__ = ["IMAGE_SUFFIXES", "MANIFEST", "TASKS", "CompareError", "Item", "add_arguments", "answer_item",
           "check_image_file", "generate_item", "import_showo", "pair_items", "pair_key", "read_manifest",
           "read_prompts", "read_questions", "render_grid", "run", "write_manifest", "write_report"]
