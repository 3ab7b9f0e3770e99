"""Load test: N simulated users drive a running app through gradio_client (its /chat and /text_to_image API),
against the same requests sent one at a time in the same run.

    python -m omnimamba.bench.load_test --url http://127.0.0.1:7860 [--baseline-url http://127.0.0.1:7861]
        --users 1 4 8 16 [--requests 4]
        [--mix mixed|chat|image] [--max-new-tokens 64] [--time-limit 600] [--out results.json] [--plot load.png]

Each user has its own client (its own Gradio session) and sends `--requests` requests back to back: chats
(a text question) and one-image requests, alternating by user in the mixed workload. The baseline is the
one-at-a-time engine: with --baseline-url (a second app of the same model, started with --batching off) the
same users send the same requests to it, so its latencies include the queueing; without it, the same requests
go one after another from one user (throughput only compares). Reported per run: requests done and failed,
throughput (images/s and chat tokens/s, from the engine's own counts in the streamed metrics), p50/p95
latency and p50/p95 time to first token (the first streamed update the client sees). Only 127.0.0.1 /
localhost / ::1 are accepted, and every run stops at `--time-limit` seconds (requests still running are
cancelled and counted as not done).
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from urllib.parse import urlparse

LOCAL = {"127.0.0.1", "localhost", "::1"}
QUESTIONS = ["What is a good name for a cat?", "Describe a sunny beach in two sentences.",
             "Why is the sky blue?", "List three fruits."]
PROMPTS = ["a red cube on a table", "a lighthouse at dusk", "a bowl of ramen, studio photo", "a snowy forest"]


@dataclass
class Sample:
    kind: str  # "chat" or "image"
    latency_s: float
    ttft_s: float | None
    tokens: int = 0
    images: int = 0
    error: str | None = None


@dataclass
class RunReport:
    users: int
    mode: str  # "concurrent" or "one at a time"
    wall_s: float
    done: int
    failed: int
    images_per_s: float
    chat_tokens_per_s: float
    latency_p50_s: float | None
    latency_p95_s: float | None
    ttft_p50_s: float | None
    ttft_p95_s: float | None
    errors: list[str] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def one_request(client, kind: str, n: int, max_new_tokens: int, deadline: float) -> Sample:
    """Send one request and follow its stream; cancel it at the deadline."""
    t0 = time.perf_counter()
    if kind == "chat":
        job = client.submit(None, QUESTIONS[n % len(QUESTIONS)], "", max_new_tokens, 1.0, 1, 0.0, n,
                            api_name="/chat")
    else:
        job = client.submit(PROMPTS[n % len(PROMPTS)], 1, n, 1.0, 1, 0.0, 1.0, False, api_name="/text_to_image")
    first = None
    try:
        for _ in job:
            first = first or time.perf_counter()
            if time.perf_counter() > deadline:
                job.cancel()
                return Sample(kind, time.perf_counter() - t0, None, error="time limit")
        final = job.result(timeout=max(1.0, deadline - time.perf_counter()))  # raises the app's error
        metrics = final[1] if isinstance(final, (list, tuple)) and len(final) > 1 else {}
    except Exception as exc:  # noqa: BLE001 - a failed request is counted, the run goes on
        return Sample(kind, time.perf_counter() - t0, None, error=f"{type(exc).__name__}: {exc}"[:200])
    latency = time.perf_counter() - t0
    ttft = (first - t0) if first is not None else None
    if kind == "chat":
        return Sample(kind, latency, ttft, tokens=int((metrics or {}).get("tokens") or 0))
    return Sample(kind, latency, ttft, images=1)


def user_loop(url: str, user: int, kinds: list[str], max_new_tokens: int, deadline: float,
              out: list[Sample]) -> None:
    from gradio_client import Client

    try:
        client = Client(url, verbose=False, download_files=False, httpx_kwargs={"timeout": 120})
    except Exception as exc:  # noqa: BLE001 - counted as this user's failed requests
        out.extend(Sample(kind, 0.0, None, error=f"connect: {type(exc).__name__}: {exc}"[:200]) for kind in kinds)
        return
    for i, kind in enumerate(kinds):
        if time.perf_counter() > deadline:
            return
        out.append(one_request(client, kind, user * 100 + i, max_new_tokens, deadline))


def workload(users: int, requests: int, mix: str) -> list[list[str]]:
    def kind(user: int, i: int) -> str:
        return mix if mix in ("chat", "image") else ("chat", "image")[(user + i) % 2]
    return [[kind(u, i) for i in range(requests)] for u in range(users)]


def run(url: str, plan: list[list[str]], mode: str, max_new_tokens: int, time_limit: float,
        sequential: bool = False) -> RunReport:
    """`plan`: each user's request kinds, sent by concurrent users; `sequential`: every request from one user in
    turn instead. `mode` names the engine behind `url` in the report."""
    samples: list[Sample] = []
    t0 = time.perf_counter()
    deadline = t0 + time_limit
    if sequential:
        user_loop(url, 0, [k for kinds in plan for k in kinds], max_new_tokens, deadline, samples)
    else:
        threads = [threading.Thread(target=user_loop, args=(url, u, kinds, max_new_tokens, deadline, samples))
                   for u, kinds in enumerate(plan)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(0.0, deadline - time.perf_counter()) + 30)
    wall = time.perf_counter() - t0
    ok = [s for s in samples if s.error is None]
    return RunReport(
        users=len(plan), mode=mode, wall_s=round(wall, 3), done=len(ok), failed=len(samples) - len(ok),
        images_per_s=round(sum(s.images for s in ok) / wall, 3),
        chat_tokens_per_s=round(sum(s.tokens for s in ok) / wall, 2),
        latency_p50_s=percentile([s.latency_s for s in ok], 0.5),
        latency_p95_s=percentile([s.latency_s for s in ok], 0.95),
        ttft_p50_s=percentile([s.ttft_s for s in ok if s.ttft_s is not None], 0.5),
        ttft_p95_s=percentile([s.ttft_s for s in ok if s.ttft_s is not None], 0.95),
        errors=sorted({s.error for s in samples if s.error})[:5])


def check_local(url: str) -> str:
    host = urlparse(url).hostname
    if host not in LOCAL:
        raise SystemExit(f"error: the load test only drives an app on this machine (127.0.0.1, localhost or ::1), "
                         f"got {host!r}")
    return url


def table(reports: list[RunReport]) -> str:
    head = ("| users | mode | done/failed | wall s | images/s | chat tok/s | p50 / p95 latency s | "
            "p50 / p95 TTFT s |\n|---|---|---|---|---|---|---|---|")
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    rows = [f"| {r.users} | {r.mode} | {r.done}/{r.failed} | {r.wall_s:.1f} | {r.images_per_s:.3f} | "
            f"{r.chat_tokens_per_s:.1f} | {fmt(r.latency_p50_s)} / {fmt(r.latency_p95_s)} | "
            f"{fmt(r.ttft_p50_s)} / {fmt(r.ttft_p95_s)} |" for r in reports]
    return "\n".join([head, *rows])


def plot(reports: list[RunReport], path: str) -> None:
    """Throughput and p95 latency against the number of users, concurrent beside one at a time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("images_per_s", "images/s"), ("chat_tokens_per_s", "chat tokens/s"), ("latency_p95_s", "p95 latency s"))
    fig, axes = plt.subplots(1, len(panels), figsize=(12, 3.6), dpi=110)
    for ax, (key, label) in zip(axes, panels):
        for mode, style in (("concurrent", "o-"), ("one at a time", "s--")):
            points = [(r.users, getattr(r, key)) for r in reports if r.mode == mode and getattr(r, key) is not None]
            if points:
                ax.plot(*zip(*points), style, label=mode)
        ax.set_xlabel("users")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[RunReport]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:7860/")
    p.add_argument("--users", type=int, nargs="+", default=[1, 4, 8, 16])
    p.add_argument("--requests", type=int, default=4, help="requests per user (1..64)")
    p.add_argument("--mix", choices=["mixed", "chat", "image"], default="mixed")
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--time-limit", type=float, default=600.0, help="seconds per run (each N, and each baseline)")
    p.add_argument("--baseline-url", default=None,
                   help="an app of the same model started with --batching off: the baseline then gets the same "
                        "concurrent users (queueing included); without it the baseline sends the requests one "
                        "after another from one user")
    p.add_argument("--out", help="write the reports as JSON here")
    p.add_argument("--plot", help="write a PNG of throughput and p95 latency against users here")
    args = p.parse_args(argv)
    url = check_local(args.url)
    baseline = check_local(args.baseline_url) if args.baseline_url else None
    if not all(1 <= n <= 64 for n in args.users) or not 1 <= args.requests <= 64 or args.time_limit <= 0:
        raise SystemExit("error: --users and --requests must be in 1..64 and --time-limit positive")
    reports = []
    for users in args.users:
        plan = workload(users, args.requests, args.mix)
        for target, mode, sequential in ((url, "concurrent", False),
                                         (baseline or url, "one at a time", baseline is None)):
            reports.append(run(target, plan, mode, args.max_new_tokens, args.time_limit, sequential))
            print(table(reports[-1:]).splitlines()[-1], file=sys.stderr, flush=True)
    print(table(reports))
    if args.out:
        with open(args.out, "w") as f:
            json.dump([asdict(r) for r in reports], f, indent=2)
    if args.plot:
        plot(reports, args.plot)
    return reports


if __name__ == "__main__":
    main()
