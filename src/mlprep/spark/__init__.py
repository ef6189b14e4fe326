"""Run a preprocessing on Apache Spark: ``outputs, failures = mlprep.spark.preprocess(df, "runs:/ID")``.

The front end over the runtime for data that one machine does not read in a night. Needs the
``spark`` extra (pyspark, pyarrow) on the driver and mlprep on the executors.
"""

from __future__ import annotations

from mlprep.spark.job import preprocess

__all__ = ["preprocess"]
