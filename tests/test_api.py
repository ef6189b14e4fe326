"""The REST API against a real uvicorn server on a loopback port."""

from __future__ import annotations

import itertools
import threading
import time

import httpx
import pytest

CODE = """
import time

def pre_processing(data):
    if "sleep" in data:
        time.sleep(data["sleep"])
    if data.get("boom"):
        raise ValueError("boom requested")
    if data.get("drop"):
        return None
    if data.get("weird"):
        return {"v": object()}
    return {**data, "ok": True}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from conftest import Server, write_files

    folder = write_files(
        tmp_path_factory.mktemp("api") / "pp",
        {
            "preprocessing.py": CODE,
            "requirements.txt": "",
            "run_info.json": '{"run_id": "0123456789abcdef0123456789abcdef", "model_name": "churn", "version": "2"}',
        },
    )
    server = Server(folder, env={"MAX_BODY_BYTES": "2000", "MODEL_VERSION": "7"})
    yield server
    server.stop()


def test_preprocess_one_record(server):
    response = server.client.post("/preprocess", json={"data": {"test": "data", "value": 123}})
    assert response.status_code == 200
    assert response.json() == {"result": {"test": "data", "value": 123, "ok": True}}


def test_dropped_record_is_null(server):
    assert server.client.post("/preprocess", json={"data": {"drop": True}}).json() == {"result": None}


def test_batch_in_order_with_per_index_errors(server):
    data = [{"i": 0}, {"i": 1, "boom": True}, 7, {"i": 3, "weird": True}, {"i": 4}]
    response = server.client.post("/preprocess/batch", json={"data": data})
    assert response.status_code == 200
    body = response.json()
    assert body["results"] == [{"i": 0, "ok": True}, None, None, None, {"i": 4, "ok": True}]
    assert [(e["index"], e["stage"]) for e in body["errors"]] == [(1, "preprocess"), (2, "decode"), (3, "serialize")]
    assert "ValueError: boom requested" in body["errors"][0]["error"]


def test_exception_in_pre_processing_is_an_error_for_that_request_only(server):
    response = server.client.post("/preprocess", json={"data": {"boom": True}})
    assert response.status_code == 422
    assert response.json()["type"] == "ValueError"
    assert "boom requested" in response.json()["error"]
    assert server.client.post("/preprocess", json={"data": {"after": 1}}).status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/preprocess", b"{not json", 400, "not valid JSON"),
        ("/preprocess", b'{"records": []}', 422, '"data" field'),
        ("/preprocess", b"[1, 2]", 422, '"data" field'),
        ("/preprocess", b'{"data": [1]}', 422, "must be a JSON object"),
        ("/preprocess/batch", b'{"data": {"a": 1}}', 422, "must be a JSON array"),
        ("/preprocess", b'{"data": {"x": "' + b"y" * 3000 + b'"}}', 413, "MAX_BODY_BYTES"),
    ],
)
def test_bad_requests_get_a_4xx_naming_the_problem(server, path, body, status, words):
    response = server.client.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == status
    assert words in response.json()["error"]


def test_body_over_limit_without_content_length_is_refused(server):
    def chunks():
        for _ in range(10):
            yield b'{"data": {"x": "' + b"y" * 500

    response = server.client.post("/preprocess", content=chunks())
    assert response.status_code == 413


def test_unserialisable_output_is_a_500_with_the_reason(server):
    response = server.client.post("/preprocess", json={"data": {"weird": True}})
    assert response.status_code == 500
    assert "cannot be serialised" in response.json()["error"]


def test_health_ready_docs_and_openapi(server):
    health = server.client.get("/health").json()
    assert health["status"] == "ok"
    assert health["preprocessing"]["path"].endswith("pp/preprocessing.py")
    assert health["run_id"] == "0123456789abcdef0123456789abcdef"
    assert health["model_name"] == "churn"
    assert health["model_version"] == "7"  # the environment wins over run_info.json
    assert server.client.get("/ready").json() == {"ready": True, "waiting_for": []}
    assert "swagger" in server.client.get("/docs").text.lower()
    spec = server.client.get("/openapi.json").json()
    assert {"/preprocess", "/preprocess/batch", "/health", "/ready", "/metrics"} <= set(spec["paths"])
    request_schema = spec["paths"]["/preprocess/batch"]["post"]["requestBody"]["content"]["application/json"]
    assert request_schema["schema"]["required"] == ["data"]


def test_metrics_count_requests_records_errors_and_latency(server):
    server.client.post("/preprocess/batch", json={"data": [{"a": 1}, {"boom": True}]})
    text = server.client.get("/metrics").text
    assert 'mlprep_requests_total{endpoint="/preprocess/batch",status="200"}' in text
    assert 'mlprep_records_total{endpoint="/preprocess/batch"}' in text
    assert 'mlprep_record_errors_total{endpoint="/preprocess/batch",stage="preprocess"}' in text
    assert 'mlprep_request_duration_seconds_bucket{endpoint="/preprocess/batch",le="+Inf"}' in text


def test_slow_preprocessing_does_not_block_the_event_loop(server):
    """While one request sleeps in pre_processing, /health and other records are answered."""
    slow = threading.Thread(target=lambda: server.client.post("/preprocess", json={"data": {"sleep": 2}}))
    slow.start()
    time.sleep(0.3)
    begin = time.monotonic()
    with httpx.Client(base_url=server.url) as other:
        assert other.get("/health").status_code == 200
        assert other.post("/preprocess", json={"data": {"quick": 1}}).status_code == 200
    assert time.monotonic() - begin < 1.0
    slow.join()


def test_several_api_workers(make_preprocessing, serve):
    """Two worker processes, with a preprocessing folder that is also a runnable package (a sibling
    ``__main__.py``): loading it must leave the process's own ``__main__``, which spawning needs."""
    from conftest import IDENTITY

    folder = make_preprocessing(IDENTITY, {"__main__.py": "print('the package run as a script')\n"})
    server = serve(folder, env={"API_WORKERS": "2"})
    for n in range(5):
        assert server.client.post("/preprocess", json={"data": {"n": n}}).json() == {"result": {"n": n}}


def test_server_refuses_to_start_on_a_broken_preprocessing(make_preprocessing):
    from conftest import run_cli

    result = run_cli("serve", "-p", str(make_preprocessing("import nowhere_pkg_abc\n")), timeout=30)
    assert result.returncode == 2
    assert "nowhere_pkg_abc" in result.stderr.decode()


def parse_metrics(text: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        f"{sample.name}{sorted(sample.labels.items())}": sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.name.endswith("_created")
    }


def test_metrics_with_two_worker_processes_add_up_and_never_go_back(tmp_path):
    """API_WORKERS=2: whichever process answers a scrape, it reports both, and counters only grow."""
    from concurrent.futures import ThreadPoolExecutor

    from conftest import IDENTITY, Server, write_files

    server = Server(write_files(tmp_path / "pp", {"preprocessing.py": IDENTITY}), env={"API_WORKERS": "2"})
    sent = 400
    try:

        def load() -> None:
            with httpx.Client(base_url=server.url, timeout=30) as client:
                for i in range(sent // 4):
                    assert client.post("/preprocess", json={"data": {"i": i}}).status_code == 200

        scrapes = []
        with ThreadPoolExecutor(4) as pool:
            running = [pool.submit(load) for _ in range(4)]
            for _ in range(50):
                with httpx.Client(base_url=server.url, timeout=30) as scraper:  # a new connection: any worker
                    scrapes.append(parse_metrics(scraper.get("/metrics").text))
            for future in running:
                future.result()
        with httpx.Client(base_url=server.url, timeout=30) as scraper:
            final = parse_metrics(scraper.get("/metrics").text)
        scrapes.append(final)
    finally:
        server.stop()
    for before, after in itertools.pairwise(scrapes):
        for name, value in before.items():
            if name.startswith(("mlprep_requests_total", "mlprep_records_total", "mlprep_request_duration")):
                assert after.get(name, 0) >= value, f"{name} went from {value} to {after.get(name)}"
    key = "mlprep_requests_total[('endpoint', '/preprocess'), ('status', '200')]"
    assert final[key] == sent
