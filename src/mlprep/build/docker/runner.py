"""``python /app/runner/runner.py [FILE ...]`` in an image is ``mlprep run [FILE ...]``."""

import sys

from mlprep.cli import main

sys.exit(main(["run", *sys.argv[1:]]))
