"""Example preprocessing of astronomy alerts: light-curve features from an alert and its history.

Cutouts (image stamps) are dropped: run with SKIP_CUTOUTS=true so they never reach this code.
"""

from typing import Any

FILTERS = {1: "g", 2: "r", 3: "i"}


def pre_processing(alert: dict[str, Any]) -> dict[str, Any]:
    candidate = alert["candidate"]
    history = [p for p in (alert.get("prv_candidates") or []) if p.get("magpsf") is not None]
    detections = [*history, candidate]
    last_by_filter: dict[int, float] = {}
    for detection in sorted(detections, key=lambda d: d["jd"]):
        last_by_filter[detection["fid"]] = float(detection["magpsf"])
    mag_g, mag_r = last_by_filter.get(1), last_by_filter.get(2)
    dates = [d["jd"] for d in detections]
    return {
        "objectId": alert["objectId"],
        "candid": alert["candid"],
        "jd": candidate["jd"],
        "ra": candidate["ra"],
        "dec": candidate["dec"],
        "magpsf": candidate["magpsf"],
        "sigmapsf": candidate["sigmapsf"],
        "filter": FILTERS.get(candidate["fid"], str(candidate["fid"])),
        "ndet": len(detections),
        "time_span_days": max(dates) - min(dates),
        "mag_g": mag_g,
        "mag_r": mag_r,
        "color_g_r": None if mag_g is None or mag_r is None else round(mag_g - mag_r, 4),
        "mean_mag": sum(float(d["magpsf"]) for d in detections) / len(detections),
        "positive_diff": candidate["isdiffpos"] in ("t", "1"),
        "rb": candidate.get("rb"),
    }
