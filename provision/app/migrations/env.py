"""Alembic environment: online migrations only, serialized by a PostgreSQL advisory lock.

Three app instances start together and each runs `alembic upgrade head`; the first
takes the lock and migrates, the others wait and then find the schema at head.
The lock is polled with pg_try_advisory_lock from an autocommit connection, so a
waiting instance holds no snapshot that CREATE INDEX CONCURRENTLY would wait for.
"""

from __future__ import annotations

import logging
import time
from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool, text
from src.pynomaly.infrastructure.config.production import ProductionConfig
from src.pynomaly.infrastructure.database.models import Base
from src.pynomaly.infrastructure.database.session import MIGRATION_LOCK_ID, sqlalchemy_url

LOCK_WAIT_SECONDS = 600

if context.config.config_file_name is not None:
    fileConfig(context.config.config_file_name)
log = logging.getLogger("alembic.env")
target_metadata = Base.metadata


def _wait_for_lock(conn) -> None:
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    attempts = 0
    while not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": MIGRATION_LOCK_ID}).scalar():
        if time.monotonic() > deadline:
            raise RuntimeError("timed out waiting for the migration lock")
        if attempts % 20 == 0:
            log.info("another instance is migrating; waiting for the lock")
        attempts += 1
        time.sleep(0.5)


def run_migrations_online() -> None:
    """Migrate under the advisory lock; the lock dies with its connection."""
    url = sqlalchemy_url(ProductionConfig.get_database_url())
    engine = create_engine(url, poolclass=pool.NullPool, future=True)
    with engine.connect() as lock_conn:
        lock_conn.execution_options(isolation_level="AUTOCOMMIT")
        _wait_for_lock(lock_conn)
        try:
            with engine.connect() as connection:
                context.configure(connection=connection, target_metadata=target_metadata)
                with context.begin_transaction():
                    context.run_migrations()
        finally:
            lock_conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_ID})


if context.is_offline_mode():
    raise SystemExit("offline (--sql) mode is not supported: CREATE INDEX CONCURRENTLY needs a live database")
run_migrations_online()
