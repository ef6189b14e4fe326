"""``python -m build_scripts.api`` (or ``python build_scripts/api.py``): the same as ``mlprep build-api``."""

import sys
from pathlib import Path

try:
    from mlprep.cli import main
except ModuleNotFoundError:  # from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from mlprep.cli import main

if __name__ == "__main__":
    sys.exit(main(["build-api", *sys.argv[1:]]))
