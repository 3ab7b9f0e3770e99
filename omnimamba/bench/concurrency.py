"""Engine-level concurrency check (no app): N threads each send one request to one engine, with batching on
and off, for the issue-15 goals (N one-image requests within 2x one alone; chat decoding at 8 users >= 5x
batch 1; p95 time to first token with 8 users chatting).

    python -m omnimamba.bench.concurrency [--model random-1.3b|tiny-random|hustvl/OmniMamba] [--users 1 8 16]
        [--task image|chat] [--max-new-tokens 128] [--out results.json]

`random-1.3b`: the official configuration with random weights in bf16 on the GPU (the speed of the real
model, no download; the answers are noise, so chats run to --max-new-tokens).

`tokens_per_s` counts every token over the wall time (prefills included); `decode_tokens_per_s` the tokens after
each request's first over the span from the earliest first token to the last end: the decoding rate the
issue-15 chat goal compares (8 users against one).

`--host-only` (batching only): the batched decode step does no device work (its tokens stay as they are), so
what is timed per turn is the serving thread and the requests' consumers, the Python a GPU step has to hide.
`--step-ms MS` with it: reading a step's tokens waits until MS after its launch, with the interpreter free, as a
GPU step of that length would (the scheduler's overlap, reproduced on any machine).
    python -m omnimamba.bench.concurrency --host-only --task chat --users 1 8 16     (any machine, a second)
    python -m omnimamba.bench.concurrency --host-only --step-ms 2.1 --task chat --users 8
"""
from __future__ import annotations

import argparse
import json
import threading
import time

import torch

from ..config import OmniMambaConfig
from ..engine import Engine
from ..model.init import random_model
from ..sampling import SamplingParams
from ..tokenizer import OmniTokenizer

RANDOM_1P3B = "random-1.3b"


def load(model: str, batching: bool) -> Engine:
    if model == RANDOM_1P3B:
        net = random_model(OmniMambaConfig.official(), "cuda", torch.bfloat16)
        return Engine(net, OmniTokenizer.from_file(None), label="random 1.3B", batching=batching)
    return Engine.load(model, batching=batching)


def stand_in_for_the_device(graph, step_s: float) -> None:
    """A batch graph whose step does no device work and whose tokens are readable `step_s` after the launch."""
    read_after = graph.tokens_after_step
    graph.step = lambda layout, sampling: None

    def tokens_after_step(size: int):
        launched, read = time.perf_counter(), read_after(size)

        def wait_then_read() -> list[int]:
            time.sleep(max(0.0, launched + step_s - time.perf_counter()))
            return read()
        return wait_then_read
    graph.tokens_after_step = tokens_after_step


def one(engine: Engine, task: str, i: int, max_new_tokens: int) -> dict:
    t0 = time.perf_counter()
    first, tokens = None, 0
    if task == "image":
        events = engine.text_to_image(f"a photo of object number {i}", 1, SamplingParams(top_k=0, seed=i))
    else:
        session = engine.new_session(None)
        events = engine.chat(session, f"Tell me a long story about the number {i}.", SamplingParams(),
                             max_new_tokens)
    for event in events:
        first = first or time.perf_counter()
        tokens = event.metrics.tokens
    end = time.perf_counter()
    return {"latency_s": end - t0, "ttft_s": (first or t0) - t0, "tokens": tokens, "first": first or end, "end": end}


def run(engine: Engine, task: str, users: int, max_new_tokens: int) -> dict:
    results: list[dict] = [{}] * users
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, one(engine, task, i, max_new_tokens)))
               for i in range(users)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ttfts = sorted(r["ttft_s"] for r in results)
    # decoding alone: the tokens after each request's first, over the span from the first first token to the
    # last end (the prefills are outside it, but any prefill that overlaps the decoding of others is inside)
    span = max(r["end"] for r in results) - min(r["first"] for r in results)
    decoded = sum(max(r["tokens"] - 1, 0) for r in results)
    return {"task": task, "users": users, "wall_s": round(wall, 3),
            "tokens_per_s": round(sum(r["tokens"] for r in results) / wall, 1),
            "decode_tokens_per_s": round(decoded / span, 1) if span > 0 else None,
            "latency_max_s": round(max(r["latency_s"] for r in results), 3),
            "ttft_p95_s": round(ttfts[min(len(ttfts) - 1, round(0.95 * (len(ttfts) - 1)))], 4)}


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny-random")
    p.add_argument("--users", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--task", choices=["image", "chat"], nargs="+", default=["image", "chat"])
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--out")
    p.add_argument("--host-only", action="store_true", help="no device work in the batched step (see above)")
    p.add_argument("--step-ms", type=float, default=0.0, help="with --host-only: the step time to stand in for")
    args = p.parse_args(argv)
    if args.step_ms and not args.host_only:
        p.error("--step-ms stands in for the device step: it needs --host-only")
    rows = []
    for batching in (True,) if args.host_only else (True, False):
        engine = load(args.model, batching)
        if batching:
            engine.scheduler.ready.wait()
            print(json.dumps({"prefill graphs recorded ahead, s": engine.scheduler.stats.get("prefill_capture_s")}),
                  flush=True)
        if args.host_only:
            for batch in engine.scheduler.batches.values():
                stand_in_for_the_device(batch.graph, args.step_ms / 1000)
        for task in args.task:
            for users in args.users:
                run(engine, task, users, 8)  # warm-up at this count: graphs, prefill pieces (alone and together)
                turns_before = engine.scheduler.stats["steps"] if batching else 0
                row = {"batching": batching, **run(engine, task, users, args.max_new_tokens)}
                if batching:  # the serving thread's turns, one batched step each
                    turns = max(engine.scheduler.stats["steps"] - turns_before, 1)
                    row["ms_per_turn"] = round(1000 * row["wall_s"] / turns, 3)
                rows.append(row)
                print(json.dumps(rows[-1]), flush=True)
        engine.close()
        del engine
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=2)
    return rows


if __name__ == "__main__":
    main()
