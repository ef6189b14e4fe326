"""The batch command as users run it: pipes, files, workers, the original runner script."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from conftest import IDENTITY, MLPREP, ROOT, run_cli


def test_streaming_output_before_end_of_input(make_preprocessing):
    """A slow producer sees each record's output without closing its end of the pipe."""
    folder = make_preprocessing(IDENTITY)
    process = subprocess.Popen(
        [*MLPREP, "run", "-p", str(folder)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        for n in range(3):
            process.stdin.write(json.dumps({"n": n}).encode() + b"\n")
            process.stdin.flush()
            assert json.loads(process.stdout.readline()) == {"n": n}
        process.stdin.close()
        assert process.wait(timeout=20) == 0
    finally:
        process.kill()


def test_streaming_json_document_from_a_pipe(make_preprocessing):
    folder = make_preprocessing(IDENTITY)
    process = subprocess.Popen(
        [*MLPREP, "run", "-p", str(folder), "--input-format", "json"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        process.stdin.write(b'[{"n": 0},')
        process.stdin.flush()
        assert json.loads(process.stdout.readline()) == {"n": 0}
        process.stdin.write(b' {"n": 1}]')
        process.stdin.close()
        assert json.loads(process.stdout.readline()) == {"n": 1}
        assert process.wait(timeout=20) == 0
    finally:
        process.kill()


def test_workers_keep_order_and_match_one_worker(make_preprocessing, tmp_path):
    code = "import os\n\ndef pre_processing(d):\n    return {'n': d['n'], 'sq': d['n'] ** 2, 'pid': os.getpid()}\n"
    folder = make_preprocessing(code)
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"".join(json.dumps({"n": n}).encode() + b"\n" for n in range(50_000)))
    one = run_cli("run", "-p", str(folder), str(source))
    two = run_cli("run", "-p", str(folder), "--workers", "2", str(source))
    assert one.returncode == two.returncode == 0
    first = [json.loads(x) for x in one.stdout.splitlines()]
    second = [json.loads(x) for x in two.stdout.splitlines()]
    assert [r["n"] for r in second] == list(range(50_000))
    assert [r["sq"] for r in first] == [r["sq"] for r in second]
    assert len({r["pid"] for r in second}) == 2  # really two processes


def test_workers_report_failures_with_their_line(make_preprocessing, tmp_path):
    folder = make_preprocessing("def pre_processing(d):\n    return 1 // d['n']\n")
    source = tmp_path / "in.jsonl"
    source.write_bytes(b"".join(json.dumps({"n": n}).encode() + b"\n" for n in range(3000, -1, -1)))
    result = run_cli("run", "-p", str(folder), "--workers", "2", "--on-error", "skip", str(source))
    assert result.returncode == 1
    assert "line 3001: preprocess failed: pre_processing raised ZeroDivisionError" in result.stderr.decode()
    assert len(result.stdout.splitlines()) == 3000


def test_output_file_and_progress_bar(make_preprocessing, tmp_path):
    source = tmp_path / "in.jsonl"
    source.write_text('{"a": 1}\n{"a": 2}\n')
    result = run_cli(
        "run", "-p", str(make_preprocessing(IDENTITY)), str(source), "-o", str(tmp_path / "o.jsonl"), "--progress"
    )
    assert result.returncode == 0
    assert (tmp_path / "o.jsonl").read_text() == '{"a":1}\n{"a":2}\n'
    assert "100.0%" in result.stderr.decode() and "2 records" in result.stderr.decode()


def test_original_runner_script_reads_stdin_and_files(make_preprocessing, tmp_path):
    folder = make_preprocessing("def pre_processing(d):\n    return {**d, 'via': 'runner'}\n")
    env = {**os.environ, "PREPROCESSING_DIR": str(folder)}
    piped = subprocess.run(
        [sys.executable, str(ROOT / "runner" / "runner.py")],
        input=b'{"test": "data"}',
        capture_output=True,
        env=env,
        timeout=60,
    )
    assert piped.returncode == 0, piped.stderr
    assert json.loads(piped.stdout) == {"test": "data", "via": "runner"}
    source = tmp_path / "input.json"
    source.write_text('[{"x": 1}]')
    from_file = subprocess.run(
        [sys.executable, str(ROOT / "runner" / "runner.py"), str(source)], capture_output=True, env=env, timeout=60
    )
    assert json.loads(from_file.stdout) == {"x": 1, "via": "runner"}


def test_runner_script_defaults_to_the_preprocessing_folder_beside_it():
    env = {k: v for k, v in os.environ.items() if k != "PREPROCESSING_DIR"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "runner" / "runner.py")], input=b"{}", capture_output=True, env=env, timeout=60
    )
    assert result.returncode == 2
    assert str(ROOT / "preprocessing") in result.stderr.decode()


def test_help_lists_every_option():
    result = run_cli("run", "--help")
    text = result.stdout.decode()
    for option in (
        "--input-format",
        "--avro-schema",
        "--skip-cutouts",
        "--workers",
        "--output",
        "--on-error",
        "--dead-letter",
        "--progress",
        "--preprocessing",
    ):
        assert option in text
