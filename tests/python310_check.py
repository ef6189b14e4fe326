"""Run inside CPython 3.10 (``infra.Python310``): what 3.10 finds wrong in each student file.

``answer`` gets, as JSON, per file, its code and the standard-library names the host found it reaching (dotted
``module.attribute`` paths and builtins); it answers, per file, 3.10's compile error and each name 3.10 lacks.
"""

from __future__ import annotations

import builtins
import importlib
import json
import sys


def resolves(dotted: str) -> bool:
    """Is ``dotted`` (``module.submodule.attribute...``) a name of this standard library?"""
    parts = dotted.split(".")
    if parts[0] not in sys.stdlib_module_names:
        return False
    try:
        found = importlib.import_module(parts[0])
    except ImportError:
        # In 3.10's standard library but left out of this build (Pyodide ships e.g. tkinter apart): nothing to look up.
        return True
    for index, part in enumerate(parts[1:], start=2):
        if hasattr(found, part):
            found = getattr(found, part)
            continue
        try:
            found = importlib.import_module(".".join(parts[:index]))
        except ImportError:
            return False
    return True


def check(files: dict[str, dict]) -> dict[str, list[str]]:
    problems = {}
    for name, file in files.items():
        found = []
        try:
            compile(file["code"], name, "exec", dont_inherit=True)
        except SyntaxError as error:
            found.append(f"SyntaxError: {error.msg} (line {error.lineno})")
        found += [f"no {dotted}" for dotted in file["dotted"] if not resolves(dotted)]
        found += [f"no builtin {named}" for named in file["builtins"] if not hasattr(builtins, named)]
        problems[name] = found
    return problems


def answer(files: str) -> str:
    return json.dumps(check(json.loads(files)))
