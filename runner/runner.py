"""Compatibility entry point: ``python runner/runner.py [FILE ...]`` is ``mlprep run [FILE ...]``.

As in the original layout, the preprocessing is looked up in ``preprocessing/`` beside this
folder unless ``PREPROCESSING_DIR`` says otherwise.
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
try:
    from mlprep.cli import main
except ModuleNotFoundError:  # run from a checkout without installing the package
    sys.path.insert(0, str(ROOT / "src"))
    from mlprep.cli import main

if __name__ == "__main__":
    os.environ.setdefault("PREPROCESSING_DIR", str(ROOT / "preprocessing"))
    sys.exit(main(["run", *sys.argv[1:]]))
