#!/bin/sh
# Initialise the AIDE database once, after every configuration file is in place.
set -eu
mkdir -p /var/lib/aide
if [ ! -f /var/lib/aide/aide.db ]; then
    aide --config /etc/aide/aide.conf --init >/dev/null || [ $? -le 7 ]
    mv /var/lib/aide/aide.db.new /var/lib/aide/aide.db
fi
