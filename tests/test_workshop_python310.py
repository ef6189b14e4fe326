"""The students' side (the churn package, the workshop's scripts, the notebooks) stays Python 3.10 code.

No 3.10 interpreter is at hand in CI, so the code is read the way 3.10 would: its grammar
(``ast.parse(feature_version=(3, 10))``) and no standard-library name that appeared in 3.11.
"""

from __future__ import annotations

import ast
import json

import pytest
from conftest import ROOT

# What Python 3.11 added to the standard library and builtins (the names students' code could reach).
NEW_IN_3_11 = {
    "tomllib",
    "wsgiref.types",
    "enum.StrEnum",
    "enum.ReprEnum",
    "enum.verify",
    "enum.member",
    "enum.nonmember",
    "enum.global_enum",
    "datetime.UTC",
    "typing.Self",
    "typing.LiteralString",
    "typing.Never",
    "typing.assert_never",
    "typing.assert_type",
    "typing.reveal_type",
    "typing.Required",
    "typing.NotRequired",
    "typing.TypeVarTuple",
    "typing.Unpack",
    "typing.dataclass_transform",
    "asyncio.TaskGroup",
    "asyncio.timeout",
    "asyncio.Runner",
    "hashlib.file_digest",
    "operator.call",
    "ExceptionGroup",
    "BaseExceptionGroup",
}


def sources() -> list[tuple[str, str]]:
    files = [*sorted((ROOT / "src" / "churn").rglob("*.py")), *sorted((ROOT / "pipelines" / "workshop").rglob("*.py"))]
    found = [(str(path.relative_to(ROOT)), path.read_text()) for path in files]
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        code = "\n".join("".join(cell["source"]) for cell in cells if cell["cell_type"] == "code")
        # IPython magics and shell escapes are not Python.
        code = "\n".join(line for line in code.splitlines() if not line.lstrip().startswith(("%", "!")))
        found.append((str(notebook.relative_to(ROOT)), code))
    return found


def newer_names(tree: ast.AST) -> set[str]:
    """Each 3.11-only name the code imports or reaches as ``module.attribute`` or a builtin."""
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            used |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            used |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            used.add(f"{node.value.id}.{node.attr}")
        elif isinstance(node, ast.Name):
            used.add(node.id)
    return used & NEW_IN_3_11


@pytest.mark.parametrize(("name", "code"), sources(), ids=[name for name, _ in sources()])
def test_student_code_is_python_3_10(name, code):
    tree = ast.parse(code, filename=name, feature_version=(3, 10))
    assert not newer_names(tree), f"{name} uses what Python 3.10 lacks"


def test_the_check_sees_what_3_10_lacks():
    assert newer_names(ast.parse("from enum import StrEnum\nimport tomllib\nx = datetime.UTC")) == {
        "enum.StrEnum",
        "tomllib",
        "datetime.UTC",
    }
    with pytest.raises(SyntaxError):
        ast.parse("try:\n    pass\nexcept* ValueError:\n    pass", feature_version=(3, 10))
