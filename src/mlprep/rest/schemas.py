"""Request and response shapes, for the OpenAPI document (/docs); bodies are parsed with orjson."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class PreprocessRequest(BaseModel):
    data: dict[str, Any] = Field(
        ..., description="One record, passed to pre_processing(data)", examples=[{"test": "data", "value": 123}]
    )


class PreprocessResponse(BaseModel):
    result: Any = Field(..., description="What pre_processing returned: a record, a list of records or null")


class BatchRequest(BaseModel):
    data: list[dict[str, Any]] = Field(
        ..., description="Records, processed in order", examples=[[{"test": "data1"}, {"test": "data2"}]]
    )


class ItemError(BaseModel):
    index: int = Field(..., description="Position of the record in the request's data list")
    stage: str = Field(..., description="decode (not a JSON object), preprocess or serialize")
    error: str


class BatchResponse(BaseModel):
    results: list[Any] = Field(..., description="One result per input record, in order; null where it failed")
    errors: list[ItemError] = Field(..., description="The records that failed, by index; empty when all passed")


class ErrorResponse(BaseModel):
    error: str
    type: str | None = None
    index: int | None = Field(None, description="With a 504: the record pre_processing was on")


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": model.model_json_schema()}}}}
