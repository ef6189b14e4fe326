"""``python build_scripts/build_image.py RUN_ID IMAGE_NAME|auto [options]``: the same as ``mlprep build``."""

import sys
from pathlib import Path

try:
    from mlprep.cli import main
except ModuleNotFoundError:  # from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from mlprep.cli import main

if __name__ == "__main__":
    sys.exit(main(["build", *sys.argv[1:]]))
