"""``python build_scripts/build_model_image.py MODEL_SOURCE IMAGE_NAME [--base-image IMAGE]``:
the same as ``mlprep build-model`` (an image serving the model's /invocations on port 8080)."""

import sys
from pathlib import Path

try:
    from mlprep.cli import main
except ModuleNotFoundError:  # from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from mlprep.cli import main

if __name__ == "__main__":
    sys.exit(main(["build-model", *sys.argv[1:]]))
