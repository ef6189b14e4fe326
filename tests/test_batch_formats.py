"""Batch mode reads JSONL, JSON documents and Avro (container and schemaless), detected or forced."""

from __future__ import annotations

import io
import json

import fastavro
import orjson
import pytest
from conftest import IDENTITY, ROOT, run_cli

from mlprep.batch.run import BatchOptions, run_batch
from mlprep.runtime.codecs.json_document import JsonDocumentCodec
from mlprep.runtime.core import Preprocessor

SCHEMA = {
    "type": "record",
    "name": "Alert",
    "fields": [
        {"name": "objectId", "type": "string"},
        {"name": "mag", "type": "double"},
        {"name": "cutoutScience", "type": ["null", "bytes"], "default": None},
        {"name": "cutoutTemplate", "type": ["null", "bytes"], "default": None},
        {"name": "cutoutDifference", "type": ["null", "bytes"], "default": None},
    ],
}
ALERTS = [
    {
        "objectId": f"ZTF{i}",
        "mag": 18.5 + i,
        "cutoutScience": b"\x00\x01",
        "cutoutTemplate": None,
        "cutoutDifference": b"gz",
    }
    for i in range(3)
]


def lines(data: bytes) -> list:
    return [json.loads(line) for line in data.splitlines()]


@pytest.fixture
def identity(make_preprocessing):
    return make_preprocessing(IDENTITY)


def run(pre_dir, source_bytes: bytes, name: str = "input", **options):
    """In-process run over an in-memory stream named ``name``."""
    pre = Preprocessor.load(pre_dir, skip_cutouts=options.pop("skip_cutouts", False))
    out, err = io.BytesIO(), io.StringIO()
    stream = io.BufferedReader(io.BytesIO(source_bytes))
    import mlprep.batch.run as batch

    original = batch._open
    batch._open = lambda source: stream
    try:
        summary = run_batch(pre, [name], out, err, BatchOptions(**options))
    finally:
        batch._open = original
    return out.getvalue(), err.getvalue(), summary


def test_jsonl(identity):
    out, _, summary = run(identity, b'{"a": 1}\n\n{"a": 2}\r\n{"a": 3}')
    assert lines(out) == [{"a": 1}, {"a": 2}, {"a": 3}]
    assert (summary.n_in, summary.n_out, summary.n_failed) == (3, 3, 0)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        (b'{"a": 1}', [{"a": 1}]),
        (b'[{"a": 1}, {"a": 2}]', [{"a": 1}, {"a": 2}]),
        (b'{\n  "a": {\n    "b": [1, 2]\n  }\n}\n', [{"a": {"b": [1, 2]}}]),
        (b'{"a": 1} {"a": 2}\n{"a": 3}', [{"a": 1}, {"a": 2}, {"a": 3}]),
        (b"\xef\xbb\xbf[]", []),
    ],
    ids=["object", "array", "pretty", "concatenated", "empty-array-with-bom"],
)
def test_json_documents(identity, document, expected):
    out, _, summary = run(identity, document, name="input.json")
    assert lines(out) == expected
    assert summary.n_failed == 0


def test_large_json_array_is_streamed_not_loaded_whole():
    """The first records come out after reading the first megabyte, not the whole array."""
    record = b'{"id": 1, "payload": "' + b"x" * 200 + b'", "n": 12345}'
    count = 30_000  # ~7 MB
    source = io.BytesIO(b"[" + b",\n".join([record] * count) + b"]")
    reads = []
    original_read1 = source.read1

    def tracked_read1(size=-1):
        data = original_read1(size)
        reads.append(len(data))
        return data

    source.read1 = tracked_read1
    chunks = JsonDocumentCodec().chunks(source, "big.json")
    first = next(chunks)
    assert first.lines and orjson.loads(first.lines[0])["n"] == 12345  # decoded where processed
    assert sum(reads) <= 2 * 1024 * 1024
    total = len(first.lines) + sum(len(c.lines) for c in chunks)
    assert total == count


def test_json_number_split_across_reads(identity):
    """A number cut by a read boundary is not taken as two numbers."""
    out, _, _ = run(identity, b"[" + b" " * (1024 * 1024 - 5) + b"1234567]", name="x.json")
    assert lines(out) == [1234567]


def test_avro_container_is_detected_by_magic_bytes(identity):
    buffer = io.BytesIO()
    fastavro.writer(buffer, fastavro.parse_schema(SCHEMA), ALERTS)
    out, _, summary = run(identity, buffer.getvalue(), name="no-extension")
    records = lines(out)
    assert [r["objectId"] for r in records] == ["ZTF0", "ZTF1", "ZTF2"]
    assert records[0]["cutoutScience"] == "AAE="  # bytes as base64
    assert summary.n_out == 3


def test_schemaless_avro_with_schema_file_and_skip_cutouts(identity, tmp_path):
    schema_path = tmp_path / "alert.avsc"
    schema_path.write_text(json.dumps(SCHEMA))
    buffer = io.BytesIO()
    for alert in ALERTS:
        fastavro.schemaless_writer(buffer, fastavro.parse_schema(SCHEMA), alert)
    out, _, _ = run(identity, buffer.getvalue(), name="alerts.avro", avro_schema=str(schema_path), skip_cutouts=True)
    assert lines(out) == [{"objectId": f"ZTF{i}", "mag": 18.5 + i} for i in range(3)]


def test_schemaless_avro_without_schema_says_what_to_pass(identity):
    _, err, summary = run(identity, b"\x02\x04ab", name="alerts.avro")
    assert summary.n_failed == 1
    assert "--avro-schema" in err


def test_input_format_override(identity):
    out, _, _ = run(identity, b'{"a": 1}\n{"a": 2}\n', name="data.json", input_format="jsonl")
    assert lines(out) == [{"a": 1}, {"a": 2}]


def test_outputs_list_none_and_batch_function(make_preprocessing):
    folder = make_preprocessing(
        """
        def pre_processing(data):
            if data["n"] == 0:
                return None
            return [{"n": data["n"], "copy": i} for i in range(data["n"])]
        """
    )
    out, _, summary = run(folder, b'{"n": 0}\n{"n": 2}\n{"n": 1}\n')
    assert lines(out) == [{"n": 2, "copy": 0}, {"n": 2, "copy": 1}, {"n": 1, "copy": 0}]
    assert (summary.n_in, summary.n_out) == (3, 3)


def test_pre_processing_batch_is_used_and_falls_back_per_record_on_error(make_preprocessing):
    folder = make_preprocessing(
        """
        import pandas as pd
        CALLS = {"batch": 0}

        def pre_processing(data):
            if data["x"] < 0:
                raise ValueError("negative x")
            return {"x2": data["x"] * 2, "path": "single"}

        def pre_processing_batch(records):
            CALLS["batch"] += 1
            frame = pd.DataFrame(records)
            if (frame["x"] < 0).any():
                raise ValueError("negative x somewhere")
            return frame.assign(x2=frame["x"] * 2, path="batch")[["x2", "path"]]
        """
    )
    out, _, _ = run(folder, b'{"x": 1}\n{"x": 2}\n')
    assert lines(out) == [{"x2": 2, "path": "batch"}, {"x2": 4, "path": "batch"}]
    out, err, summary = run(folder, b'{"x": 1}\n{"x": -1}\n{"x": 3}\n', on_error="skip")
    assert lines(out) == [{"x2": 2, "path": "single"}, {"x2": 6, "path": "single"}]
    assert "line 2" in err and "negative x" in err
    assert summary.n_failed == 1


def test_skip_cutouts_from_environment(tmp_path, identity):
    record = {"objectId": "a", "cutoutScience": "x", "cutoutTemplate": "y", "cutoutDifference": "z", "k": 1}
    result = run_cli("run", "-p", str(identity), stdin=orjson.dumps(record), env={"SKIP_CUTOUTS": "true"})
    assert result.returncode == 0, result.stderr
    assert lines(result.stdout) == [{"objectId": "a", "k": 1}]


def test_files_in_sequence_with_mixed_formats(tmp_path, identity):
    (tmp_path / "a.jsonl").write_bytes(b'{"f": "a"}\n')
    (tmp_path / "b.json").write_bytes(b'[{"f": "b"}]')
    with open(tmp_path / "c.avro", "wb") as handle:
        fastavro.writer(handle, fastavro.parse_schema(SCHEMA), ALERTS[:1])
    result = run_cli(
        "run", "-p", str(identity), "--skip-cutouts", *(str(tmp_path / n) for n in ("a.jsonl", "b.json", "c.avro"))
    )
    assert result.returncode == 0, result.stderr
    assert lines(result.stdout) == [{"f": "a"}, {"f": "b"}, {"objectId": "ZTF0", "mag": 18.5}]
    assert result.stderr.decode().strip().endswith("3 in, 3 out, 0 failed")


def test_shipped_example_over_shipped_sample_data():
    example = ROOT / "examples" / "simple_preprocessing.py"
    result = run_cli("run", "-p", str(example), str(ROOT / "examples/data/sample.jsonl"))
    assert result.returncode == 0, result.stderr
    records = lines(result.stdout)
    assert len(records) == 6  # the record marked "drop" is dropped
    assert records[0]["contract"] == "month_to_month" and records[0]["total_charges_estimate"] == 140.7


def test_a_failing_pre_processing_batch_is_logged_once_and_counted(make_preprocessing, tmp_path):
    folder = make_preprocessing(
        """
        def pre_processing(data):
            return data

        def pre_processing_batch(records):
            raise RuntimeError("vectorised path broken")
        """
    )
    data = b"".join(b'{"i": %d}\n' % i for i in range(30_000))  # several chunks
    result = run_cli("run", "-p", str(folder), stdin=data)
    err = result.stderr.decode()
    assert result.returncode == 0, err
    assert len(result.stdout.splitlines()) == 30_000
    assert err.count("pre_processing_batch raised RuntimeError: vectorised path broken") == 1
    assert "redone one record at a time" in err
    from mlprep.runtime.core import Preprocessor

    pre = Preprocessor.load(folder)
    for _ in range(3):
        outputs, failures = pre.apply([{"i": 1}, {"i": 2}])
        assert outputs == [{"i": 1}, {"i": 2}] and not failures
    assert pre.batch_fallbacks == 3
