"""Create or update the login user from APP_USERNAME / APP_PASSWORD (idempotent).

Usage, from /app once migrations ran: ``python3 -m src.pynomaly.seed``.
"""

from __future__ import annotations

import os
import sys

from sqlalchemy import select, text
from src.pynomaly.infrastructure.database.models import User
from src.pynomaly.infrastructure.database.session import SessionLocal
from src.pynomaly.infrastructure.security.passwords import hash_password, verify_password

SEED_LOCK_ID = 7_242_002  # serializes concurrent seeds (users.email is not unique)


def seed(username: str, password: str) -> str:
    """Ensure one active user `username` with `password`; returns created/updated/unchanged."""
    with SessionLocal() as session:
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": SEED_LOCK_ID})
        users = session.execute(select(User).where(User.email == username).order_by(User.id)).scalars().all()
        if not users:
            session.add(User(email=username, hashed_password=hash_password(password), is_active=True))
            outcome = "created"
        else:
            user = users[0]
            outcome = "unchanged"
            if not verify_password(password, user.hashed_password):
                user.hashed_password = hash_password(password)
                outcome = "updated"
            if not user.is_active:
                user.is_active = True
                outcome = "updated"
        session.commit()
    return outcome


def main() -> int:
    """Seed from the environment; exit 2 when a variable is missing."""
    username, password = os.getenv("APP_USERNAME"), os.getenv("APP_PASSWORD")
    if not username or not password:
        print("APP_USERNAME and APP_PASSWORD must be set", file=sys.stderr)
        return 2
    print(f"user {username}: {seed(username, password)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
