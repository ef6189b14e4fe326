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
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

PENDING, RUNNING, SUCCESS, FAILED, CANCELLED = "pending", "running", "success", "failed", "cancelled"
STATUSES = (PENDING, RUNNING, SUCCESS, FAILED, CANCELLED)
ACTIVE = (PENDING, RUNNING)
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
    Column("trigger", String(32), nullable=False),
    Column("image", String(512)),
    Column("model_image", String(512)),
    Column("size_bytes", Integer),
    Column("error", Text),
    Column("log", Text, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    Column("seconds", Float),
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

    def create(self, fields: dict[str, Any], trigger: str) -> dict[str, Any]:
        row = {
            **fields,
            "id": secrets.token_hex(6),
            "status": PENDING,
            "trigger": trigger,
            "created_at": now(),
            "log": "",
        }
        with self.engine.begin() as db:
            db.execute(insert(builds).values(**row))
        return self.get(row["id"])  # type: ignore[return-value]

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

    def active_for(self, run_id: str, tag: str, image_name: str) -> dict[str, Any] | None:
        """The pending or running build of the same run, image and tag, if any."""
        query = select(builds).where(
            builds.c.run_id == run_id,
            builds.c.tag == tag,
            builds.c.image_name == image_name,
            builds.c.status.in_(ACTIVE),
        )
        with self.engine.connect() as db:
            row = db.execute(query).mappings().first()
        return dict(row) if row else None

    def update(self, build_id: str, **fields: Any) -> None:
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

    def append_log(self, build_id: str, text: str) -> None:
        with self.engine.begin() as db:
            current = db.execute(select(builds.c.log).where(builds.c.id == build_id)).scalar() or ""
            db.execute(update(builds).where(builds.c.id == build_id).values(log=(current + text)[-LOG_LIMIT:]))

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
