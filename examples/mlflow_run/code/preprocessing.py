"""Preprocessing of the `code/` layout: the logic lives in the sibling module processor.py."""

from typing import Any

from processor import normalise_keys, signup_year


def pre_processing(data: dict[str, Any]) -> dict[str, Any]:
    record = normalise_keys(data)
    record["signup_year"] = signup_year(record.get("signup_date"))
    record["layout"] = "code"
    return record
