"""Every Python snippet of the MLflow cheat sheet runs, in order, on the MLflow of the workshop's venv."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from conftest import ROOT

CHEATSHEET = ROOT / "docs" / "mlflow_cheatsheet.md"
# The snippets share one namespace, as cells of a notebook do; the one that fails is named.
RUN_ALL = """
import json, sys, traceback
namespace = {}
for number, block in enumerate(json.load(open(sys.argv[1])), start=1):
    try:
        exec(compile(block, f"cheatsheet snippet {number}", "exec"), namespace)
    except Exception:
        sys.exit(f"snippet {number} failed:\\n{block}\\n{traceback.format_exc()}")
print("ran", number, "snippets")
"""


def snippets() -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", CHEATSHEET.read_text(), flags=re.MULTILINE | re.DOTALL)


def test_every_python_snippet_runs_against_the_mlflow_server(mlflow_stack, mlflow_client, tmp_path):
    blocks = [block.replace("http://localhost:5000", mlflow_stack.url) for block in snippets()]
    assert len(blocks) >= 8
    (tmp_path / "snippets.json").write_text(json.dumps(blocks))
    result = subprocess.run(
        [sys.executable, "-c", RUN_ALL, str(tmp_path / "snippets.json")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"ran {len(blocks)} snippets" in result.stdout
    # The random forest was logged (skops, with its trusted type) and promoted as the sheet says.
    champion = mlflow_client.get_model_version_by_alias("churn", "champion")
    assert mlflow_client.get_run(champion.run_id).info.run_name == "rf-model"
