"""BentoML service of the identity function: POST /preprocess {"data": record}, /batch {"data": [records]}.

Served with: bentoml serve bentoml_service:Identity --port PORT (one worker).
"""

from __future__ import annotations

from typing import Any

import bentoml


def pre_processing(data):
    return data


@bentoml.service(workers=1)
class Identity:
    @bentoml.api
    def preprocess(self, data: dict[str, Any]) -> dict[str, Any]:
        return pre_processing(data)

    @bentoml.api
    def batch(self, data: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [pre_processing(record) for record in data]
