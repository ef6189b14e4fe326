"""``python generate_sample_data.py [--rows 2000] [--seed 42] [--out data/customer_data.csv]``:
the synthetic customer-churn table (seeded; the signal is learnable)."""

import sys
from pathlib import Path

try:
    from churn.__main__ import main
except ModuleNotFoundError:  # from a checkout without installing the package
    sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))
    from churn.__main__ import main

if __name__ == "__main__":
    sys.exit(main(["generate", *sys.argv[1:]]))
