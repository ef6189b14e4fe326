"""Where the REST API runs pre_processing: on the event loop once it has shown it is fast, never when it
blocks (API_INLINE=auto), always or never when the setting says so. Real ``mlprep serve`` processes."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

NAPS = """
import time

def pre_processing(data):
    if "sleep" in data:
        time.sleep(data["sleep"])
    return data
"""
# More records than a fast function needs before it runs inline (placement.PROVE_RECORDS).
PROOF = [{"i": i} for i in range(1200)]


def _runs(server) -> dict:
    return server.client.get("/health").json()["preprocessing"]["runs"]


def _health_while_sleeping(server, seconds: float = 3.0) -> httpx.Response:
    """GET /health while a request sleeps ``seconds`` in pre_processing; ReadTimeout if it cannot answer."""
    sleeper = threading.Thread(
        target=lambda: httpx.post(f"{server.url}/preprocess", json={"data": {"sleep": seconds}}, timeout=30)
    )
    sleeper.start()
    try:
        time.sleep(0.5)
        with httpx.Client(base_url=server.url, timeout=1.5) as other:
            return other.get("/health")
    finally:
        sleeper.join()


def test_a_blocking_pre_processing_never_holds_the_event_loop(make_preprocessing, serve):
    """Each record sleeps a little (almost no CPU): it stays in the thread pool however many records
    passed, so /health answers while one of its requests sleeps."""
    server = serve(make_preprocessing(NAPS))
    naps = [{"sleep": 0.0005, "i": i} for i in range(len(PROOF))]
    assert server.client.post("/preprocess/batch", json={"data": naps}).json()["errors"] == []
    runs = _runs(server)
    assert runs["inline"] is False
    assert "time.sleep" in runs["reason"]
    assert _health_while_sleeping(server).status_code == 200


def test_a_fast_function_moves_inline_and_back_to_the_pool_once_it_blocks(make_preprocessing, serve):
    """Inline, a sleep is seen by the audit hook (Python >= 3.12) or as slow requests (3 at most)."""
    from mlprep.rest.placement import SLOW_STRIKES

    server = serve(make_preprocessing(NAPS))
    assert _runs(server)["inline"] is False  # measured in the pool first
    assert server.client.post("/preprocess/batch", json={"data": PROOF}).json() == {"results": PROOF, "errors": []}
    assert _runs(server)["inline"] is True
    for i in range(3):  # answered inline, the same as in the pool
        assert server.client.post("/preprocess", json={"data": {"i": i}}).json() == {"result": {"i": i}}
    for _ in range(SLOW_STRIKES):
        assert server.client.post("/preprocess", json={"data": {"sleep": 0.05}}).status_code == 200
    runs = _runs(server)
    assert runs["inline"] is False
    assert "time.sleep" in runs["reason"] or "inline, the last" in runs["reason"]
    assert _health_while_sleeping(server).status_code == 200


def test_api_inline_never_keeps_a_fast_function_in_the_pool(make_preprocessing, serve):
    server = serve(make_preprocessing(NAPS), env={"API_INLINE": "never"})
    assert server.client.post("/preprocess/batch", json={"data": PROOF}).status_code == 200
    assert _runs(server)["inline"] is False


def test_api_inline_always_runs_even_a_blocking_function_on_the_event_loop(make_preprocessing, serve):
    """What the setting promises, and why it is not the default: a sleep holds every other request."""
    server = serve(make_preprocessing(NAPS), env={"API_INLINE": "always"})
    assert _runs(server)["inline"] is True
    with pytest.raises(httpx.ReadTimeout):
        _health_while_sleeping(server)
    assert server.client.post("/preprocess", json={"data": {"i": 1}}).json() == {"result": {"i": 1}}
