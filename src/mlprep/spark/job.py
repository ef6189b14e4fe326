"""The driver side: find the code (run id, folder or file), ship it to the executors by Spark's own
means (``addArchive``), check that it loads there, infer or take the output schema, and map a
DataFrame with ``mapInArrow``."""

from __future__ import annotations

import atexit
import hashlib
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from mlprep import errors
from mlprep.runtime.loader import ENTRY_FILE, resolve_path
from mlprep.spark.executor import FAILURE, FAILURE_FIELDS, MARK, N_IN, Shipped, map_files, map_rows, probe
from mlprep.spark.schema import infer_schema

RUN_ID = re.compile(r"[0-9a-fA-F]{32}")
SAMPLE = 1000  # output records the schema is inferred from
_ADDED: set[tuple[int, str]] = set()  # (SparkContext, archive) added to the context
_SHIPPED: set[tuple[int, Shipped]] = set()  # ... and loaded on an executor


class SparkJobError(errors.MlprepError):
    """The job failed on the executors; the message is the executor's own, without Spark's wrapping."""


@dataclass
class Mapped:
    """The mapped DataFrame before it is split, and what split needs."""

    frame: Any
    json_output: bool

    def outputs(self) -> Any:
        from pyspark.sql import functions as F

        selected = self.frame.where(F.col(FAILURE).isNull() & F.col(N_IN).isNull())
        return selected.drop(FAILURE, N_IN)

    def failures(self) -> Any:
        from pyspark.sql import functions as F

        return self.frame.where(F.col(FAILURE).isNotNull()).select(f"{FAILURE}.*")

    def records_in(self) -> int:
        from pyspark.sql import functions as F

        return int(self.frame.where(F.col(N_IN).isNotNull()).agg(F.sum(N_IN)).first()[0] or 0)


def preprocess(
    df: Any,
    source: str | Path,
    *,
    skip_cutouts: bool = False,
    schema: Any = None,
    sample_size: int = SAMPLE,
    preprocessing_path: str = ENTRY_FILE,
) -> tuple[Any, Any]:
    """Apply a run's ``pre_processing`` to every row of ``df`` (a row is one record, as a dict).

    ``source`` is a run id (``runs:/ID`` or ``ID``, fetched once on the driver), a folder holding
    ``preprocessing.py`` or a ``.py`` file. Returns ``(outputs, failures)``: outputs typed by
    ``schema`` (a ``StructType`` or DDL string; inferred from the first ``sample_size`` outputs when
    None), failures as ``source, unit, position, stage, error, raw, raw_base64``. Both are lazy and
    come from one mapping: ``persist()`` ``df`` or write both from one cached frame to run the code once.
    """
    spark = df.sparkSession
    shipped = ship(spark, source, skip_cutouts, preprocessing_path)
    return tuple(_map(spark, shipped, schema, sample_size, rows=df))  # type: ignore[return-value]


def map_files_frame(
    spark: Any,
    files: Any,
    shipped: Shipped,
    schema: Any,
    input_format: str,
    max_record_bytes: int,
    sample_size: int = SAMPLE,
) -> Mapped:
    """A ``binaryFile`` DataFrame decoded by the batch codecs and mapped; ``schema`` "json" keeps JSON text."""
    if schema == "json":
        return _mapped(files, map_files(shipped, _schema(None), None, input_format, max_record_bytes), None)

    def mapper(spark_schema: Any) -> Any:
        return map_files(shipped, _schema(spark_schema), _arrow(spark_schema), input_format, max_record_bytes)

    if schema is None:
        schema = _infer(
            spark, files, lambda: map_files(shipped, _schema(None), None, input_format, max_record_bytes), sample_size
        )
    schema = _struct(spark, schema)
    return _mapped(files, mapper(schema), schema)


def _map(spark: Any, shipped: Shipped, schema: Any, sample_size: int, rows: Any) -> tuple[Any, Any]:
    if schema is None:
        schema = _infer(spark, rows, lambda: map_rows(shipped, _schema(None), None), sample_size)
    schema = _struct(spark, schema)
    mapped = _mapped(rows, map_rows(shipped, _schema(schema), _arrow(schema)), schema)
    return mapped.outputs(), mapped.failures()


def _mapped(frame: Any, function: Any, schema: Any) -> Mapped:
    return Mapped(frame.mapInArrow(function, _spark_schema(schema)), json_output=schema is None)


def _infer(spark: Any, frame: Any, json_mapper: Any, sample_size: int) -> Any:
    """The output schema of the first ``sample_size`` outputs, mapped as JSON on the executors."""

    sampled = Mapped(frame.mapInArrow(json_mapper(), _spark_schema(None)), json_output=True).outputs()
    values = [orjson.loads(row[0]) for row in sampled.limit(sample_size).collect()]
    return infer_schema(values)


def _struct(spark: Any, schema: Any) -> Any:
    from pyspark.sql.types import StructType

    if isinstance(schema, StructType):
        return schema
    try:
        return spark.createDataFrame([], schema).schema
    except Exception as exc:
        raise errors.MlprepError(f"invalid output schema {schema!r}: {exc}") from None


def _spark_schema(output: Any) -> Any:
    """The output columns (``value``, a JSON string, or the output schema's fields), the failure and the count."""
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    failure = StructType(
        [StructField(name, LongType() if name == "position" else StringType()) for name in FAILURE_FIELDS]
    )
    columns = [StructField("value", StringType())] if output is None else list(output.fields)
    return StructType([*columns, StructField(FAILURE, failure), StructField(N_IN, LongType())])


def _schema(output: Any) -> Any:
    from pyspark.sql.pandas.types import to_arrow_schema

    return to_arrow_schema(_spark_schema(output))


def _arrow(output: Any) -> Any:
    from pyspark.sql.pandas.types import to_arrow_type

    return to_arrow_type(output)


def ship(spark: Any, source: str | Path, skip_cutouts: bool = False, preprocessing_path: str = ENTRY_FILE) -> Shipped:
    """Fetch (run id) or find the code, add its folder as an archive and check it loads on an executor."""
    entry = resolve_path(_local_code(source, preprocessing_path))
    folder = entry.parent
    archive = _archive(folder)
    context = spark.sparkContext
    shipped = Shipped(archive=archive.name, entry=entry.name, skip_cutouts=skip_cutouts)
    key = (id(context), shipped)
    if key in _SHIPPED:  # added and loaded on an executor already
        return shipped
    if (id(context), archive.name) not in _ADDED:
        context.addArchive(str(archive))
        _ADDED.add((id(context), archive.name))
    problem = context.parallelize([0], 1).mapPartitions(lambda _: [probe(shipped)]).collect()[0]
    if problem is not None:
        kind, message = problem
        error = getattr(errors, kind, errors.MlprepError)
        raise error(f"on the Spark executors: {message}")
    _SHIPPED.add(key)
    return shipped


def _local_code(source: str | Path, preprocessing_path: str) -> Path:
    """A folder or file as is; a run id fetched from MLflow once, on the driver."""
    text = str(source)
    run_id = text.removeprefix("runs:/").strip("/")
    if text.startswith("runs:/") or (RUN_ID.fullmatch(text) and not Path(text).exists()):
        run_id, _, inner = run_id.partition("/")
        from mlprep.build.fetch import fetch  # the build side, only for run ids

        result = fetch(run_id, Path(tempfile.mkdtemp(dir=_scratch())) / run_id, inner or preprocessing_path)
        return result.folder
    return Path(source)


def _archive(folder: Path) -> Path:
    """What the loader can import from the folder (its ``.py`` files, its packages: sub-folders with
    ``__init__.py``) and ``requirements.txt``/``run_info.json``, zipped and named by their content."""
    files = [p for p in folder.iterdir() if p.is_file() and (p.suffix == ".py" or p.name in _KEPT)]
    for package in (p.parent for p in folder.glob("*/__init__.py")):
        files += [p for p in package.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    files.sort()
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes())
    target = _scratch() / f"mlprep-code-{digest.hexdigest()[:16]}.zip"
    if not target.exists():
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zipped:
            for path in files:
                zipped.write(path, path.relative_to(folder).as_posix())
    return target


_KEPT = frozenset({"requirements.txt", "run_info.json"})
_SCRATCH: list[Path] = []


def _scratch() -> Path:
    if not _SCRATCH:
        path = Path(tempfile.mkdtemp(prefix="mlprep-spark-"))
        atexit.register(shutil.rmtree, path, True)
        _SCRATCH.append(path)
    return _SCRATCH[0]


def executor_message(exc: BaseException) -> str | None:
    """The loading error an executor raised, without Spark's and Py4J's wrapping; None if it is another error."""
    found = re.search(rf"<{MARK}>(.*?)</{MARK}>", str(exc), re.S)
    return found.group(1) if found else None
