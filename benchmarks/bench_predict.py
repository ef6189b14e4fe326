"""One inference service against the two-hop chain, under wrk on loopback, one server worker each.

The churn model (scikit-learn pipeline, as the churn training logs it) and its preprocessing
(``churn/features.py``) are served two ways:
- ours: ``mlprep serve --model`` answers ``/predict`` with raw customer records;
- the chain a team runs today: ``mlprep serve`` ``/preprocess`` (or ``/preprocess/batch``), then
  ``mlflow models serve`` ``/invocations`` with the preprocessed records.

wrk measures each endpoint with the body it gets in that chain. The chain is credited generously:
its throughput is that of its slower hop (as if each hop had a core of its own and the client cost
nothing), its median latency the sum of its two hops' medians (one connection each). Targets:
``/predict`` >= 5x the chain's requests/s and <= 1/3 of its median latency, for one record and for
batches of 100.

Needs the bench extras (mlflow, scikit-learn) and wrk: run it through ``make bench``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
from common import WORK, report, wrk

from mlprep import services
from mlprep.services import free_port

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
from churn import data, features, model  # noqa: E402

MODEL = WORK / "churn-model"
PREPROCESSING = Path(features.__file__)


def save_churn_model() -> list[dict]:
    """The churn model saved as the training run logs it; raw records to send (label dropped)."""
    import mlflow.sklearn
    from mlflow.models import infer_signature

    from churn import tracking

    frame = data.generate(2000, seed=11)
    x = features.transform_frame(frame.drop(columns=[data.TARGET]))
    fitted = model.train(x, frame[data.TARGET].astype(int))
    shutil.rmtree(MODEL, ignore_errors=True)
    example = x.head(5)
    mlflow.sklearn.save_model(
        fitted,
        str(MODEL),
        signature=infer_signature(example, fitted.predict(example)),
        input_example=example,
        skops_trusted_types=tracking.TRUSTED_TYPES,
    )
    return frame.drop(columns=[data.TARGET]).head(100).to_dict(orient="records")


def start(*args: str, **env: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mlprep", "serve", *args],
        env={**os.environ, **env, "API_HOST": "127.0.0.1", "API_PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return process, f"http://127.0.0.1:{port}"


def measure(records: list[dict], ours: str, pre: str, theirs: str) -> dict[str, tuple[float, float]]:
    """(requests/s at 16 connections, median ms at one connection) of each endpoint."""
    preprocessed = httpx.post(f"{pre}/preprocess/batch", json={"data": records}, timeout=30).json()["results"]
    one, batch = {"data": records[0]}, {"data": records}
    bodies = {
        "predict-1": (f"{ours}/predict", one),
        "predict-100": (f"{ours}/predict", batch),
        "preprocess-1": (f"{pre}/preprocess", one),
        "preprocess-100": (f"{pre}/preprocess/batch", batch),
        "invocations-1": (f"{theirs}/invocations", {"dataframe_records": preprocessed[:1]}),
        "invocations-100": (f"{theirs}/invocations", {"dataframe_records": preprocessed}),
    }
    figures = {}
    for name, (url, body) in bodies.items():
        rate, _ = wrk(url, body)
        _, median = wrk(url, body, connections="1")
        figures[name] = (rate, median)
        print(f"  {name:<16} {rate:>9,.0f} req/s (16 connections)   median {median:7.2f} ms (1 connection)", flush=True)
    return figures


def main() -> bool:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed: apt-get install wrk (make bench does it)")
    records = save_churn_model()
    ours, ours_url = start("--model", str(MODEL), "-p", str(PREPROCESSING))
    pre, pre_url = start("-p", str(PREPROCESSING))
    port = free_port()
    theirs = services.start_model_server(str(MODEL), port)
    theirs_url = f"http://127.0.0.1:{port}"
    try:
        services.wait_http(f"{ours_url}/health", process=ours)
        services.wait_http(f"{pre_url}/health", process=pre)
        services.wait_http(f"{theirs_url}/ping", process=theirs)
        figures = measure(records, ours_url, pre_url, theirs_url)
    finally:
        for process in (ours, pre, theirs):
            services.stop_group(process)
    ok = True
    for size in ("1", "100"):
        chain_rate = min(figures[f"preprocess-{size}"][0], figures[f"invocations-{size}"][0])
        chain_median = figures[f"preprocess-{size}"][1] + figures[f"invocations-{size}"][1]
        rate, median = figures[f"predict-{size}"]
        unit = "record" if size == "1" else "batch of 100 records"
        ok &= report(
            f"Predictions, one {unit} per request: requests/s (wrk, 16 connections)",
            [("two hops: /preprocess + mlflow /invocations", chain_rate), ("mlprep serve --model /predict", rate)],
            "req/s",
            "two hops: /preprocess + mlflow /invocations",
            {"mlprep serve --model /predict": 5.0},
        )
        ratio = median / chain_median
        met = ratio <= 1 / 3
        ok &= met
        print(
            f"  median latency (1 connection): /predict {median:.2f} ms, two hops {chain_median:.2f} ms: "
            f"{ratio:.2f}x   target <= 0.33x: {'met' if met else 'MISSED'}"
        )
    return ok


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
