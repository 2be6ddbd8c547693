"""The SQLAlchemy engine, sized by ProductionConfig's pool settings."""

from __future__ import annotations

from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker
from src.pynomaly.infrastructure.config.production import ProductionConfig

MIGRATION_LOCK_ID = 7_242_001  # pg advisory lock key held while migrating


def sqlalchemy_url(url: str) -> str:
    """postgres:// and postgresql:// both mean psycopg2 here."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    return url


def make_engine(url: str | None = None) -> Engine:
    """An engine with pool_size 20, max_overflow 30, pool_timeout 30, pool_recycle 3600."""
    return create_engine(
        sqlalchemy_url(url or ProductionConfig.get_database_url()),
        pool_size=ProductionConfig.DATABASE_POOL_SIZE,
        max_overflow=ProductionConfig.DATABASE_MAX_OVERFLOW,
        pool_timeout=ProductionConfig.DATABASE_POOL_TIMEOUT,
        pool_recycle=ProductionConfig.DATABASE_POOL_RECYCLE,
        pool_pre_ping=True,
        connect_args={"connect_timeout": 3, "application_name": "pynomaly"},
        future=True,
    )


engine = make_engine()  # lazy: no connection until first use (safe with --preload)
SessionLocal = sessionmaker(bind=engine, future=True, expire_on_commit=False)


def ping() -> None:
    """SELECT 1, raising on failure."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
