"""Builds and webhook deliveries in a real database (sqlite by default, any SQLAlchemy URL)."""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    Column,
    DateTime,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.exc import IntegrityError

from mlprep.redaction import redact

PENDING, RUNNING, SUCCESS, FAILED, CANCELLED = "pending", "running", "success", "failed", "cancelled"
STATUSES = (PENDING, RUNNING, SUCCESS, FAILED, CANCELLED)
ACTIVE = (PENDING, RUNNING)
FINAL = (SUCCESS, FAILED, CANCELLED)
LOG_LIMIT = 256 * 1024  # characters of build log kept (the end)

metadata = MetaData()
builds = Table(
    "builds",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("status", String(16), nullable=False, index=True),
    Column("run_id", String(64), nullable=False, index=True),
    Column("image_name", String(255), nullable=False),
    Column("tag", String(128), nullable=False),
    Column("preprocessing_path", String(1024), nullable=False),
    Column("python_version", String(8), nullable=False),
    Column("base_image", String(512)),
    Column("dockerfile", String(128)),
    Column("model_source", String(1024)),
    Column("model_image_name", String(255)),
    Column("no_cache", Integer, default=0),
    Column("push", Integer, default=0),
    Column("alias", String(256)),  # a promotion: re-tag the version's pushed images as :alias
    Column("trigger", String(32), nullable=False),
    Column("image", String(512)),
    Column("model_image", String(512)),
    Column("image_digest", String(512)),
    Column("model_image_digest", String(512)),
    Column("size_bytes", Integer),
    Column("error", Text),
    Column("log", Text, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("seconds", Float),
    # "run_id image_name:tag" while the build is pending or running, NULL after: the unique index makes
    # "one active build per run, image and tag" hold under concurrent requests, not only check-then-insert.
    Column("active_key", String(512), unique=True),
)
deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("delivery_id", String(128), primary_key=True),
    Column("received_at", DateTime(timezone=True), nullable=False),
)


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class BuildStore:
    url: str

    def __post_init__(self) -> None:
        options: dict[str, Any] = {"future": True}
        if self.url.startswith("sqlite"):
            options["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine = create_engine(self.url, **options)
        metadata.create_all(self.engine)
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        """Databases made by earlier versions lack later columns: add them (``active_key`` with its index)."""
        present = {c["name"] for c in inspect(self.engine).get_columns("builds")}
        with self.engine.begin() as db:
            for column in builds.columns:
                if column.name in present:
                    continue
                kind = column.type.compile(dialect=self.engine.dialect)
                db.execute(text(f"ALTER TABLE builds ADD COLUMN {column.name} {kind}"))
                if column.name == "active_key":
                    db.execute(text("CREATE UNIQUE INDEX ix_builds_active_key ON builds (active_key)"))

    def create_unless_active(self, fields: dict[str, Any], trigger: str) -> tuple[dict[str, Any], bool]:
        """A new pending build, or the active build of the same run, image and tag (``False``).

        Atomic: of concurrent identical requests exactly one inserts, the others get its build.
        """
        key = f"{fields['run_id']} {fields['image_name']}:{fields['tag']}"
        if fields.get("alias"):
            key += f" @{fields['alias']}"
        row = {
            **fields,
            "id": secrets.token_hex(6),
            "status": PENDING,
            "trigger": trigger,
            "created_at": now(),
            "log": "",
            "active_key": key,
        }
        for _ in range(5):  # the active build may end between the refused insert and the lookup
            try:
                with self.engine.begin() as db:
                    db.execute(insert(builds).values(**row))
                return self.get(row["id"]), True  # type: ignore[return-value]
            except IntegrityError:
                with self.engine.connect() as db:
                    existing = db.execute(select(builds).where(builds.c.active_key == key)).mappings().first()
                if existing is not None:
                    return dict(existing), False
        raise RuntimeError(f"could not record a build of {key}")

    def get(self, build_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as db:
            row = db.execute(select(builds).where(builds.c.id == build_id)).mappings().first()
        return dict(row) if row else None

    def list(self, status: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        query = select(builds).order_by(builds.c.created_at.desc()).limit(limit)
        if status:
            query = query.where(builds.c.status == status)
        with self.engine.connect() as db:
            return [dict(r) for r in db.execute(query).mappings()]

    def update(self, build_id: str, **fields: Any) -> None:
        """Change a build; a final status frees its run, image and tag; errors are stored redacted."""
        if fields.get("status") in FINAL:
            fields["active_key"] = None
        if fields.get("error"):
            fields["error"] = redact(fields["error"])
        with self.engine.begin() as db:
            db.execute(update(builds).where(builds.c.id == build_id).values(**fields))

    def start(self, build_id: str) -> bool:
        """pending -> running; False when the build is no longer pending (cancelled meanwhile)."""
        with self.engine.begin() as db:
            result = db.execute(
                update(builds)
                .where(builds.c.id == build_id, builds.c.status == PENDING)
                .values(status=RUNNING, started_at=now())
            )
        return result.rowcount == 1

    def append_log(self, build_id: str, lines: str) -> None:
        with self.engine.begin() as db:
            current = db.execute(select(builds.c.log).where(builds.c.id == build_id)).scalar() or ""
            log = (current + redact(lines))[-LOG_LIMIT:]
            db.execute(update(builds).where(builds.c.id == build_id).values(log=log))

    def delete(self, build_id: str) -> bool:
        with self.engine.begin() as db:
            return db.execute(delete(builds).where(builds.c.id == build_id)).rowcount == 1

    def recover(self) -> list[str]:
        """After a restart: running builds are failed (interrupted); pending ones are returned to requeue."""
        with self.engine.begin() as db:
            db.execute(
                update(builds)
                .where(builds.c.status == RUNNING)
                .values(
                    status=FAILED,
                    active_key=None,
                    finished_at=now(),
                    error="interrupted: the build API stopped while this build was running",
                )
            )
            pending = db.execute(
                select(builds.c.id).where(builds.c.status == PENDING).order_by(builds.c.created_at)
            ).scalars()
            return list(pending)

    def remember_delivery(self, delivery_id: str) -> bool:
        """True the first time a webhook delivery id is seen; False for a replay."""
        try:
            with self.engine.begin() as db:
                db.execute(insert(deliveries).values(delivery_id=delivery_id, received_at=now()))
        except IntegrityError:
            return False
        return True

    def forget_deliveries_before(self, moment: dt.datetime) -> None:
        with self.engine.begin() as db:
            db.execute(delete(deliveries).where(deliveries.c.received_at < moment))
