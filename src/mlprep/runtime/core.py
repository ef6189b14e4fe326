"""The one place where the user's preprocessing is applied; batch, REST and Kafka all call it."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path
from typing import Any

from mlprep.runtime import loader
from mlprep.runtime.loader import LoadedPreprocessing

CUTOUT_FIELDS = ("cutoutScience", "cutoutTemplate", "cutoutDifference")
log = logging.getLogger("mlprep.runtime.core")


class Preprocessor:
    """Applies ``pre_processing`` (or ``pre_processing_batch``) to lists of records.

    ``apply`` never raises for a bad record: it returns one output per input (``None`` where the
    record failed) and the exceptions by index, so every front end can report and go on. A
    ``SystemExit`` raised by user code is a failure of that record too (a stray ``sys.exit()``
    must not end a server or a batch without its report); ``KeyboardInterrupt`` still interrupts.
    """

    def __init__(self, loaded: LoadedPreprocessing, skip_cutouts: bool = False) -> None:
        self.loaded = loaded
        self.skip_cutouts = skip_cutouts
        self._function = loaded.function
        self._batch_function = loaded.batch_function
        self.batch_fallbacks = 0  # chunks that pre_processing_batch failed on, redone one record at a time

    @classmethod
    def load(cls, location: str | Path, skip_cutouts: bool = False) -> Preprocessor:
        """Import the preprocessing at ``location`` (folder or .py file)."""
        return cls(loader.load(location), skip_cutouts=skip_cutouts)

    @property
    def path(self) -> Path:
        return self.loaded.path

    def apply(self, records: list[Any]) -> tuple[list[Any], dict[int, BaseException]]:
        """Outputs aligned with ``records`` and the exception of each record that failed."""
        if self.skip_cutouts:
            for record in records:
                if type(record) is dict:
                    for name in CUTOUT_FIELDS:
                        record.pop(name, None)
        if self._batch_function is not None and records:
            try:
                return _check_batch_output(self._batch_function(records), len(records)), {}
            except (Exception, SystemExit) as exc:  # redo one record at a time: only the culprits fail
                self.batch_fallbacks += 1
                if self.batch_fallbacks == 1:
                    log.warning(
                        "pre_processing_batch raised %s on a chunk of %d records; such chunks are redone one "
                        "record at a time with pre_processing (logged once; counted as batch_fallbacks)",
                        describe_exception(exc),
                        len(records),
                    )
        outputs: list[Any] = []
        failures: dict[int, BaseException] = {}
        remaining = iter(records)
        while True:
            try:  # a loop in C; when a record raises, the outputs before it are kept and the loop goes on after it
                outputs.extend(map(self._function, remaining))
                return outputs, failures
            except (Exception, SystemExit) as exc:
                failures[len(outputs)] = exc
                outputs.append(None)

    def apply_one(self, record: Any) -> Any:
        """Apply to one record; raises what ``pre_processing`` raises."""
        outputs, failures = self.apply([record])
        if failures:
            raise failures[0]
        return outputs[0]


def records_of(value: Any) -> list[Any]:
    """The output records of one result: a dict is one, a list (or DataFrame) several, None none."""
    if value is None:
        return []
    if type(value) is dict:
        return [value]
    if type(value).__name__ == "DataFrame":
        value = value.to_dict(orient="records")
    if isinstance(value, list | tuple):
        return [item for item in value if item is not None]
    return [value]


def _check_batch_output(result: Any, expected: int) -> list[Any]:
    if type(result).__name__ == "DataFrame":
        result = result.to_dict(orient="records")
    result = list(result)
    if len(result) != expected:
        raise ValueError(
            f"pre_processing_batch returned {len(result)} results for {expected} records; "
            "it must return one result (dict, list or None) per input record"
        )
    return result


def describe_exception(exc: BaseException) -> str:
    """``KeyError: 'x' (preprocessing.py:12 in pre_processing)``: the error and where in user code."""
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__  # sys.exit(): no stray colon
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        last = frames[-1]
        text += f" ({Path(last.filename).name}:{last.lineno} in {last.name})"
    return text
