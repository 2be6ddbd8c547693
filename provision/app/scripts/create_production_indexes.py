"""The guide's `python scripts/create_production_indexes.py`: (re)create the performance indexes.

The Alembic migration already creates them; this is idempotent (IF NOT EXISTS).
Run from /app: ``python3 scripts/create_production_indexes.py``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import text  # noqa: E402
from src.pynomaly.infrastructure.database.indexes import PERFORMANCE_INDEXES  # noqa: E402
from src.pynomaly.infrastructure.database.session import engine  # noqa: E402

if __name__ == "__main__":
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        for statement in PERFORMANCE_INDEXES:
            conn.execute(text(statement))
            print(statement)
