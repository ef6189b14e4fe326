"""The MLflow model served in the same process as the preprocessing.

``LoadedModel`` is one loaded version: it predicts on preprocessed records, one prediction per
record. ``ServedModel`` is what the front ends hold: the current ``LoadedModel``, replaced in one
assignment when a registry alias (``models:/NAME@champion``) moves to another version, so a request
sees either the old model or the new one, never a mix. MLflow is imported only when a model is served.
"""

from __future__ import annotations

import itertools
import logging
import operator
import re
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mlprep.errors import MlprepError
from mlprep.redaction import redact

log = logging.getLogger("mlprep.model")

_REGISTERED = re.compile(r"models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>[^/]+))/?")
REGISTERED_META = "registered_model_meta"  # written by MLflow into a model downloaded from the registry
_RUN = re.compile(r"runs:/(?P<run>[0-9a-zA-Z_-]+)/.+")
# Signature types whose columns are built as float64 arrays exactly as MLflow's schema enforcement and
# scikit-learn's input validation would convert them.
_FAST_TYPES = {"double": (int, float), "long": (int,), "integer": (int,)}


class ModelLoadError(MlprepError):
    """The model cannot be resolved or loaded; the message says which URI and why."""


class ModelError(Exception):
    """The model raised on a batch of preprocessed records, or answered with the wrong number of rows."""


@dataclass(frozen=True)
class ModelInfo:
    """Which model is served: the URI as given, and what it resolved to in the registry."""

    uri: str
    name: str | None = None
    alias: str | None = None
    version: str | None = None
    run_id: str | None = None
    flavor: str | None = None
    loaded_at: float | None = None

    @property
    def pinned(self) -> str:
        """The URI of exactly this version (an alias may have moved since it was resolved); a local
        folder is itself, even when it knows the registered version it was downloaded from."""
        if self.name and self.version and self.uri.startswith("models:/"):
            return f"models:/{self.name}/{self.version}"
        return self.uri

    def as_dict(self) -> dict[str, Any]:
        return {key: value for key, value in asdict(self).items() if value is not None}


def resolve(uri: str) -> ModelInfo:
    """The registry's version and run of ``uri`` (``models:/NAME@ALIAS``, ``models:/NAME/VERSION``,
    ``runs:/RUN/PATH``); other URIs (a path, ``models:/m-...``) are loaded as they are. A local folder
    (an image's ``/opt/model``) asks no server: the name and version MLflow wrote beside the model when
    it was downloaded from the registry (``registered_model_meta``) are read from the folder."""
    match = _REGISTERED.fullmatch(uri)
    if match is None or match["version"] == "latest" or match["name"].startswith("m-"):
        run = _RUN.fullmatch(uri)
        return ModelInfo(uri, run_id=run["run"] if run else None, **_registered_meta(uri))
    from mlflow import MlflowClient

    name, alias = match["name"], match["alias"]
    try:
        client = MlflowClient()
        found = (
            client.get_model_version_by_alias(name, alias)
            if alias
            else client.get_model_version(name, match["version"])
        )
    except Exception as exc:
        raise ModelLoadError(
            f"cannot find model {uri} in the registry at {redact(_tracking_uri())}: {redact(str(exc))}. "
            "Check the name, version or alias, and MLFLOW_TRACKING_URI"
        ) from exc
    return ModelInfo(uri, name, alias, str(found.version), found.run_id)


def _registered_meta(uri: str) -> dict[str, str]:
    """``name`` and ``version`` from the ``registered_model_meta`` file of a local model folder, if any."""
    folder = Path(uri.removeprefix("file://")) if "://" not in uri or uri.startswith("file://") else None
    meta = folder / REGISTERED_META if folder is not None else None
    if meta is None or not meta.is_file():
        return {}
    import yaml

    try:
        found = yaml.safe_load(meta.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        log.warning("ignoring %s: %s", meta, exc)
        return {}
    name, version = found.get("model_name"), found.get("model_version")
    return {"name": str(name), "version": str(version)} if name and version else {}


def _tracking_uri() -> str:
    import mlflow

    return mlflow.get_tracking_uri()


class LoadedModel:
    """One loaded model version. ``predict`` takes preprocessed records (dicts) and returns one
    JSON-ready prediction per record.

    A scikit-learn model whose signature names numeric columns is called directly on a float64 array
    in its features' order: the result is what its pyfunc gives, without the per-call DataFrame and
    schema checks that cost about 2 ms a call. A record that does not fit (a column missing, a value
    that is not a number) goes the pyfunc way, with MLflow's own checks and messages.
    """

    def __init__(self, info: ModelInfo, pyfunc: Any) -> None:
        self.pyfunc = pyfunc
        flavors = pyfunc.metadata.flavors
        flavor = next((name for name in flavors if name != "python_function"), "python_function")
        self.info = ModelInfo(**{**asdict(info), "flavor": flavor, "loaded_at": time.time()})
        if self.info.run_id is None and pyfunc.metadata.run_id:
            self.info = ModelInfo(**{**asdict(self.info), "run_id": pyfunc.metadata.run_id})
        self._fast = _fast_path(pyfunc)

    @classmethod
    def load(cls, uri: str) -> LoadedModel:
        info = resolve(uri)
        import mlflow.pyfunc

        try:
            return cls(info, mlflow.pyfunc.load_model(info.pinned))
        except Exception as exc:
            raise ModelLoadError(f"cannot load model {info.pinned}: {redact(f'{type(exc).__name__}: {exc}')}") from exc

    def predict(self, rows: list[dict[str, Any]]) -> list[Any]:
        """One prediction per row, in order; raises ``ModelError`` with the model's message."""
        if not rows:
            return []
        try:
            if self._fast is not None:
                array = self._fast.array(rows)
                if array is not None:
                    return _per_row(self._fast.predict(array), len(rows))
            import pandas as pd

            return _per_row(self.pyfunc.predict(pd.DataFrame.from_records(rows)), len(rows))
        except ModelError:
            raise
        except Exception as exc:
            message = getattr(exc, "message", None) or str(exc)
            raise ModelError(redact(f"the model raised {type(exc).__name__}: {message}")) from exc


class _FastPath:
    def __init__(self, columns: list[str], types: list[tuple[type, ...]], predict: Callable[[Any], Any]) -> None:
        import numpy

        self.columns, self.types, self.predict, self.numpy = columns, types, predict, numpy
        self.values = operator.itemgetter(*columns) if len(columns) > 1 else lambda row: (row[columns[0]],)
        self.uniform = frozenset(types[0]) if len(set(types)) == 1 else None  # every column takes the same types

    def array(self, rows: list[dict[str, Any]]) -> Any:
        """The rows as a float64 array in the model's column order, or None if one does not fit: a column
        missing, or a value of another type (bool, None, str, numpy scalars...), which go the pyfunc way."""
        try:
            values = list(map(self.values, rows))
        except (KeyError, TypeError, IndexError):
            return None
        if self.uniform is not None:
            if not self.uniform.issuperset(map(type, itertools.chain.from_iterable(values))):
                return None
        elif not all(
            set(map(type, column)) <= set(allowed)
            for column, allowed in zip(zip(*values, strict=True), self.types, strict=True)
        ):
            return None
        return self.numpy.array(values, dtype=self.numpy.float64)


def _fast_path(pyfunc: Any) -> _FastPath | None:
    """The direct call of a scikit-learn model with a numeric column signature, or None."""
    metadata = pyfunc.metadata
    conf = metadata.flavors.get("python_function", {})
    if conf.get("loader_module") != "mlflow.sklearn" or metadata.get_params_schema() is not None:
        return None
    schema = metadata.get_input_schema()
    if schema is None or not schema.has_input_names() or schema.is_tensor_spec():
        return None
    kinds: dict[str, tuple[type, ...]] = {}
    for spec in schema.inputs:
        allowed = _FAST_TYPES.get(str(getattr(spec.type, "name", spec.type)))
        if allowed is None or not getattr(spec, "required", False):
            return None
        kinds[spec.name] = allowed
    try:
        raw = pyfunc.get_raw_model()
    except Exception:
        return None
    fitted = getattr(raw, "feature_names_in_", None)
    columns = [str(name) for name in fitted] if fitted is not None else list(kinds)
    if sorted(columns) != sorted(kinds):
        return None
    predict = getattr(raw, conf.get("predict_fn", "predict"), None)
    if predict is None:
        return None
    # The array is in the fitted order, checked above: scikit-learn's warning that it has no names is moot.
    warnings.filterwarnings("ignore", message="X does not have valid feature names", category=UserWarning)
    return _FastPath(columns, [kinds[name] for name in columns], predict)


def _per_row(raw: Any, count: int) -> list[Any]:
    """The model's output as one JSON-ready value per input row (as MLflow's scoring server writes it)."""
    kind = type(raw).__name__
    if kind == "ndarray":
        out = raw.tolist()
    elif kind == "DataFrame":
        out = raw.to_dict(orient="records")
    elif kind == "Series":
        out = raw.tolist()
    elif isinstance(raw, dict):  # columns of equal length
        names = list(raw)
        columns = [list(raw[name]) for name in names]
        out = [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]
    else:
        out = list(raw)
    if len(out) != count:
        raise ModelError(f"the model returned {len(out)} predictions for {count} records")
    return out


class ServedModel:
    """The model a process serves. ``current`` is replaced in one assignment, so a caller that reads
    it once per batch uses one version for the whole batch.

    With ``reload_s`` and a URI naming an alias, a thread checks every ``reload_s`` seconds where the
    alias points; when it moved, the new version is loaded beside the old one, tried on the last
    batch's rows, then swapped in. A version that fails to load (or to predict) leaves the old one
    serving and is reported by ``state()`` until the alias moves again.
    """

    def __init__(
        self, uri: str, reload_s: float | None = None, loader: Callable[[str], LoadedModel] = LoadedModel.load
    ) -> None:
        self.uri, self.reload_s, self._load = uri, reload_s, loader
        self.current = loader(uri)
        self.loading: dict[str, Any] | None = None
        self.failed: dict[str, Any] | None = None
        self.switches = 0
        self._sample: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def info(self) -> ModelInfo:
        return self.current.info

    def predict(self, rows: list[dict[str, Any]]) -> list[Any]:
        predictions = self.current.predict(rows)
        self.remember(rows)  # only rows the model took: a new version is tried on one of them
        return predictions

    def remember(self, rows: list[dict[str, Any]]) -> None:
        """Keeps a row the model predicted on: a new version must predict on it before it serves."""
        if rows and not self._sample:
            self._sample = rows[:1]

    def start(self) -> None:
        """Starts the alias watcher when there is something to watch."""
        if self.reload_s and self.current.info.alias and self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="model-reload", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        while not self._stop.wait(self.reload_s):
            try:
                self.check()
            except Exception:  # the watcher never dies: the next period tries again
                log.exception("checking where %s points failed", self.uri)

    def check(self) -> bool:
        """Loads and swaps in the version the alias points to now, if it moved; True if it switched."""
        try:
            target = resolve(self.uri)
        except ModelLoadError as exc:
            log.warning("%s", exc)
            return False
        if target.version == self.current.info.version:
            return False
        if self.failed and self.failed.get("version") == target.version:
            return False  # already tried: wait for the alias to move again
        self.loading = {"version": target.version, "since": time.time()}
        log.warning(
            "model %s moved to version %s: loading it beside version %s",
            self.uri,
            target.version,
            self.current.info.version,
        )
        try:
            candidate = self._load(target.pinned)
            candidate.info = ModelInfo(**{**asdict(candidate.info), "uri": self.uri, "alias": target.alias})
            if self._sample:
                candidate.predict(self._sample)
        except Exception as exc:
            error = redact(str(exc))
            self.failed = {"version": target.version, "error": error, "at": time.time()}
            log.error(
                "model version %s cannot serve; version %s keeps serving: %s",
                target.version,
                self.current.info.version,
                error,
            )
            return False
        finally:
            self.loading = None
        previous = self.current.info.version
        self.current = candidate
        self.failed = None
        self.switches += 1
        log.warning("model %s: now serving version %s (was %s)", self.uri, target.version, previous)
        return True

    def state(self) -> dict[str, Any]:
        """What ``/health`` shows: the serving version, one being loaded, one that failed."""
        body: dict[str, Any] = self.current.info.as_dict()
        body["uri"] = self.uri
        body["reload_s"] = self.reload_s
        body["switches"] = self.switches
        if self.loading:
            body["loading"] = dict(self.loading)
        if self.failed:
            body["failed"] = dict(self.failed)
        return body
