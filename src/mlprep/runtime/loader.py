"""Find and import the user's ``preprocessing.py`` and return its functions.

The file's folder goes on ``sys.path`` (so ``from processor import clean`` works) and the module is
loaded as a submodule of a synthetic package rooted at that folder (so ``from .processor import
clean`` works too).
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
import traceback
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from mlprep.errors import (
    MissingDependencyError,
    PreprocessingFunctionError,
    PreprocessingImportError,
    PreprocessingNotFoundError,
)

ENTRY_FILE = "preprocessing.py"
FUNCTION = "pre_processing"
BATCH_FUNCTION = "pre_processing_batch"
_PACKAGE = "mlprep_user_code"


@dataclass(frozen=True)
class LoadedPreprocessing:
    """The user's functions and where they came from."""

    path: Path
    function: Any
    batch_function: Any | None = None
    requirements: Path | None = None
    metadata: dict[str, str] = field(default_factory=dict)


def resolve_path(location: str | Path) -> Path:
    """The ``preprocessing.py`` a folder or file path designates."""
    path = Path(location).expanduser()
    if path.is_dir():
        candidate = path / ENTRY_FILE
        if not candidate.is_file():
            found = sorted(p.name for p in path.glob("*.py"))
            hint = f" (it holds: {', '.join(found)})" if found else " (it is empty of .py files)"
            raise PreprocessingNotFoundError(
                f"no {ENTRY_FILE} in folder {path}{hint}; pass the file itself or set PREPROCESSING_DIR"
            )
        return candidate.resolve()
    if path.is_file():
        if path.suffix != ".py":
            raise PreprocessingNotFoundError(f"{path} is not a Python file (.py)")
        return path.resolve()
    raise PreprocessingNotFoundError(
        f"preprocessing not found: {path} does not exist; pass a folder holding {ENTRY_FILE} "
        "or a .py file (--preprocessing, env PREPROCESSING_DIR)"
    )


def load(location: str | Path) -> LoadedPreprocessing:
    """Import the preprocessing at ``location`` (folder or .py file) and check its contract."""
    path = resolve_path(location)
    module = _import(path)
    function = getattr(module, FUNCTION, None)
    if function is None:
        defined = sorted(n for n, v in vars(module).items() if inspect.isfunction(v) and not n.startswith("_"))
        listing = ", ".join(defined) if defined else "no public function"
        raise PreprocessingFunctionError(f"{path} defines no function {FUNCTION}(data) (it defines: {listing})")
    if not callable(function):
        raise PreprocessingFunctionError(f"{path}: {FUNCTION} is a {type(function).__name__}, not a function")
    batch = getattr(module, BATCH_FUNCTION, None)
    if batch is not None and not callable(batch):
        raise PreprocessingFunctionError(f"{path}: {BATCH_FUNCTION} is a {type(batch).__name__}, not a function")
    requirements = _find_requirements(path)
    return LoadedPreprocessing(path, function, batch, requirements, _read_metadata(path.parent))


def _import(path: Path) -> types.ModuleType:
    folder = str(path.parent)
    if folder in sys.path:
        sys.path.remove(folder)
    sys.path.insert(0, folder)
    _forget_stale_siblings(path.parent)
    package = _package_for(path.parent)
    name = f"{package.__name__}.{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise PreprocessingImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except ModuleNotFoundError as exc:
        sys.modules.pop(name, None)
        missing = exc.name or str(exc)
        if (path.parent / f"{missing.split('.')[0]}.py").exists():
            raise PreprocessingImportError(_describe(path, exc)) from exc
        requirements = _find_requirements(path)
        where = f"list it in {requirements}" if requirements else f"add a requirements.txt beside {path.name}"
        raise MissingDependencyError(
            f"{path} imports module '{missing}', which is not installed: {where} "
            f"(and install it, or rebuild the image)\n{_traceback(exc)}"
        ) from exc
    except BaseException as exc:  # SyntaxError, any exception at import time, SystemExit
        sys.modules.pop(name, None)
        raise PreprocessingImportError(_describe(path, exc)) from exc
    return module


# Modules of the running process itself: multiprocessing's spawn reads __main__ to start workers.
_PROCESS_MODULES = frozenset({"__main__", "__mp_main__"})


def _forget_stale_siblings(folder: Path) -> None:
    """Drop cached modules named like this folder's siblings but loaded from elsewhere."""
    names = {p.stem for p in folder.glob("*.py")} | {p.parent.name for p in folder.glob("*/__init__.py")}
    names -= _PROCESS_MODULES  # a sibling __main__.py is the folder's, not this process's entry point
    for name in list(sys.modules):
        top = name.split(".", 1)[0]
        if top not in names:
            continue
        origin = getattr(sys.modules[name], "__file__", None) or ""
        if not origin.startswith(str(folder) + "/"):
            del sys.modules[name]


def _package_for(folder: Path) -> types.ModuleType:
    """A package per folder, so relative imports resolve to the user's siblings."""
    index = abs(hash(str(folder))) % 10**8
    name = f"{_PACKAGE}_{index}"
    package = sys.modules.get(name)
    if package is None:
        package = types.ModuleType(name)
        package.__path__ = [str(folder)]
        sys.modules[name] = package
    return package


def _describe(path: Path, exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"{exc.filename}:{exc.lineno}: syntax error: {exc.msg}\n{_traceback(exc)}"
    return f"importing {path} failed: {type(exc).__name__}: {exc}\n{_traceback(exc)}"


def _traceback(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)).rstrip()


def _find_requirements(path: Path) -> Path | None:
    candidate = path.parent / "requirements.txt"
    return candidate if candidate.is_file() else None


def _read_metadata(folder: Path) -> dict[str, str]:
    """``run_info.json`` written next to the code by ``mlprep fetch`` (run id, model, version)."""
    info = folder / "run_info.json"
    try:
        data = orjson.loads(info.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): str(v) for k, v in data.items() if isinstance(v, str | int | float)}
