"""``mlprep dlq inspect`` and ``mlprep dlq replay``: what the dead-letter topic holds, and sending it back."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from mlprep.runtime.outcomes import Stage

if TYPE_CHECKING:
    from mlprep.settings import Settings

_AGO = re.compile(r"(\d+)([smhd])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def since(text: str) -> datetime:
    """An ISO 8601 time (UTC unless it says otherwise), or a duration back from now: 30m, 2h, 1d."""
    if match := _AGO.fullmatch(text):
        return datetime.now(UTC) - timedelta(**{_UNITS[match[2]]: int(match[1])})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an ISO 8601 time nor a duration like 30m, 2h, 1d"
        ) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def register(commands: argparse._SubParsersAction, settings: Settings) -> None:
    dlq = commands.add_parser("dlq", help="dead-letter topics: inspect them, replay them")
    actions = dlq.add_subparsers(dest="action", metavar="ACTION", required=True)
    inspect = actions.add_parser("inspect", help="summarise a dead-letter topic by stage and error")
    inspect.add_argument("topic", metavar="TOPIC")
    inspect.set_defaults(handler=_inspect)
    replay = actions.add_parser(
        "replay",
        help="send dead letters back to an input topic (key, bytes and headers as they came)",
        description="Dead letters of a replay that failed again are never replayed (header mlprep-replayed).",
    )
    replay.add_argument("topic", metavar="TOPIC")
    replay.add_argument("--to", required=True, metavar="INPUT_TOPIC", help="the topic to send them to")
    replay.add_argument("--stage", choices=[stage.value for stage in Stage], help="only the letters of this stage")
    replay.add_argument(
        "--since", type=since, metavar="T", help="only letters dead-lettered at or after T (ISO 8601, or 30m, 2h, 1d)"
    )
    replay.set_defaults(handler=_replay)


def _inspect(args: argparse.Namespace, settings: Settings) -> int:
    from mlprep.kafka.dlq import letters, summary

    print(summary(list(letters(settings, args.topic))))
    return 0


def _replay(args: argparse.Namespace, settings: Settings) -> int:
    from mlprep.kafka.dlq import replay

    done = replay(settings, args.topic, args.to, args.stage, args.since)
    print(
        f"replayed {done.sent} to {args.to}; skipped {done.skipped_replays} that failed again after a replay,"
        f" {done.skipped_truncated} truncated, {done.filtered} filtered out"
    )
    return 0
