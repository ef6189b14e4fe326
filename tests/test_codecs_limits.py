"""What a user sees from `mlprep run` on inputs that used to lose records or crash the run."""

from __future__ import annotations

import io
import json

import fastavro
import orjson
from conftest import IDENTITY, run_cli

NULLS = {"type": "record", "name": "Bomb", "fields": [{"name": "items", "type": {"type": "array", "items": "null"}}]}


def zigzag(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def avro_bomb() -> bytes:
    """One record whose array declares 10^12 null items: 9 bytes that ask for terabytes."""
    return zigzag(10**12) + zigzag(0)


def run(preprocessing, *args: str, env: dict[str, str] | None = None):
    result = run_cli("run", "-p", str(preprocessing), "--on-error", "skip", *args, env=env, timeout=120)
    return result, [orjson.loads(line) for line in result.stdout.splitlines()], result.stderr.decode()


def test_json_array_with_literals_across_read_boundaries_keeps_every_record(make_preprocessing, tmp_path):
    source = tmp_path / "t.json"
    source.write_text(json.dumps([{"id": i, "flag": True, "none": None, "x": 1.5e-7} for i in range(100_000)]))
    result, records, err = run(make_preprocessing(IDENTITY), str(source))
    assert [r["id"] for r in records] == list(range(100_000))
    assert err.strip() == "mlprep: 100000 in, 100000 out, 0 failed"
    assert result.returncode == 0


def test_json_array_with_escapes_across_read_boundaries_keeps_every_record(make_preprocessing, tmp_path):
    source = tmp_path / "e.json"
    source.write_text(json.dumps([{"id": i, "s": "é😀"} for i in range(30_000)], ensure_ascii=True))
    result, records, err = run(make_preprocessing(IDENTITY), str(source))
    assert len(records) == 30_000 and records[-1] == {"id": 29_999, "s": "é😀"}
    assert result.returncode == 0, err


def test_jsonl_with_byte_order_mark_keeps_its_first_line(make_preprocessing, tmp_path):
    source = tmp_path / "bom.jsonl"
    source.write_bytes(b'\xef\xbb\xbf{"n": 1}\n{"n": 2}\n')
    result, records, err = run(make_preprocessing(IDENTITY), str(source))
    assert records == [{"n": 1}, {"n": 2}]
    assert err.strip() == "mlprep: 2 in, 2 out, 0 failed"
    assert result.returncode == 0


def test_deeply_nested_json_is_a_failure_of_that_record_and_the_run_goes_on(make_preprocessing, tmp_path):
    deep = "[" * 1000 + "]" * 1000
    deeper = "[" * 5000 + "]" * 5000
    (tmp_path / "a.json").write_text(f'[{deep}, {{"n": 1}}, {deeper}, {{"n": 2}}]')
    (tmp_path / "b.jsonl").write_text(f'{deep}\n{{"n": 3}}\n{deeper}\n{{"n": 4}}\n')
    (tmp_path / "c.jsonl").write_text('{"n": 5}\n')
    args = [str(tmp_path / name) for name in ("a.json", "b.jsonl", "c.jsonl")]
    result, records, err = run(make_preprocessing(IDENTITY), *args)
    assert records == [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}, {"n": 5}]
    assert "a.json: record 1: serialize failed" in err  # parsed, but too deep to write back as JSON
    assert "a.json: record 3: decode failed: invalid JSON at line 1 column" in err
    assert "b.jsonl: line 1: serialize failed" in err
    assert "b.jsonl: line 3: decode failed" in err
    assert err.splitlines()[-1] == "mlprep: 9 in, 5 out, 4 failed"
    assert "Traceback" not in err
    assert result.returncode == 1


def test_deeply_nested_json_with_workers_does_not_crash(make_preprocessing, tmp_path):
    (tmp_path / "a.json").write_text("[" + "[" * 1000 + "]" * 1000 + ', {"n": 1}]')
    result, records, err = run(make_preprocessing(IDENTITY), "--workers", "2", str(tmp_path / "a.json"))
    assert records == [{"n": 1}]
    assert err.splitlines()[-1] == "mlprep: 2 in, 1 out, 1 failed", err
    assert result.returncode == 1


def test_records_over_max_record_bytes_are_reported_and_the_run_goes_on(make_preprocessing, tmp_path):
    big = json.dumps({"s": "x" * 5000})
    (tmp_path / "a.jsonl").write_text(f'{{"n": 1}}\n{big}\n{{"n": 2}}\n')
    (tmp_path / "b.json").write_text(f'[{{"n": 3}}, {big}, {{"n": 4}}]')
    args = [str(tmp_path / "a.jsonl"), str(tmp_path / "b.json")]
    result, records, err = run(make_preprocessing(IDENTITY), *args, env={"MAX_RECORD_BYTES": "1000"})
    assert records == [{"n": 1}, {"n": 2}, {"n": 3}, {"n": 4}]
    assert "a.jsonl: line 2: decode failed: record of 5,009 bytes is larger than the limit of 1,000 bytes" in err
    assert "b.json: record 2: decode failed: record of 5,009 bytes" in err
    assert "MAX_RECORD_BYTES" in err
    assert err.splitlines()[-1] == "mlprep: 6 in, 4 out, 2 failed"
    assert result.returncode == 1


def test_schemaless_avro_bomb_is_a_decode_failure_and_the_next_records_are_read(make_preprocessing, tmp_path):
    schema_path = tmp_path / "bomb.avsc"
    schema_path.write_text(json.dumps(NULLS))
    good = io.BytesIO()
    fastavro.schemaless_writer(good, fastavro.parse_schema(NULLS), {"items": [None, None]})
    source = tmp_path / "bomb.bin"
    source.write_bytes(good.getvalue() + avro_bomb() + good.getvalue())
    args = ["--input-format", "avro", "--avro-schema", str(schema_path), str(source)]
    result, records, err = run(make_preprocessing(IDENTITY), *args)
    assert records == [{"items": [None, None]}] * 2
    assert "bomb.bin: record 2: decode failed: Avro record not decoded: record declares 1,000,000,000,000" in err
    assert "MAX_RECORD_BYTES" in err
    assert err.splitlines()[-1] == "mlprep: 3 in, 2 out, 1 failed"
    assert result.returncode == 1


def test_avro_container_bomb_is_a_decode_failure(make_preprocessing, tmp_path):
    """The writer schema of a container file comes from the file: it is checked like any other."""
    buffer = io.BytesIO()
    fastavro.writer(buffer, fastavro.parse_schema(NULLS), [{"items": []}], sync_marker=b"S" * 16)
    data = buffer.getvalue()
    empty_record = zigzag(1) + zigzag(1) + zigzag(0) + b"S" * 16  # count, size, data, sync
    assert data.endswith(empty_record)
    bomb = avro_bomb()
    source = tmp_path / "bomb.avro"
    source.write_bytes(data[: -len(empty_record)] + zigzag(1) + zigzag(len(bomb)) + bomb + b"S" * 16)
    result, records, err = run(make_preprocessing(IDENTITY), str(source))
    assert records == []
    assert "bomb.avro: record 1: decode failed: Avro record not decoded: record declares" in err
    assert err.splitlines()[-1] == "mlprep: 1 in, 0 out, 1 failed"
    assert result.returncode == 1
