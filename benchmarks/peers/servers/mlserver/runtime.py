"""MLServer custom runtime of the identity function: the V2 request's inputs are the record's fields
(one column each), turned into records, passed to the function one by one, and sent back as columns."""

from __future__ import annotations

from mlserver import MLModel
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput


def pre_processing(data):
    return data


class Identity(MLModel):
    async def load(self) -> bool:
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        names = [item.name for item in payload.inputs]
        columns = [item.data.root if hasattr(item.data, "root") else item.data for item in payload.inputs]
        records = [pre_processing(dict(zip(names, row, strict=True))) for row in zip(*columns, strict=True)]
        outputs = []
        for item in payload.inputs:
            values = [record[item.name] for record in records]
            outputs.append(ResponseOutput(name=item.name, shape=[len(values)], datatype=item.datatype, data=values))
        return InferenceResponse(model_name=self.name, outputs=outputs)
