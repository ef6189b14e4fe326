"""Which MLflow run a preprocessing comes from: one resolver for /health, Kafka headers and topic names.

``run_info.json`` beside ``preprocessing.py`` is written when the code is fetched (and baked into images);
the ``MLFLOW_RUN_ID``, ``MODEL_NAME``, ``MODEL_VERSION`` and ``PREPROCESSING_TYPE`` settings win over it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from mlprep.settings import Settings


@dataclass(frozen=True, slots=True)
class Provenance:
    run_id: str | None = None
    model_name: str | None = None
    model_version: str | None = None
    type: str | None = None

    @classmethod
    def resolve(cls, settings: Settings, metadata: dict[str, Any]) -> Provenance:
        """The settings first, then what ``run_info.json`` says."""
        return cls(
            run_id=settings.mlflow_run_id or metadata.get("run_id"),
            model_name=settings.model_name or metadata.get("model_name"),
            model_version=settings.model_version or metadata.get("version"),
            type=settings.preprocessing_type or metadata.get("type"),
        )

    def as_dict(self) -> dict[str, str | None]:
        return asdict(self)
