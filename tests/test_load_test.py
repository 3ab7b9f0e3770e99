"""The load test against the tiny model's app served in-process (CPU, 2 users, one request each)."""
import socket
import time

import pytest

from omnimamba.bench import load_test
from omnimamba.engine import Engine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def patient_url_ok(url: str) -> bool:
    """Gradio's launch probe gives the page 5 x 3 s; a loaded CI machine may need longer to serve it."""
    import httpx
    for _ in range(10):
        try:
            if httpx.head(url, timeout=20).status_code < 400:
                return True
        except httpx.HTTPError:
            time.sleep(1)
    return False


@pytest.mark.parametrize("baseline", ["sequential", "app"])
def test_the_load_test_reports_two_users_against_one_at_a_time(tiny_model_shared, tokenizer, monkeypatch, tmp_path,
                                                               baseline):
    import copy

    app = pytest.importorskip("app")
    monkeypatch.setattr("gradio.networking.url_ok", patient_url_ok)
    apps = []
    for batching in ((True, False) if baseline == "app" else (True,)):
        engine = Engine(copy.deepcopy(tiny_model_shared), tokenizer, use_cuda_graphs=False, batching=batching)
        engine.images_asked = 0
        draw = engine.text_to_image

        def counted(*args, engine=engine, draw=draw, **kwargs):
            engine.images_asked += 1
            return draw(*args, **kwargs)
        engine.text_to_image = counted
        demo = app.build_demo(engine)
        url = app.serve(demo, host="127.0.0.1", port=free_port(), block=False, queue_size=8,
                        slots=16 if batching else 1)
        apps.append((engine, demo, url))
    try:
        argv = ["--url", apps[0][2], "--users", "2", "--requests", "1", "--max-new-tokens", "4", "--time-limit", "120",
                "--plot", str(tmp_path / "load.png")] + (["--baseline-url", apps[1][2]] if baseline == "app" else [])
        reports = load_test.main(argv)
    finally:
        for engine, demo, _ in apps:
            demo.close()
            engine.close()
    assert [(r.users, r.mode) for r in reports] == [(2, "concurrent"), (2, "one at a time")]
    for report in reports:
        assert (report.done, report.failed) == (2, 0), report.errors
        assert report.images_per_s > 0 and report.chat_tokens_per_s > 0  # one chat and one image each run
        assert report.latency_p50_s <= report.latency_p95_s and report.ttft_p50_s is not None
    assert (tmp_path / "load.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # each run sends one image request: with a baseline app, its one-at-a-time engine drew the baseline's
    assert [engine.images_asked for engine, _, _ in apps] == ([1, 1] if baseline == "app" else [2])


def test_the_load_test_only_drives_a_local_app():
    with pytest.raises(SystemExit, match="only drives an app on this machine"):
        load_test.main(["--url", "http://10.1.2.3:7860/", "--users", "1"])
