"""Helpers of the `code/` layout: imported by preprocessing.py as a sibling module."""

from typing import Any

from dateutil import parser as dateparser  # from requirements.txt: proves the image installs it


def normalise_keys(record: dict[str, Any]) -> dict[str, Any]:
    return {str(key).strip().lower(): value for key, value in record.items()}


def signup_year(value: Any) -> int | None:
    """Year of a free-form date ("2021-03-04", "March 4, 2021"), or None."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        return dateparser.parse(value).year
    except (ValueError, OverflowError):
        return None
