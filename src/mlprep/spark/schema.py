"""The output schema inferred from sample outputs (plain JSON values, as batch mode writes them).

Numbers widen (long + double = double), missing fields are null, a field never seen with a value is a
string; any other disagreement is an error naming the field and both types.
"""

from __future__ import annotations

from typing import Any

from mlprep.errors import MlprepError


class SchemaConflict(MlprepError):
    """Outputs disagree on a field's type: the schema must be given."""


def _type(value: Any, where: str) -> Any:
    from pyspark.sql import types as T

    if value is None:
        return T.NullType()
    if isinstance(value, bool):
        return T.BooleanType()
    if isinstance(value, int):
        return T.LongType()
    if isinstance(value, float):
        return T.DoubleType()
    if isinstance(value, str):
        return T.StringType()
    if isinstance(value, list):
        element: Any = T.NullType()
        for item in value:
            element = _merge(element, _type(item, f"{where}[]"), f"{where}[]")
        return T.ArrayType(element)
    if isinstance(value, dict):
        return T.StructType(
            [T.StructField(str(k), _type(v, f"{where}.{k}" if where else str(k))) for k, v in value.items()]
        )
    raise SchemaConflict(f"output field {where!r} holds a {type(value).__name__}, which has no Spark type")


def _merge(left: Any, right: Any, where: str) -> Any:
    from pyspark.sql import types as T

    if isinstance(left, T.NullType) or left == right:
        return right
    if isinstance(right, T.NullType):
        return left
    numbers = (T.LongType, T.DoubleType)
    if isinstance(left, numbers) and isinstance(right, numbers):
        return T.DoubleType()
    if isinstance(left, T.ArrayType) and isinstance(right, T.ArrayType):
        return T.ArrayType(_merge(left.elementType, right.elementType, f"{where}[]"))
    if isinstance(left, T.StructType) and isinstance(right, T.StructType):
        fields = {f.name: f.dataType for f in left.fields}
        for f in right.fields:
            inner = f"{where}.{f.name}" if where else f.name
            fields[f.name] = _merge(fields[f.name], f.dataType, inner) if f.name in fields else f.dataType
        return T.StructType([T.StructField(name, kind) for name, kind in fields.items()])
    raise SchemaConflict(
        f"the outputs disagree on field {where!r}: {left.simpleString()} in one record, {right.simpleString()} "
        "in another; give the output schema (schema=... in Python, a DDL string or StructType)"
    )


def _settle(kind: Any) -> Any:
    """Types never seen with a value become strings."""
    from pyspark.sql import types as T

    if isinstance(kind, T.NullType):
        return T.StringType()
    if isinstance(kind, T.ArrayType):
        return T.ArrayType(_settle(kind.elementType))
    if isinstance(kind, T.StructType):
        return T.StructType([T.StructField(f.name, _settle(f.dataType)) for f in kind.fields])
    return kind


def infer_schema(outputs: list[Any]) -> Any:
    """The ``StructType`` of output records (dicts of JSON values)."""
    from pyspark.sql import types as T

    if not outputs:
        raise SchemaConflict("cannot infer the output schema: the sample gave no output record; give the output schema")
    merged: Any = T.StructType([])
    for number, record in enumerate(outputs, 1):
        if not isinstance(record, dict):
            raise SchemaConflict(
                f"output {number} of the sample is a {type(record).__name__}, not a record (dict); "
                "Spark rows need records"
            )
        merged = _merge(merged, _type(record, ""), "")
    return _settle(merged)
