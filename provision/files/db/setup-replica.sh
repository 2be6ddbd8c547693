#!/bin/bash
# db2: replace the empty cluster with a base backup of db1 and follow it. Idempotent.
set -euo pipefail
DATA=/var/lib/postgresql/15/main
PRIMARY=@@PRIMARY_IP@@

# db1 must accept connections from here first (it may still be starting, or restarting).
for _ in $(seq 60); do pg_isready -q -h "$PRIMARY" -t 3 && break; sleep 1; done
pg_isready -h "$PRIMARY" -t 3 >&2 || {
    echo "db1 ($PRIMARY:5432) did not accept connections from $(hostname) within 60 s" >&2; exit 1; }

if [ ! -f "$DATA/standby.signal" ]; then
    service postgresql stop >/dev/null
    for try in 1 2 3; do
        rm -rf "$DATA"
        runuser -u postgres -- pg_basebackup -h "$PRIMARY" -U replicator -D "$DATA" \
            -X stream -R -c fast -w && break
        [ "$try" = 3 ] && exit 1
        echo "pg_basebackup try $try failed; again in 5 s" >&2
        sleep 5
    done
    service postgresql start >/dev/null
fi

for _ in $(seq 60); do
    [ "$(runuser -u postgres -- psql -qtAX -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" = t ] && exit 0
    sleep 1
done
echo "db2 did not come up as a hot standby" >&2
exit 1
