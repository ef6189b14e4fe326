"""Example preprocessing: what a team logs as ``preprocessing.py`` with its MLflow run.

Contract: ``pre_processing(record)`` returns a dict (one output record), a list of dicts (several)
or ``None`` (record dropped). It must not depend on anything but its input.
"""

from typing import Any

CATEGORICAL = ("contract", "payment_method")


def pre_processing(data: dict[str, Any]) -> dict[str, Any] | None:
    """Clean one customer record and derive the features the model expects."""
    if data.get("drop") is True:
        return None
    record = {str(key).strip().lower(): _clean(value) for key, value in data.items()}
    for name in CATEGORICAL:
        if isinstance(record.get(name), str):
            record[name] = record[name].lower().replace(" ", "_")
    tenure = record.get("tenure_months")
    monthly = record.get("monthly_charges")
    if isinstance(tenure, int | float) and isinstance(monthly, int | float):
        record["total_charges_estimate"] = round(tenure * monthly, 2)
        record["is_new_customer"] = tenure < 6
    record["preprocessed"] = True
    return record


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        stripped = value.strip()
        return None if stripped.lower() in {"", "na", "n/a", "null"} else stripped
    return value
