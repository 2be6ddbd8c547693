#!/usr/bin/env python3
"""/opt/pynomaly/scripts/audit_api_keys.py: list active API keys due for rotation.

Reads DATABASE_URL from /opt/pynomaly/.env.production and asks PostgreSQL (psql)
for active keys older than MAX_AGE_DAYS; prints them and exits 1 when any is due.
"""

import os
import subprocess
import sys

ENV_FILE = "/opt/pynomaly/.env.production"
MAX_AGE_DAYS = int(os.environ.get("API_KEY_MAX_AGE_DAYS", "90"))


def database_url() -> str:
    with open(ENV_FILE) as env:
        for line in env:
            if line.startswith("DATABASE_URL="):
                return line.split("=", 1)[1].strip()
    sys.exit(f"DATABASE_URL not found in {ENV_FILE}")


def main() -> int:
    query = ("SELECT id, user_id, created_at FROM api_keys WHERE is_active "
             f"AND created_at < now() - interval '{MAX_AGE_DAYS} days' ORDER BY created_at")
    res = subprocess.run(["psql", database_url(), "-qtAX", "-F", " ", "-c", query],
                         capture_output=True, text=True)
    if res.returncode:
        print(res.stderr.strip(), file=sys.stderr)
        return 2
    due = [line for line in res.stdout.splitlines() if line.strip()]
    for line in due:
        print(f"ROTATE: api key {line}")
    print(f"{len(due)} active API key(s) older than {MAX_AGE_DAYS} days")
    return 1 if due else 0


if __name__ == "__main__":
    sys.exit(main())
