#!/bin/bash
# db2: replace the empty cluster with a base backup of db1 and follow it. Idempotent.
set -euo pipefail
DATA=/var/lib/postgresql/15/main

if [ ! -f "$DATA/standby.signal" ]; then
    service postgresql stop >/dev/null
    rm -rf "$DATA"
    runuser -u postgres -- pg_basebackup -h @@PRIMARY_IP@@ -U replicator -D "$DATA" \
        -X stream -R -c fast -w
    service postgresql start >/dev/null
fi

for _ in $(seq 60); do
    [ "$(runuser -u postgres -- psql -qtAX -c 'SELECT pg_is_in_recovery()' 2>/dev/null)" = t ] && exit 0
    sleep 1
done
echo "db2 did not come up as a hot standby" >&2
exit 1
