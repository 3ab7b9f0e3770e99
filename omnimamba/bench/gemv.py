"""Matrix-vector kernels on the decode step's shapes, weights cold: what share of the copy bandwidth each way
of writing the batch-1 product reaches (prints JSON; about a minute on a GPU).

    python -m omnimamba.bench.gemv [--out FILE]

In a decode step every layer's weights stream from memory once (48 layers x 52 MB do not fit in the 50-60 MB
L2). So each candidate multiplies 48 different weight matrices of one shape, back to back in one CUDA graph,
as the step does; us per product and GB/s (weight bytes / time) are medians of 5 replays. The shapes: in_proj
(8512 x 2048) and out_proj (2048 x 4096) of the official model, bf16, one input row.

Candidates: cuBLAS (`F.linear`); the step's kernel today (a whole-K tile of 16K elements per program, loaded
at once); tiles of BLOCK_N rows that walk K in BLOCK_K steps with `num_stages` loads in flight; each with and
without programmatic dependent launch (the next product's weight loads start while the previous one ends).
"""
from __future__ import annotations

import argparse
import itertools
import json

import torch
import torch.nn.functional as F

from ..model.kernels.decode import gdc_launch_dependents, gdc_wait
from ..model.kernels.dispatch import tl, triton
from .timing import environment, graph_us

SHAPES = {"in_proj": (8512, 2048), "out_proj": (2048, 4096)}
LAYERS = 48


@triton.jit
def _whole_k_kernel(x_ptr, w_ptr, out_ptr, N, K: tl.constexpr, BLOCK_N: tl.constexpr, PDL: tl.constexpr):
    rk = tl.arange(0, K)
    rn = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    w = tl.load(w_ptr + rn[:, None] * K + rk[None, :], mask=(rn < N)[:, None], other=0.0)
    if PDL:
        gdc_launch_dependents()
        gdc_wait()
    x = tl.load(x_ptr + rk).to(tl.float32)
    tl.store(out_ptr + rn, tl.sum(w.to(tl.float32) * x[None, :], axis=1).to(out_ptr.dtype.element_ty), mask=rn < N)


@triton.jit
def _k_loop_kernel(x_ptr, w_ptr, out_ptr, N, K: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                   STAGES: tl.constexpr, PDL: tl.constexpr):
    rn = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    acc = tl.zeros((BLOCK_N, BLOCK_K), dtype=tl.float32)
    if PDL:
        gdc_launch_dependents()
        gdc_wait()  # here the input is read in the loop, so the wait comes first
    for k in tl.range(0, K, BLOCK_K, num_stages=STAGES):
        rk = k + tl.arange(0, BLOCK_K)
        w = tl.load(w_ptr + rn[:, None] * K + rk[None, :], mask=(rn < N)[:, None], other=0.0)
        acc += w.to(tl.float32) * tl.load(x_ptr + rk).to(tl.float32)[None, :]
    tl.store(out_ptr + rn, tl.sum(acc, axis=1).to(out_ptr.dtype.element_ty), mask=rn < N)


def _launcher(kind: str, n: int, k: int, pdl: bool, **meta):
    kernel = _whole_k_kernel if kind == "whole-k" else _k_loop_kernel
    grid, launch = (triton.cdiv(n, meta["BLOCK_N"]),), {"launch_pdl": True} if pdl else {}
    return lambda x, w, out: kernel[grid](x, w, out, n, K=k, PDL=pdl, **meta, **launch)


def candidates(k: int) -> list[tuple[str, dict]]:
    out = [("whole-k", dict(BLOCK_N=max(1, 16384 // k), num_warps=8))]  # the step's kernel today
    out += [("whole-k", dict(BLOCK_N=b, num_warps=w)) for b, w in ((4, 4), (8, 4), (16, 8), (32, 8))
            if b != 16384 // k]
    out += [("k-loop", dict(BLOCK_N=b, BLOCK_K=bk, STAGES=s, num_warps=w))
            for b, bk, s, w in itertools.product((16, 32, 64), (256, 512), (2, 4), (4, 8)) if b * bk <= 16384]
    return out


@torch.no_grad()
def measure() -> dict:
    dev = torch.device("cuda")
    result = {**environment(dev), "layers": LAYERS, "shapes": {}}
    copy = result["copy_gbs"]
    for name, (n, k) in SHAPES.items():
        weights = torch.randn(LAYERS, n, k, device=dev).to(torch.bfloat16)
        x = torch.randn(k, device=dev).to(torch.bfloat16)
        outs = torch.empty(LAYERS, n, device=dev, dtype=torch.bfloat16)
        want = F.linear(x.float(), weights[0].float())
        gb = n * k * 2 / 1e9
        rows = []

        def record(label: str, fn) -> None:
            fn(x, weights[0], outs[0])
            err = ((outs[0].float() - want).norm() / want.norm()).item()
            us = graph_us(lambda: [fn(x, weights[i], outs[i]) for i in range(LAYERS)], calls=1) / LAYERS
            rows.append({"kernel": label, "us": round(us, 2), "gbs": round(gb / us * 1e6, 0),
                         "share_of_copy": round(gb / us * 1e6 / copy, 3), "rel_err": float(f"{err:.1e}")})

        def attempt(kind: str, meta: dict, pdl: bool) -> None:
            try:
                record(f"{kind} {meta} pdl={pdl}", _launcher(kind, n, k, pdl, **meta))
                rows[-1].update(kind=kind, meta=meta, pdl=pdl)
            except Exception as exc:  # a config that does not compile (registers, shared memory)
                rows.append({"kernel": f"{kind} {meta} pdl={pdl}", "error": f"{type(exc).__name__}: {exc}"[:200]})

        record("cublas torch.mv", lambda x, w, out: torch.mv(w, x, out=out))
        for kind, meta in candidates(k):
            attempt(kind, meta, False)
        best = sorted((r for r in rows if "kind" in r), key=lambda r: r["us"])[:3]
        attempt("whole-k", candidates(k)[0][1], True)  # today's kernel, overlapped
        for r in best:
            if r["meta"] != candidates(k)[0][1]:
                attempt(r["kind"], r["meta"], True)
        rows.sort(key=lambda r: r.get("us", 1e9))
        result["shapes"][name] = {"n": n, "k": k, "mb": round(gb * 1000, 1), "rows": rows}
    return result


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="write the JSON here too")
    args = parser.parse_args(argv)
    result = measure()
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return result


if __name__ == "__main__":
    main()
