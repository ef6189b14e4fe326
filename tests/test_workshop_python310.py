"""The students' side (the churn package, the workshop's scripts, the notebooks) stays Python 3.10 code.

Checked with a real CPython 3.10 (Pyodide 0.22.1: CPython 3.10.2 compiled to WebAssembly, its standard library
included, run by Node; see ``infra.Python310``): 3.10's own ``compile()`` reads every file and every
notebook's code, each standard-library name the code imports or reaches (``module.attribute``, builtins) must
exist in 3.10's standard library, and the modules that need nothing else (``churn.features``, ``churn.__main__``,
the Python check of ``churn.doctor``) are imported and run there. Third-party packages (pandas, scikit-learn,
MLflow, Prefect...) are not in this interpreter: code needing them is compiled and its standard-library names
checked, not run.
"""

from __future__ import annotations

import ast
import builtins
import json
import math
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT
from infra import Python310

from churn import features

CHECK = Path(__file__).with_name("python310_check.py").read_text()


def sources() -> list[tuple[str, str]]:
    files = [
        *sorted((ROOT / "src" / "churn").rglob("*.py")),
        *sorted((ROOT / "pipelines" / "workshop").rglob("*.py")),
        *sorted((ROOT / "notebooks").rglob("*.py")),
    ]
    found = [(str(path.relative_to(ROOT)), path.read_text()) for path in files]
    for notebook in sorted((ROOT / "notebooks").rglob("*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        code = "\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "code")
        # IPython magics and shell escapes are not Python.
        code = "\n".join(line for line in code.splitlines() if not line.lstrip().startswith(("%", "!")))
        found.append((str(notebook.relative_to(ROOT)), code))
    return found


def reached(code: str) -> dict[str, list[str]]:
    """The standard-library names ``code`` imports or reaches, dotted, and the builtins it names.

    Read with the host's parser (3.10's own ``compile()`` judges the grammar); unparsable code reaches nothing.
    """
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return {"dotted": [], "builtins": []}
    stdlib, bound, dotted, named = sys.stdlib_module_names, {}, set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.partition(".")[0] in stdlib:
                    dotted.add(alias.name)
                    head = alias.asname or alias.name.partition(".")[0]
                    bound[head] = alias.name if alias.asname else head
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module.partition(".")[0] in stdlib:
            for alias in node.names:
                if alias.name != "*":
                    dotted.add(f"{node.module}.{alias.name}")
                    bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            chain = [node.attr]
            while isinstance(node.value, ast.Attribute):
                node = node.value
                chain.insert(0, node.attr)
            if isinstance(node.value, ast.Name) and node.value.id in bound:
                dotted.add(".".join([bound[node.value.id], *chain]))
        elif isinstance(node, ast.Name) and node.id not in bound and hasattr(builtins, node.id):
            named.add(node.id)
    return {"dotted": sorted(dotted), "builtins": sorted(named)}


@pytest.fixture(scope="module")
def python310() -> Iterator[Python310]:
    interpreter = Python310()
    yield interpreter
    interpreter.close()


def check_in_310(python310: Python310, files: list[tuple[str, str]]) -> dict[str, list[str]]:
    """What 3.10 finds wrong in each file: its compile errors, the names its standard library lacks."""
    payload = {name: {"code": code, **reached(code)} for name, code in files}
    result = python310.run(f"{CHECK}\nprint(answer({json.dumps(payload)!r}))")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def problems(python310) -> dict[str, list[str]]:
    return check_in_310(python310, sources())


@pytest.mark.parametrize("name", [name for name, _ in sources()])
def test_student_code_is_python_3_10(problems, name):
    assert problems[name] == [], f"{name} is not Python 3.10 code"


def test_the_check_sees_what_3_10_lacks(python310):
    found = check_in_310(
        python310,
        [
            ("groups.py", "try:\n    pass\nexcept* ValueError:\n    pass\n"),
            ("names.py", "import datetime\nfrom enum import StrEnum\nimport tomllib\nx = datetime.UTC\n"),
            ("builtin.py", "raise ExceptionGroup('two', [ValueError(), KeyError()])\n"),
            ("fine.py", "import urllib.request\nfrom collections.abc import Callable\nurllib.error.URLError\n"),
        ],
    )
    assert len(found["groups.py"]) == 1 and "SyntaxError" in found["groups.py"][0]
    assert found["names.py"] == ["no datetime.UTC", "no enum.StrEnum", "no tomllib"]
    assert found["builtin.py"] == ["no builtin ExceptionGroup"]
    assert found["fine.py"] == []


RECORDS = [
    {
        "customer_id": "C-1",
        "tenure_months": "12",
        "monthly_charges": 70.5,
        "total_charges": "846.0",
        "support_calls": 3,
        "senior_citizen": 0,
        "contract": "One year",
        "payment_method": "Credit card",
        "internet_service": "Fiber optic",
        "partner": "Yes",
        "dependents": " no ",
        "paperless_billing": True,
    },
    {"customer_id": 7, "tenure_months": None, "monthly_charges": "nan", "total_charges": "inf", "contract": "Weekly"},
    {"partner": "y", "dependents": 1, "paperless_billing": "TRUE", "support_calls": "-2.5e1"},
    {},
]


def features_in_310(python310: Python310, src: Path) -> object:
    """``churn.features`` imported from ``src`` in 3.10: its FEATURES and ``pre_processing`` of each record."""
    code = f"""
import json, sys
sys.path.insert(0, {str(src.resolve())!r})
from churn import features
records = json.loads({json.dumps(RECORDS)!r})
print(json.dumps([features.FEATURES, [features.pre_processing(record) for record in records]]))
"""
    result = python310.run(code, mounts=(src,))
    assert result.returncode == 0, f"churn.features does not run in Python 3.10:\n{result.stderr}"
    return json.loads(result.stdout)


def test_features_preprocess_as_on_the_host(python310):
    on_host = [features.FEATURES, [features.pre_processing(record) for record in RECORDS]]
    # JSON carries the comparison: no NaN or infinity may hide in it.
    assert all(math.isfinite(value) for row in on_host[1] for value in row.values() if isinstance(value, float))
    assert features_in_310(python310, ROOT / "src") == on_host


def test_a_module_that_breaks_3_10_fails(python310, tmp_path):
    shutil.copytree(ROOT / "src" / "churn", tmp_path / "churn")
    module = tmp_path / "churn" / "features.py"
    module.write_text(module.read_text().replace("import math\n", "import math\nimport tomllib\n"))
    with pytest.raises(AssertionError, match="No module named 'tomllib'"):
        features_in_310(python310, tmp_path)


def test_churn_command_line_parses_in_3_10(python310):
    code = f"""
import runpy, sys
sys.path.insert(0, {str(ROOT / "src")!r})
sys.argv = ["python -m churn", "--help"]
runpy.run_module("churn", run_name="__main__", alter_sys=True)
"""
    result = python310.run(code, mounts=(ROOT / "src",))
    assert result.returncode == 0, result.stderr
    for command in ("generate", "train", "predict", "feed", "reset", "doctor"):
        assert command in result.stdout


def test_doctor_accepts_python_3_10(python310):
    """``churn.doctor`` reaches the stack's settings through ``churn.workshop`` (pydantic, pandas): an empty
    ``churn.workshop`` stands in for it, enough for the Python check, which needs the standard library only."""
    code = f"""
import sys, types
sys.path.insert(0, {str(ROOT / "src")!r})
import churn
sys.modules["churn.workshop"] = churn.workshop = types.ModuleType("churn.workshop")
from churn import doctor
finding = doctor.check_python()
print(finding.ok, finding.detail, sep="|")
"""
    result = python310.run(code, mounts=(ROOT / "src",))
    assert result.returncode == 0, result.stderr
    ok, detail = result.stdout.strip().split("|")
    assert ok == "True" and detail.startswith("3.10 ")
