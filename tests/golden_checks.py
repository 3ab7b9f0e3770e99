"""Comparisons against the official code's outputs (../shared/reference/goldens, README there).

Weights come from the goldens' own det_init.py (every value a function of its key), so the official model and
ours hold identical weights. Tolerances are the goldens README's: full logit rows within 0.05 (the official
run used TF32 in its Triton scan), argmax equal wherever the golden top-2 margin exceeds 0.05.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from omnimamba import OmniMamba, OmniMambaConfig
from omnimamba.checkpoint import materialize

LOGIT_ATOL = 0.05


def det_model(goldens: Path, device: str, dtype: torch.dtype = torch.float32) -> OmniMamba:
    spec = importlib.util.spec_from_file_location("det_init", goldens / "det_init.py")
    det = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(det)
    with torch.device("meta"):
        model = OmniMamba(OmniMambaConfig.official())
    materialize(model, device)
    report = det.det_init_(model)
    assert len(report["written"]) == 1671 and len(report["tied_skipped"]) == 2
    return model.to(dtype).eval()


def load(goldens: Path, name: str) -> dict:
    return torch.load(goldens / name, weights_only=True)


def compare_logits(logits: torch.Tensor, golden: dict, what: str, atol: float = LOGIT_ATOL) -> dict:
    """logits (rows, V) against a golden summary (full rows at rows_pos, per-row logsumexp/mean/argmax)."""
    logits = logits.float().cpu()
    n = golden["argmax"].shape[0]
    logits = logits[:n]
    row_diff = (logits[golden["rows_pos"]] - golden["rows"]).abs().max().item()
    lse_diff = (logits.logsumexp(-1) - golden["logsumexp"]).abs().max().item()
    mean_diff = (logits.mean(-1) - golden["mean"]).abs().max().item()
    margin = golden["top5_val"][:, 0] - golden["top5_val"][:, 1]
    sure = margin > atol
    agree = (logits.argmax(-1)[sure] == golden["argmax"][sure]).float().mean().item()
    result = {"what": what, "max_row_diff": row_diff, "lse_diff": lse_diff, "mean_diff": mean_diff,
              "argmax_agree": agree, "rows_checked": int(sure.sum())}
    print(result)
    assert row_diff < atol and lse_diff < atol and mean_diff < atol, result
    assert agree == 1.0, result
    return result


def check_all(model: OmniMamba, goldens: Path, atol: float = LOGIT_ATOL) -> list[dict]:
    dev = model.device
    out = []
    with torch.no_grad():
        vq = load(goldens, "golden_vq.pt")
        image = model.decode_images(vq["tokens"][None].to(dev)).float().cpu()
        rel = ((image - vq["image"]).norm() / vq["image"].norm()).item()
        out.append({"what": "vq image", "rel_err": rel})
        assert rel < 1e-2, out[-1]

        t2i = load(goldens, "golden_t2i.pt")
        logits = model.forward_t2i(t2i["text_ids"][None].to(dev), t2i["tokens"][None].to(dev))[0]
        out.append(compare_logits(logits, t2i["tf_logits"], "t2i teacher-forced", atol))

        mmu, feats = load(goldens, "golden_mmu.pt"), load(goldens, "golden_mmu_feats.pt")
        pixels = {k: v[None].to(dev) for k, v in mmu["pixel_values"].items()}
        vision = model.vision_backbone(pixels)[0].float().cpu()
        rel = ((vision - feats["vision_feats"]).norm() / feats["vision_feats"].norm()).item()
        out.append({"what": "vision features", "rel_err": rel})
        assert rel < 1e-2, out[-1]
        ids = torch.cat([mmu["prompt_ids"], mmu["generated_ids"]])[None].to(dev)
        logits = model.forward_mmu(ids, pixel_values=pixels)[0]
        out.append(compare_logits(logits, mmu["tf_logits"], "mmu teacher-forced", atol))
    return out
