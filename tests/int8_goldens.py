"""What 8-bit decode weights cost against the official fp32 goldens (docs/benchmarks.md): the goldens' model in
fp32, then the same with 8-bit decode weights; each fed the official tokens (logits against the official rows,
argmax where the official margin is clear) and run greedily (tokens equal to the official ones). CPU, the
PyTorch twins, about 35 minutes and 13 GB.

    python -m tests.int8_goldens [GOLDENS_DIR] [OUT.json]
"""
import json
import sys
import time
from pathlib import Path

import torch

from omnimamba.generation import GraphKey, ModelRunner
from tests.golden_checks import det_model, load
from tests.test_gpu import _greedy_scores

CLEAR_MARGIN = 0.05  # the goldens README's: argmax must agree where the official top-2 margin exceeds this


def prompt(model, goldens: Path, task: str) -> tuple[torch.Tensor, list[int], dict]:
    """The official prompt's embeddings, the official greedy tokens and their scores."""
    if task == "t2i":
        golden = load(goldens, "golden_t2i.pt")
        return model.embed_t2i_prefix(golden["text_ids"][None]), golden["tokens"].tolist(), golden["gen_scores"]
    golden = load(goldens, "golden_mmu.pt")
    pixels = {k: v[None] for k, v in golden["pixel_values"].items()}
    embeds = model.embed_mmu(golden["prompt_ids"][None], model.image_features(pixels))
    return embeds, golden["generated_ids"].tolist(), golden["gen_scores"]


@torch.no_grad()
def measure(model, goldens: Path, task: str) -> dict:
    start = time.time()
    embeds, want, scores = prompt(model, goldens, task)
    runner, key = ModelRunner(model, use_cuda_graphs=False), GraphKey(task, 1, False, False)
    forced, _ = _greedy_scores(runner, key, embeds, task, len(want), forced=want)
    _, free = _greedy_scores(runner, key, embeds, task, len(want))
    clear = (scores["top5_val"][:, 0] - scores["top5_val"][:, 1]) > CLEAR_MARGIN
    rows = [(j, i) for j, i in enumerate(scores["rows_pos"].tolist()) if i < len(want)]
    return {"steps": len(want),
            "max_logit_diff_vs_golden_rows": round(max((forced[i] - scores["rows"][j]).abs().max().item()
                                                       for j, i in rows), 4),
            "max_logsumexp_diff": round((forced.logsumexp(-1) - scores["logsumexp"][:len(want)]).abs().max().item(), 4),
            f"argmax_agree_where_margin_gt_{CLEAR_MARGIN}": (forced.argmax(-1)[clear] == torch.tensor(want)[clear])
            .float().mean().item(),
            "greedy_tokens_equal_to_golden": next((i for i, (a, b) in enumerate(zip(free, want)) if a != b), len(want)),
            "golden_first_near_tie": int((~clear).nonzero()[0]) if (~clear).any() else len(want),
            "seconds": round(time.time() - start)}


def main() -> None:
    default = Path(__file__).resolve().parents[2] / "shared/reference/goldens"
    goldens = Path(sys.argv[1]) if len(sys.argv) > 1 else default
    out_path = Path(sys.argv[2]) if len(sys.argv) > 2 else Path("int8_goldens.json")
    model = det_model(goldens, "cpu").merge_lora(release_unmerged=True)  # 13 GB: one model, quantized in turn
    out = {}
    for weights in ("fp32", "int8"):
        if weights == "int8":
            model.quantize_decode()
        for task in ("mmu", "t2i"):
            out[f"{task} {weights}"] = measure(model, goldens, task)
            print(json.dumps({f"{task} {weights}": out[f"{task} {weights}"]}), flush=True)
    out_path.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
