"""Bad input: every bad record is reported with its place and reason, nothing is lost."""

from __future__ import annotations

import json

import pytest
from conftest import IDENTITY, run_cli

RAISES_ON_BOOM = """
def pre_processing(data):
    if data.get("boom"):
        raise KeyError("missing_field")
    if data.get("weird"):
        return {"value": object()}
    return data
"""


@pytest.fixture
def picky(make_preprocessing):
    return make_preprocessing(RAISES_ON_BOOM)


BAD_INPUT = b'{"n": 1}\nnot json\n{"n": 3, "boom": true}\n{"n": 4, "weird": true}\n{"n": 5}\n'


def test_skip_reports_each_bad_record_and_goes_on(picky, tmp_path):
    dead = tmp_path / "dead.jsonl"
    result = run_cli("run", "-p", str(picky), "--on-error", "skip", "--dead-letter", str(dead), stdin=BAD_INPUT)
    assert result.returncode == 1
    assert [json.loads(x)["n"] for x in result.stdout.splitlines()] == [1, 5]
    err = result.stderr.decode()
    assert "<stdin>: line 2: decode failed: invalid JSON at column" in err
    assert "<stdin>: line 3: preprocess failed: pre_processing raised KeyError: 'missing_field'" in err
    assert "preprocessing.py:4 in pre_processing" in err
    assert "<stdin>: line 4: serialize failed" in err
    assert err.strip().splitlines()[-1] == "mlprep: 5 in, 2 out, 3 failed"
    letters = [json.loads(x) for x in dead.read_text().splitlines()]
    assert [(d["line"], d["stage"]) for d in letters] == [(2, "decode"), (3, "preprocess"), (4, "serialize")]
    assert letters[0]["raw"] == "not json"
    assert json.loads(letters[1]["raw"]) == {"n": 3, "boom": True}
    assert "KeyError" in letters[1]["error"]


def test_fail_stops_at_the_first_bad_record(picky, tmp_path):
    dead = tmp_path / "dead.jsonl"
    result = run_cli(
        "run", "-p", str(picky), "--dead-letter", str(dead), stdin=b'{"n": 1}\n{"n": 2, "boom": true}\n{"n": 3}\n'
    )
    assert result.returncode == 1
    assert [json.loads(x)["n"] for x in result.stdout.splitlines()] == [1]
    assert result.stderr.decode().strip().endswith("2 in, 1 out, 1 failed")
    assert len(dead.read_text().splitlines()) == 1


def test_all_good_exits_zero_with_summary(make_preprocessing):
    result = run_cli("run", "-p", str(make_preprocessing(IDENTITY)), stdin=b'{"a": 1}\n{"a": 2}\n')
    assert result.returncode == 0
    assert result.stderr.decode().strip() == "mlprep: 2 in, 2 out, 0 failed"


def test_broken_json_document_says_line_and_column(make_preprocessing, tmp_path):
    source = tmp_path / "broken.json"
    source.write_text('[\n  {"a": 1},\n  {"a": 2,, }\n]')
    result = run_cli("run", "-p", str(make_preprocessing(IDENTITY)), "--on-error", "skip", str(source))
    assert result.returncode == 1
    assert [json.loads(x) for x in result.stdout.splitlines()] == [{"a": 1}]
    assert f"{source}: record 2: decode failed: invalid JSON at line 3 column 11" in result.stderr.decode()


def test_corrupt_avro_is_reported_and_next_file_still_runs(make_preprocessing, tmp_path):
    import fastavro

    schema = fastavro.parse_schema({"type": "record", "name": "R", "fields": [{"name": "n", "type": "long"}]})
    with open(tmp_path / "good.avro", "wb") as handle:
        fastavro.writer(handle, schema, [{"n": i} for i in range(5)])
    data = (tmp_path / "good.avro").read_bytes()
    (tmp_path / "bad.avro").write_bytes(data[:-6])  # truncated block
    (tmp_path / "after.jsonl").write_text('{"n": 99}\n')
    result = run_cli(
        "run",
        "-p",
        str(make_preprocessing(IDENTITY)),
        "--on-error",
        "skip",
        str(tmp_path / "bad.avro"),
        str(tmp_path / "missing.jsonl"),
        str(tmp_path / "after.jsonl"),
    )
    err = result.stderr.decode()
    assert result.returncode == 1
    assert "bad.avro: record 6: decode failed: Avro decode error" in err  # 5 records read, then the cut
    assert "missing.jsonl: record 1: open failed: cannot read input: No such file or directory" in err
    assert json.loads(result.stdout.splitlines()[-1]) == {"n": 99}


def test_loading_errors_exit_2_with_a_message(tmp_path):
    result = run_cli("run", "-p", str(tmp_path / "nope"))
    assert result.returncode == 2
    assert result.stderr.decode().startswith("mlprep: error: preprocessing not found")


def test_invalid_environment_variable_is_named(make_preprocessing):
    result = run_cli("run", "-p", str(make_preprocessing(IDENTITY)), env={"SKIP_CUTOUTS": "perhaps"})
    assert result.returncode == 2
    assert "SKIP_CUTOUTS" in result.stderr.decode()


MIXED = """
def pre_processing(data):
    kind, n = data["kind"], data["n"]
    if kind == "raise":
        raise ValueError(f"bad {n}")
    if kind == "drop":
        return None
    if kind == "many":
        return [{"n": n, "part": 1}, None, {"n": n, "part": 2}]
    if kind == "int_keys":
        return {"n": n, 7: "seven"}
    if kind == "unserialisable":
        return {"n": n, "x": object()}
    return {"n": n}
"""


@pytest.mark.parametrize(
    "kinds",
    [
        ("keep", "drop"),
        ("keep", "int_keys"),
        ("keep", "unserialisable"),
        ("keep", "raise", "raise"),
        ("keep", "drop", "many", "int_keys", "unserialisable", "raise"),
    ],
)
def test_each_output_and_failure_keeps_its_place_in_long_chunks(make_preprocessing, kinds):
    """Thousands of records a chunk, each outcome mixed with plain ones: the output keeps the input order
    and every failure names its own line, stage and record."""
    records = [{"n": n, "kind": kinds[n % len(kinds)] if n % 7 else "keep"} for n in range(1, 5001)]
    expected, failures = [], []
    for line, record in enumerate(records, start=1):
        n, kind = record["n"], record["kind"]
        if kind == "raise":
            failures.append((line, "preprocess", f"pre_processing raised ValueError: bad {n}"))
        elif kind == "unserialisable":
            failures.append((line, "serialize", "output cannot be serialised to JSON"))
        elif kind == "many":
            expected += [{"n": n, "part": 1}, {"n": n, "part": 2}]
        elif kind == "int_keys":
            expected.append({"n": n, "7": "seven"})
        elif kind == "keep":
            expected.append({"n": n})
    stdin = b"".join(json.dumps(record).encode() + b"\n" for record in records)
    result = run_cli("run", "-p", str(make_preprocessing(MIXED)), "--on-error", "skip", stdin=stdin)
    assert [json.loads(line) for line in result.stdout.splitlines()] == expected
    *reported, summary = result.stderr.decode().splitlines()
    assert len(reported) == len(failures)
    for text, (line, stage, reason) in zip(reported, failures, strict=True):
        assert text.startswith(f"mlprep: <stdin>: line {line}: {stage} failed: {reason}"), text
    assert summary == f"mlprep: {len(records)} in, {len(expected)} out, {len(failures)} failed"
    assert result.returncode == (1 if failures else 0)
