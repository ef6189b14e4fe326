"""``python -m pipelines.kfp.compile [OUT_DIR]``: compile both pipelines to KFP YAML."""

from __future__ import annotations

import sys
from pathlib import Path

from kfp import compiler

from pipelines.kfp.pipelines import inference_pipeline, training_pipeline


def compile_all(out_dir: str | Path = "build/kfp") -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for pipeline, name in (
        (training_pipeline, "training_pipeline.yaml"),
        (inference_pipeline, "inference_pipeline.yaml"),
    ):
        path = out / name
        compiler.Compiler().compile(pipeline_func=pipeline, package_path=str(path))
        written.append(path)
    return written


if __name__ == "__main__":
    for path in compile_all(*sys.argv[1:2]):
        print(path)
