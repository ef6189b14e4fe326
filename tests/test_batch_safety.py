"""Batch runs that go wrong lose nothing: the output never overwrites an input, a killed run leaves
no file that looks complete, a dying worker ends the run with a report, and sys.exit() in user code
fails only its record."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import orjson
import pytest
from conftest import IDENTITY, MLPREP, run_cli

SUMMARY = re.compile(r"mlprep: (\d+) in, (\d+) out, (\d+) failed")


def write_records(path: Path, count: int) -> list[bytes]:
    lines = [orjson.dumps({"n": i, "name": f"customer-{i}"}) for i in range(count)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return lines


def summary_of(stderr: bytes) -> tuple[int, int, int]:
    match = SUMMARY.fullmatch(stderr.decode().strip().splitlines()[-1])
    assert match, stderr.decode()[-2000:]
    return int(match[1]), int(match[2]), int(match[3])


@pytest.mark.parametrize("how", ["same name", "./ path", "symlink", "hard link"])
def test_output_that_is_an_input_is_refused(make_preprocessing, tmp_path, how):
    folder = make_preprocessing(IDENTITY)
    source = tmp_path / "same.jsonl"
    write_records(source, 100)
    before = source.read_bytes()
    output = {
        "same name": "same.jsonl",
        "./ path": "./same.jsonl",
        "symlink": "link.jsonl",
        "hard link": "hard.jsonl",
    }[how]
    if how == "symlink":
        (tmp_path / "link.jsonl").symlink_to("same.jsonl")
    if how == "hard link":
        os.link(source, tmp_path / "hard.jsonl")
    result = run_cli("run", "-p", str(folder), "same.jsonl", "-o", output, cwd=tmp_path)
    assert result.returncode == 2, result.stderr.decode()
    assert f"-o {Path(output)} is the same file as same.jsonl" in result.stderr.decode()
    assert source.read_bytes() == before


def test_dead_letter_that_is_an_input_is_refused(make_preprocessing, tmp_path):
    source = tmp_path / "in.jsonl"
    write_records(source, 10)
    before = source.read_bytes()
    result = run_cli(
        "run", "-p", str(make_preprocessing(IDENTITY)), "in.jsonl", "--dead-letter", "in.jsonl", cwd=tmp_path
    )
    assert result.returncode == 2
    assert "--dead-letter in.jsonl is the same file as in.jsonl" in result.stderr.decode()
    assert source.read_bytes() == before


SLOW = """
import time

def pre_processing(data):
    time.sleep(0.001)
    return data
"""


def start_and_stop(folder: Path, tmp_path: Path, sig: signal.Signals, workers: int) -> subprocess.Popen[bytes]:
    """Start a long run writing out.jsonl, wait until output has been written, then send ``sig``."""
    write_records(tmp_path / "big.jsonl", 50_000)
    known = {path.name: path.stat().st_size for path in tmp_path.iterdir()}
    process = subprocess.Popen(
        [*MLPREP, "run", "-p", str(folder), "big.jsonl", "-o", "out.jsonl", "--workers", str(workers)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while not any(
        path.stat().st_size > known.get(path.name, 0) for path in tmp_path.iterdir() if path.name != "big.jsonl"
    ):
        assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
        assert time.monotonic() < deadline, "no output was written"
        time.sleep(0.05)
    process.send_signal(sig)
    process.wait(timeout=60)
    return process


@pytest.mark.parametrize("old_output", [False, True], ids=["new output", "existing output"])
def test_killed_run_leaves_no_complete_looking_output(make_preprocessing, tmp_path, old_output):
    target = tmp_path / "out.jsonl"
    if old_output:
        target.write_bytes(b'{"old": true}\n')
    process = start_and_stop(make_preprocessing(SLOW), tmp_path, signal.SIGKILL, workers=1)
    assert process.returncode == -signal.SIGKILL
    if old_output:
        assert target.read_bytes() == b'{"old": true}\n'
    else:
        assert not target.exists()


@pytest.mark.parametrize("workers", [1, 2])
def test_terminated_run_cleans_up(make_preprocessing, tmp_path, workers):
    process = start_and_stop(make_preprocessing(SLOW), tmp_path, signal.SIGTERM, workers)
    assert process.returncode == 128 + signal.SIGTERM
    assert sorted(path.name for path in tmp_path.iterdir() if path.is_file()) == ["big.jsonl"]


DIES = {
    "os._exit(1)": ("os._exit(1)", "exited with status 1"),
    "SIGKILL": ("os.kill(os.getpid(), signal.SIGKILL)", "was killed by signal SIGKILL"),
}
POISON = 9000


@pytest.mark.parametrize("how", list(DIES))
def test_dead_worker_ends_the_run_with_a_report(make_preprocessing, tmp_path, how):
    code, cause = DIES[how]
    folder = make_preprocessing(
        f"import os, signal\n\ndef pre_processing(data):\n    if data['n'] == {POISON}:\n        {code}\n"
        "    return data\n"
    )
    lines = write_records(tmp_path / "in.jsonl", 20_000)
    args = ["run", "-p", str(folder), "in.jsonl", "-o", "out.jsonl", "--workers", "2", "--on-error", "skip"]
    result = run_cli(*args, "--dead-letter", "dead.jsonl", cwd=tmp_path, timeout=60)
    err = result.stderr.decode()
    assert result.returncode == 1, err
    assert cause in err
    lost = re.search(r"Not processed \(the output ends before them; .*?\): in\.jsonl lines (\d+)-(\d+), ", err)
    assert lost, err
    first, last = int(lost[1]), int(lost[2])
    assert first <= POISON + 1 <= last  # the record that killed the worker is among the lost ones
    assert (tmp_path / "out.jsonl").read_bytes().splitlines() == lines[: first - 1]
    dead = [json.loads(line) for line in (tmp_path / "dead.jsonl").read_text().splitlines()]
    assert [(d["line"], d["stage"]) for d in dead] == [(n, "worker") for n in range(first, last + 1)]
    assert [d["raw"].encode() for d in dead] == lines[first - 1 : last]
    assert summary_of(result.stderr) == (last, first - 1, last - first + 1)


@pytest.mark.parametrize("workers", [1, 2])
def test_sys_exit_in_user_code_fails_only_its_record(make_preprocessing, workers):
    folder = make_preprocessing(
        "import sys\n\ndef pre_processing(data):\n    if data['n'] == 3:\n        sys.exit(3)\n    return data\n"
    )
    records = b"".join(orjson.dumps({"n": i}) + b"\n" for i in range(10))
    args = ["run", "-p", str(folder), "--workers", str(workers), "--on-error", "skip"]
    result = run_cli(*args, stdin=records, timeout=60)
    err = result.stderr.decode()
    assert result.returncode == 1, err
    assert [json.loads(line)["n"] for line in result.stdout.splitlines()] == [0, 1, 2, 4, 5, 6, 7, 8, 9]
    assert "<stdin>: line 4: preprocess failed: pre_processing raised SystemExit: 3 (preprocessing.py:5" in err
    assert summary_of(result.stderr) == (10, 9, 1)


def test_output_that_cannot_be_written_ends_with_the_summary(make_preprocessing, tmp_path):
    write_records(tmp_path / "in.jsonl", 10_000)
    result = run_cli("run", "-p", str(make_preprocessing(IDENTITY)), "in.jsonl", "-o", "/dev/full", cwd=tmp_path)
    err = result.stderr.decode()
    assert result.returncode == 1, err
    assert "mlprep: error: cannot write /dev/full: No space left on device" in err
    assert "Traceback" not in err
    summary_of(result.stderr)


CODEC_BUG = """
import mlprep.runtime.codecs.jsonl as jsonl

original = jsonl.JsonlCodec.chunks


def chunks(self, stream, source):  # a bug in the codec, after its first chunk
    for index, chunk in enumerate(original(self, stream, source)):
        if index == 1:
            raise ZeroDivisionError("codec bug")
        yield chunk


jsonl.JsonlCodec.chunks = chunks
"""


@pytest.mark.parametrize("workers", [1, 2])
def test_crash_in_a_codec_is_reported_with_the_summary(make_preprocessing, tmp_path, workers):
    inject = tmp_path / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(CODEC_BUG)  # loaded at start-up by the real CLI
    lines = write_records(tmp_path / "in.jsonl", 10_000)
    env = {"PYTHONPATH": os.pathsep.join([str(inject), os.environ.get("PYTHONPATH", "")])}
    args = ["run", "-p", str(make_preprocessing(IDENTITY)), "in.jsonl", "-o", "out.jsonl", "--workers", str(workers)]
    result = run_cli(*args, env=env, cwd=tmp_path, timeout=60)
    err = result.stderr.decode()
    assert result.returncode == 1, err
    written = (tmp_path / "out.jsonl").read_bytes().splitlines()
    assert 0 < len(written) < len(lines)
    assert written == lines[: len(written)]
    expected = f"in.jsonl: line {len(written) + 1}: decode failed: cannot read input past this point: unexpected "
    assert expected + "ZeroDivisionError: codec bug" in err
    assert summary_of(result.stderr) == (len(written) + 1, len(written), 1)
