"""The Spark front end (``mlprep.spark.preprocess``, ``mlprep run --engine spark``) in Spark's local mode,
against batch mode on the same inputs, a real MLflow server and real executors (Python workers)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from conftest import ROOT, run_cli, write_files

from mlprep.errors import MissingDependencyError
from mlprep.spark.schema import SchemaConflict

# PySpark 4.3 warns that it does not fully support pandas 3; mlprep's Spark jobs exchange Arrow batches
# (mapInArrow) and never convert through pandas, so the warning does not concern them.
pytestmark = pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")

PYTHON_ENV = {"PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable}

# One preprocessing for every kind of outcome: alerts go through the alert example (a sibling module),
# other records are kept, fanned out, dropped, turned into numpy/pandas values, or raise.
MIXED = {
    "preprocessing.py": """
        import numpy as np
        import pandas as pd
        from alert_preprocessing import pre_processing as alert_features

        def pre_processing(record):
            if "candidate" in record:
                assert "cutoutScience" not in record, "--skip-cutouts was not applied"
                return alert_features(record)
            kind = record.get("kind")
            if kind == "drop":
                return None
            if kind == "fan":
                return [{"id": record["id"], "part": part} for part in range(3)]
            if kind == "numpy":
                return {"id": record["id"], "values": np.arange(3), "when": pd.Timestamp("2024-01-02"),
                        "mean": np.float32(0.5), "missing": float("nan")}
            if kind == "raise":
                raise ValueError(f"record {record['id']} is bad")
            return {"id": record["id"], "kept": True}
    """,
}


@pytest.fixture(scope="session")
def spark():
    """One local[2] session for every in-process test (it takes seconds to start)."""
    if shutil.which("java") is None:
        from infra import _apt_install

        _apt_install("openjdk-17-jre-headless")
    for name, value in PYTHON_ENV.items():  # the executors' Python must have pyarrow: this venv's
        os.environ[name] = value
    from pyspark.sql import SparkSession

    session = SparkSession.builder.master("local[2]").appName("mlprep-tests").getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def _mixed_folder(tmp_path: Path) -> Path:
    folder = write_files(tmp_path / "mixed", MIXED)
    shutil.copy(ROOT / "examples" / "alerts" / "alert_preprocessing.py", folder)
    return folder


def _inputs(tmp_path: Path) -> list[Path]:
    kinds = ["keep", "fan", "drop", "numpy", "raise"]
    lines = [json.dumps({"id": i, "kind": kinds[i % len(kinds)]}) for i in range(40)]
    lines[7] = '{"id": 7, broken'  # a decode failure
    lines.insert(12, "")  # a blank line: skipped, counted nowhere
    jsonl = tmp_path / "records.jsonl"
    jsonl.write_text("\n".join(lines) + "\n")
    document = tmp_path / "records.json"
    document.write_text(json.dumps([{"id": 100 + i, "kind": kinds[i % len(kinds)]} for i in range(12)], indent=1))
    alerts = tmp_path / "alerts.avro"
    generate = [sys.executable, str(ROOT / "examples/alerts/generate_alerts.py"), "--count", "30", "--out", str(alerts)]
    subprocess.run(generate, check=True, capture_output=True)
    return [jsonl, document, alerts]


def _canonical(lines: list[str]) -> list[str]:
    return sorted(json.dumps(json.loads(line), sort_keys=True) for line in lines if line.strip())


def _failures(lines: list[str]) -> set[tuple[str, str, int]]:
    found = set()
    for line in lines:
        entry = json.loads(line)
        found.add((Path(entry["source"]).name, entry["stage"], entry.get("line", entry.get("record"))))
    return found


def _part_lines(folder: Path) -> list[str]:
    return [line for part in sorted(folder.glob("part-*")) for line in part.read_text().splitlines()]


def test_spark_engine_matches_batch_mode(tmp_path):
    folder = _mixed_folder(tmp_path)
    inputs = [str(p) for p in _inputs(tmp_path)]
    batch = run_cli(
        "run", "-p", str(folder), "--skip-cutouts", "--on-error", "skip", "--dead-letter", str(tmp_path / "dead.jsonl"),
        "-o", str(tmp_path / "batch.jsonl"), *inputs,
    )  # fmt: skip
    assert batch.returncode == 1, batch.stderr.decode()
    out_dir = tmp_path / "spark-out"
    spark = run_cli(
        "run", "--engine", "spark", "--master", "local[2]", "-p", str(folder), "--skip-cutouts",
        "-o", str(out_dir), *inputs, env=PYTHON_ENV, timeout=240,
    )  # fmt: skip
    err = spark.stderr.decode()
    assert spark.returncode == 1, err
    batch_summary = batch.stderr.decode().strip().splitlines()[-1]
    assert err.strip().splitlines()[-1] == batch_summary  # N in, M out, K failed
    assert batch_summary == "mlprep: 82 in, 84 out, 11 failed"

    batch_out = (tmp_path / "batch.jsonl").read_text().splitlines()
    assert _canonical(_part_lines(out_dir)) == _canonical(batch_out)
    assert sum('"candidate_id"' in line or '"objectId"' in line for line in batch_out) == 30  # alerts went through
    dead = (tmp_path / "dead.jsonl").read_text().splitlines()
    spark_failures = _part_lines(out_dir / "_failures")
    assert _failures(spark_failures) == _failures(dead)
    assert ("records.jsonl", "decode", 8) in _failures(spark_failures)
    assert ("records.json", "preprocess", 5) in _failures(spark_failures)
    assert "ValueError: record 4 is bad" in err


def test_parquet_output_is_typed(spark, tmp_path, monkeypatch):
    from mlprep.cli import main

    folder = write_files(tmp_path / "p", {"preprocessing.py": "def pre_processing(r):\n    return {'n': r['n'] * 2}\n"})
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"n": n}) + "\n" for n in range(10)))
    status = main(["run", "--engine", "spark", "-p", str(folder), "-o", str(tmp_path / "o"),
                   "--output-format", "parquet", str(tmp_path / "in.jsonl")])  # fmt: skip
    assert status == 0
    frame = spark.read.parquet(str(tmp_path / "o"))
    assert frame.schema.simpleString() == "struct<n:bigint>"
    assert sorted(row.n for row in frame.collect()) == [n * 2 for n in range(10)]


def test_dataframe_api_fan_out_drop_failure_and_batch_function(spark, make_preprocessing):
    folder = make_preprocessing(
        """
        def pre_processing(record):
            if record["n"] == 3:
                raise KeyError("three")
            if record["n"] % 2:
                return None
            return [{"n": record["n"], "copy": c} for c in range(2)]

        def pre_processing_batch(records):
            if any(r["n"] == 3 for r in records):
                raise ValueError("the chunk holds 3: redo one at a time")
            return [{"n": r["n"], "batch": True} for r in records]
        """
    )
    import mlprep.spark

    schema = "n long, copy long, batch boolean"
    frame = spark.createDataFrame([(n,) for n in range(8)], "n long").coalesce(1)  # one Arrow batch
    outputs, failures = mlprep.spark.preprocess(frame, folder, schema=schema)
    # pre_processing_batch raised on the batch holding 3: it was redone one record at a time.
    assert sorted((r.n, r.copy, r.batch) for r in outputs.collect()) == [
        (n, copy, None) for n in (0, 2, 4, 6) for copy in (0, 1)
    ]
    without_three = spark.createDataFrame([(n,) for n in (0, 1, 2)], "n long").coalesce(1)
    batched, _ = mlprep.spark.preprocess(without_three, folder, schema=schema)
    assert sorted((r.n, r.copy, r.batch) for r in batched.collect()) == [
        (0, None, True),
        (1, None, True),
        (2, None, True),
    ]
    [failure] = failures.collect()
    assert failure.stage == "preprocess" and "KeyError: 'three'" in failure.error
    assert json.loads(failure.raw) == {"n": 3}
    assert failure.unit == "row" and failure.source.startswith("partition ")


def test_schema_inferred_and_disagreement_named(spark, make_preprocessing):
    import mlprep.spark

    frame = spark.createDataFrame([(n,) for n in range(6)], "n long")
    folder = make_preprocessing("def pre_processing(r):\n    return {'n': r['n'], 'half': r['n'] / 2, 'tag': None}\n")
    outputs, _ = mlprep.spark.preprocess(frame, folder)
    assert outputs.schema.simpleString() == "struct<n:bigint,half:double,tag:string>"
    assert outputs.count() == 6
    wrong = make_preprocessing("def pre_processing(r):\n    return {'n': 'x' if r['n'] == 4 else r['n']}\n")
    outputs, failures = mlprep.spark.preprocess(frame, wrong, schema="n long")
    assert sorted(r.n for r in outputs.collect()) == [0, 1, 2, 3, 5]  # the others went through
    [failure] = failures.collect()
    assert (failure.stage, json.loads(failure.raw)) == ("serialize", {"n": 4})
    assert "does not fit the output schema" in failure.error
    clash = make_preprocessing("def pre_processing(r):\n    return {'v': 'text' if r['n'] % 2 else r['n']}\n")
    with pytest.raises(SchemaConflict, match=r"disagree on field 'v': bigint in one record, string in another"):
        mlprep.spark.preprocess(frame, clash)


def test_run_id_from_mlflow_with_siblings_and_sub_package(spark, mlflow_server, example_run, tmp_path, monkeypatch):
    import mlprep.spark

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server.url)
    frame = spark.createDataFrame([("March 4, 2021",), ("2019-01-02",)], "Signup_Date string")
    outputs, failures = mlprep.spark.preprocess(frame, f"runs:/{example_run}/code/preprocessing.py")
    assert sorted((r.signup_year, r.layout) for r in outputs.collect()) == [(2019, "code"), (2021, "code")]
    assert failures.count() == 0

    code = write_files(
        tmp_path / "run",
        {
            "preprocessing.py": "from helpers import label\nfrom features.scale import double\n"
            "def pre_processing(r):\n    return {'x': double(r['x']), 'label': label(r['x'])}\n",
            "helpers.py": "def label(x):\n    return f'x={x}'\n",
            "features/__init__.py": "",
            "features/scale.py": "def double(x):\n    return 2 * x\n",
        },
    )
    mlflow.set_tracking_uri(mlflow_server.url)
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(code))
    outputs, _ = mlprep.spark.preprocess(spark.createDataFrame([(5,)], "x long"), run.info.run_id)
    assert [(r.x, r.label) for r in outputs.collect()] == [(10, "x=5")]


def test_missing_package_on_the_executors_is_named(spark, make_preprocessing, tmp_path, monkeypatch):
    import mlprep.spark

    # The module exists on the driver only: the executors' Python workers cannot import it.
    write_files(tmp_path / "driver_only", {"mlprep_driver_only_pkg.py": "VALUE = 1\n"})
    monkeypatch.syspath_prepend(str(tmp_path / "driver_only"))
    import mlprep_driver_only_pkg  # noqa: F401 - proves the driver has it

    folder = make_preprocessing("import mlprep_driver_only_pkg\n\ndef pre_processing(r):\n    return r\n")
    frame = spark.createDataFrame([(1,)], "n long")
    with pytest.raises(MissingDependencyError) as raised:
        mlprep.spark.preprocess(frame, folder, schema="n long")
    message = str(raised.value)
    assert message.startswith("on the Spark executors:")
    assert "imports module 'mlprep_driver_only_pkg', which is not installed" in message
    assert "Py4J" not in message and "org.apache.spark" not in message
