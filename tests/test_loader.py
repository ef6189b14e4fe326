"""Loading the user's preprocessing: layouts users ship, and errors that say what to do."""

from __future__ import annotations

import pytest

from mlprep.errors import (
    MissingDependencyError,
    PreprocessingFunctionError,
    PreprocessingImportError,
    PreprocessingNotFoundError,
)
from mlprep.runtime import loader
from mlprep.runtime.core import Preprocessor


def test_loads_from_folder_and_from_file(make_preprocessing):
    folder = make_preprocessing("def pre_processing(data):\n    return {'seen': data['x']}\n")
    assert Preprocessor.load(folder).apply_one({"x": 1}) == {"seen": 1}
    assert Preprocessor.load(folder / "preprocessing.py").apply_one({"x": 2}) == {"seen": 2}


def test_sibling_module_and_package_imports(make_preprocessing):
    folder = make_preprocessing(
        """
        from processor import clean
        from features.scale import double
        from .processor import clean as clean_again

        def pre_processing(data):
            return {"v": double(clean(data["v"])), "again": clean_again(data["v"])}
        """,
        {
            "processor.py": "def clean(v):\n    return v.strip()\n",
            "features/__init__.py": "",
            "features/scale.py": "def double(v):\n    return v * 2\n",
            "__init__.py": "",
        },
    )
    assert Preprocessor.load(folder).apply_one({"v": " ab "}) == {"v": "abab", "again": "ab"}


def test_missing_folder_and_missing_file(tmp_path):
    with pytest.raises(PreprocessingNotFoundError, match="does not exist"):
        loader.load(tmp_path / "nowhere")
    (tmp_path / "other.py").write_text("x = 1\n")
    with pytest.raises(PreprocessingNotFoundError, match=r"no preprocessing.py in folder .*other.py"):
        loader.load(tmp_path)


def test_function_missing_names_what_is_defined(make_preprocessing):
    folder = make_preprocessing("def preprocess(data):\n    return data\n\ndef helper():\n    pass\n")
    with pytest.raises(PreprocessingFunctionError, match=r"no function pre_processing.*helper, preprocess"):
        loader.load(folder)


def test_function_not_callable(make_preprocessing):
    with pytest.raises(PreprocessingFunctionError, match="is a dict, not a function"):
        loader.load(make_preprocessing("pre_processing = {}\n"))


def test_import_error_keeps_the_original_traceback(make_preprocessing):
    folder = make_preprocessing("def helper():\n    return 1 / 0\n\nVALUE = helper()\n")
    with pytest.raises(PreprocessingImportError) as info:
        loader.load(folder)
    message = str(info.value)
    assert "ZeroDivisionError" in message
    assert "Traceback" in message and 'preprocessing.py", line 2' in message


def test_syntax_error_says_file_and_line(make_preprocessing):
    folder = make_preprocessing("def pre_processing(data):\n    return data +\n")
    with pytest.raises(PreprocessingImportError, match=r"preprocessing.py:2: syntax error"):
        loader.load(folder)


def test_missing_dependency_names_module_and_requirements(make_preprocessing):
    folder = make_preprocessing(
        "import not_installed_pkg_xyz\n\ndef pre_processing(d):\n    return d\n",
        {"requirements.txt": "numpy\n"},
    )
    with pytest.raises(MissingDependencyError) as info:
        loader.load(folder)
    assert "'not_installed_pkg_xyz'" in str(info.value)
    assert "requirements.txt" in str(info.value)


def test_dependency_missing_in_a_sibling_module_is_named(make_preprocessing):
    folder = make_preprocessing(
        "from processor import clean\n\ndef pre_processing(d):\n    return d\n",
        {"processor.py": "from helpers import nothing\n"},
    )
    with pytest.raises(MissingDependencyError, match="'helpers'"):
        loader.load(folder)


def test_batch_function_and_run_info_are_picked_up(make_preprocessing):
    folder = make_preprocessing(
        "def pre_processing(d):\n    return d\n\ndef pre_processing_batch(rs):\n    return rs\n",
        {"run_info.json": '{"run_id": "abc", "model_name": "churn", "version": "3"}'},
    )
    loaded = loader.load(folder)
    assert loaded.batch_function is not None
    assert loaded.metadata == {"run_id": "abc", "model_name": "churn", "version": "3"}
