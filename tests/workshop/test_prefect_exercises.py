"""The Prefect exercises' checker judges behaviour: any correct answer passes, each undone TODO fails."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import WORKSHOP, run_script

PREFECT = WORKSHOP / "02_prefect"
EXERCISES = PREFECT / "Prefect_Exercises.py"
SOLUTION = PREFECT / "solutions" / "Prefect_Exercises.py"
ALTERNATIVE = Path(__file__).parent / "prefect_alternative_solution.py"

# Each TODO of the solution, undone (the rest of the solution kept).
UNDO = {
    1: [("@task\ndef split_data(", "def split_data(")],
    2: [("@task(retries=3, retry_delay_seconds=[10, 30, 60])", "@task(retries=3)")],
    3: [("@task(cache_policy=INPUTS, cache_expiration=timedelta(days=1))", "@task")],
    4: [("@task\ndef log_to_mlflow(", "def log_to_mlflow(")],
    5: [(", on_failure=[notify_failure])", ")")],
    6: [("    C: float = 1.0,\n", "    C=1.0,\n")],
    7: [("train_model.submit(", "train_model("), ("(future.result(), kind)", "(future, kind)")],
    8: [("return churn_training_pipeline.to_deployment(", "return None and churn_training_pipeline.to_deployment(")],
}


def _check(env: dict[str, str], *args: str):
    return run_script(EXERCISES, "check", *args, env=env, timeout=600)


def test_the_shipped_file_runs_as_plain_python_and_has_everything_to_do(workshop_env):
    plain = run_script(EXERCISES, "run", env={**workshop_env, "WORKSHOP_FAILURE_RATE": "0"})
    assert plain.returncode == 0, plain.stderr[-3000:]
    shipped = _check(workshop_env, "--indice", "3")
    assert shipped.returncode == 1 and "0/8 exercices terminés" in shipped.stdout, shipped.stdout + shipped.stderr
    # TODOs are numbered in reading order, and the third hint gives the code.
    numbers = [int(n) for n in re.findall(r"^\s*# TODO (\d)", EXERCISES.read_text(), flags=re.MULTILINE)]
    assert numbers == list(range(1, 9))
    assert "exponential_backoff(backoff_factor=10)" in shipped.stdout


# One interpreter deploys and checks every file (importing Prefect and MLflow once keeps the tests short).
CHECK_EACH = """
import json, sys
from pathlib import Path
from churn import exercises
deploy, plan = json.loads(sys.argv[1])
for path in deploy:
    exercises.deploy(exercises.load(Path(path)))
checkers = {}
for path, number in plan:
    checker = checkers.setdefault(path, exercises.Checker(exercises.load(Path(path))))
    result = checker.check(number)
    print("VERDICT", json.dumps([path, number, result.done, result.seen]))
"""


def _undone(number: int, folder: Path) -> Path:
    """The solution with TODO ``number`` undone."""
    source = SOLUTION.read_text()
    for old, new in UNDO[number]:
        assert old in source, old
        source = source.replace(old, new)
    undone = folder / f"undone_{number}" / "Prefect_Exercises.py"
    undone.parent.mkdir()
    undone.write_text(source)
    return undone


@pytest.fixture(scope="module")
def verdicts(workshop_env, tmp_path_factory) -> dict[tuple[str, int], tuple[bool, str]]:
    """Every TODO of the solution and of the alternative answer, and each TODO of the solution undone."""
    folder = tmp_path_factory.mktemp("undone")
    answers = [str(SOLUTION), str(ALTERNATIVE)]
    plan = [(answer, number) for answer in answers for number in range(1, 9)]
    plan += [(str(_undone(number, folder)), number) for number in UNDO]
    result = subprocess.run(
        [sys.executable, "-c", CHECK_EACH, json.dumps([answers, plan])],
        capture_output=True,
        text=True,
        env={**os.environ, **workshop_env},
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = [line.removeprefix("VERDICT ") for line in result.stdout.splitlines() if line.startswith("VERDICT ")]
    found = {(path, number): (done, seen) for path, number, done, seen in map(json.loads, lines)}
    assert len(found) == len(plan), result.stdout[-3000:]
    return found


@pytest.mark.parametrize("answer", [SOLUTION, ALTERNATIVE], ids=["solution", "alternative"])
def test_a_correct_answer_passes_every_todo(answer, verdicts):
    failed = {number: seen for (path, number), (done, seen) in verdicts.items() if path == str(answer) and not done}
    assert not failed


def test_each_todo_undone_is_reported(verdicts):
    undone = {number: seen for (path, number), (done, seen) in verdicts.items() if f"undone_{number}" in path}
    assert sorted(undone) == sorted(UNDO)
    wrongly_passed = {
        number: seen for (path, number), (done, seen) in verdicts.items() if f"undone_{number}" in path and done
    }
    assert not wrongly_passed


def test_the_cli_checks_a_file_and_registers_its_deployment(workshop_env):
    deployed = run_script(EXERCISES, "deploy", "--module", str(SOLUTION), env=workshop_env)
    assert deployed.returncode == 0 and "enregistré" in deployed.stdout, deployed.stdout + deployed.stderr[-3000:]
    result = _check(workshop_env, "--module", str(SOLUTION), "--todo", "8")
    assert result.returncode == 0 and "✅ TODO 8" in result.stdout and "1/1 exercices terminés" in result.stdout
