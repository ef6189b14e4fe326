"""What the REST API does under abuse: huge batches, stuck pre_processing, dropped clients, secrets.

Every test runs a real ``mlprep serve`` process.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

SLEEPY = """
import pathlib
import time

def pre_processing(data):
    time.sleep(data.get("sleep", 0))
    if "touch" in data:
        pathlib.Path(data["touch"]).touch()
    return data
"""


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    pytest.fail(f"gave up waiting for {what}")


def _peak_rss_mib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
    raise AssertionError("no VmHWM in /proc/PID/status")


def test_batch_over_max_batch_records_is_refused_and_one_at_the_limit_works(make_preprocessing, serve):
    from conftest import IDENTITY

    server = serve(make_preprocessing(IDENTITY), env={"MAX_BATCH_RECORDS": "5"})
    response = server.client.post("/preprocess/batch", json={"data": [{"n": n} for n in range(6)]})
    assert response.status_code == 413
    assert response.json()["type"] == "too_many_records"
    assert "6 records" in response.json()["error"]
    assert "limit is 5 (MAX_BATCH_RECORDS)" in response.json()["error"]

    at_limit = server.client.post("/preprocess/batch", json={"data": [{"n": n} for n in range(5)]})
    assert at_limit.status_code == 200
    assert at_limit.json() == {"results": [{"n": n} for n in range(5)], "errors": []}


def test_memory_of_a_batch_of_many_tiny_records_stays_bounded(make_preprocessing, serve):
    """A 1 MiB body of 350 000 ``{}`` records once cost 1.4 GiB (4 KiB per record); now tens of MiB."""
    from conftest import IDENTITY

    server = serve(make_preprocessing(IDENTITY), env={"MAX_BATCH_RECORDS": "10000000"})
    count = (1 << 20) // 3
    body = b'{"data":[' + b",".join([b"{}"] * count) + b"]}"
    before = _peak_rss_mib(server.process.pid)
    response = server.client.post("/preprocess/batch", content=body, headers={"content-type": "application/json"})
    growth = _peak_rss_mib(server.process.pid) - before
    assert response.status_code == 200
    answer = response.json()
    assert len(answer["results"]) == count
    assert answer["results"][0] == {} == answer["results"][-1]
    assert answer["errors"] == []
    assert growth < 200, f"the server's peak RSS grew by {growth} MiB for a 1 MiB body"


def test_stuck_pre_processing_times_out_with_the_record_and_readiness_follows(make_preprocessing, serve, tmp_path):
    server = serve(make_preprocessing(SLEEPY), env={"REQUEST_TIMEOUT_S": "1", "API_THREADS": "2"})
    assert server.client.get("/ready").status_code == 200

    after = tmp_path / "record-3-ran"
    batch = [{"i": 0}, {"i": 1}, {"sleep": 6}, {"i": 3, "touch": str(after)}]
    response = server.client.post("/preprocess/batch", json={"data": batch})
    assert response.status_code == 504
    body = response.json()
    assert body["type"] == "timeout"
    assert body["index"] == 2
    assert "REQUEST_TIMEOUT_S=1s" in body["error"]
    assert "record 2 of 4" in body["error"]

    single = server.client.post("/preprocess", json={"data": {"sleep": 6}})
    assert single.status_code == 504
    assert single.json()["index"] == 0

    # Both threads are still sleeping in pre_processing, past the timeout: not ready, and /health says why.
    ready = server.client.get("/ready")
    assert ready.status_code == 503
    assert "workers" in ready.json()["waiting_for"]
    health = server.client.get("/health")
    assert health.status_code == 200
    assert health.json()["status"] == "stuck"
    assert health.json()["workers"]["stuck"] >= 1

    # A request that finds both threads busy for longer than its timeout: 504, no record was started.
    queued = server.client.post("/preprocess", json={"data": {"i": 9}})
    assert queued.status_code == 504
    assert queued.json()["type"] == "timeout"
    assert "no record was started" in queued.json()["error"]
    assert "API_THREADS" in queued.json()["error"]

    _wait_for(lambda: server.client.get("/ready").status_code == 200, "/ready to turn 200 again")
    assert server.client.get("/health").json()["status"] == "ok"
    assert not after.exists(), "the timed-out batch went on to the records after the stuck one"
    assert server.client.post("/preprocess", json={"data": {"i": 1}}).json() == {"result": {"i": 1}}


def test_saturated_pool_is_not_ready_while_requests_wait(make_preprocessing, serve):
    server = serve(make_preprocessing(SLEEPY), env={"REQUEST_TIMEOUT_S": "20", "API_THREADS": "1"})
    answers: list[int] = []

    def post(seconds: float) -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            answers.append(client.post("/preprocess", json={"data": {"sleep": seconds}}).status_code)

    threads = [threading.Thread(target=post, args=(2,)) for _ in range(3)]
    for thread in threads:
        thread.start()
    _wait_for(lambda: server.client.get("/ready").status_code == 503, "/ready to answer 503")
    workers = server.client.get("/health").json()["workers"]
    assert workers["threads"] == 1
    assert workers["waiting"] >= 1
    for thread in threads:
        thread.join()
    assert answers == [200, 200, 200]
    assert server.client.get("/ready").status_code == 200


def test_client_disconnects_mid_body_leave_no_traceback_in_the_log(make_preprocessing, serve):
    from conftest import IDENTITY

    server = serve(make_preprocessing(IDENTITY))
    head = (
        b"POST /preprocess/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Content-Length: 100000\r\n\r\n"
    )
    for _ in range(200):
        with socket.create_connection(("127.0.0.1", server.port)) as connection:
            connection.sendall(head + b'{"data": [{"a": 1}, ')
    assert server.client.post("/preprocess/batch", json={"data": [{"a": 1}]}).status_code == 200
    text = server.log.read_text()
    assert "Traceback" not in text
    assert "ClientDisconnect" not in text


def test_credentials_in_pre_processing_errors_are_masked(make_preprocessing, serve):
    code = """
def pre_processing(data):
    raise ConnectionError("cannot reach https://alice:s3cr3t-pw@db.example.com/x?token=tok-123")
"""
    server = serve(make_preprocessing(code), env={"API_ACCESS_LOG": "true"})
    single = server.client.post("/preprocess?api_key=key-456", json={"data": {}})
    batch = server.client.post("/preprocess/batch", json={"data": [{}]})
    assert single.status_code == 422
    assert "https://***@db.example.com/x?token=***" in single.json()["error"]
    assert "https://***@db.example.com/x?token=***" in batch.json()["errors"][0]["error"]
    for text in (single.text, batch.text, server.log.read_text()):
        assert "s3cr3t-pw" not in text
        assert "tok-123" not in text
    assert "api_key=***" in server.log.read_text()  # the access log line, masked
    assert "key-456" not in server.log.read_text()
