#!/bin/bash
# db1: database, roles and grants of the guide, plus audit/monitoring/replication
# roles. Passwords arrive in the environment. Idempotent.
set -euo pipefail

for _ in $(seq 60); do pg_isready -q && break; sleep 1; done
pg_isready -q || { echo "postgresql did not come up on $(hostname)" >&2; exit 1; }

psql_() { runuser -u postgres -- psql -v ON_ERROR_STOP=1 -qX "$@"; }

psql_ -d postgres \
  -v db_password="$DB_PASSWORD" -v audit_password="$DB_AUDIT_PASSWORD" \
  -v repl_password="$DB_REPLICATION_PASSWORD" -v exporter_password="$DB_EXPORTER_PASSWORD" <<'SQL'
-- keep the passwords below out of the server log (log_statement = 'mod')
SET log_statement = 'none';
SELECT 'CREATE DATABASE pynomaly_prod' WHERE NOT EXISTS
  (SELECT FROM pg_database WHERE datname = 'pynomaly_prod') \gexec
SELECT format('CREATE ROLE %I', r) FROM unnest(ARRAY['pynomaly_user', 'pynomaly_audit',
  'postgres_exporter', 'replicator']) AS r
  WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = r) \gexec

-- Create database and user (guide)
ALTER ROLE pynomaly_user WITH LOGIN ENCRYPTED PASSWORD :'db_password';
GRANT ALL PRIVILEGES ON DATABASE pynomaly_prod TO pynomaly_user;

-- Read-only audit role (auditors, through SSH forwarding only: see pg_hba.conf)
ALTER ROLE pynomaly_audit WITH LOGIN PASSWORD :'audit_password';
ALTER ROLE pynomaly_audit SET default_transaction_read_only = on;
GRANT pg_monitor, pg_read_all_settings, pg_read_all_data TO pynomaly_audit;

-- postgres exporter on web1
ALTER ROLE postgres_exporter WITH LOGIN PASSWORD :'exporter_password';
GRANT pg_monitor TO postgres_exporter;

-- streaming replication to db2
ALTER ROLE replicator WITH LOGIN REPLICATION PASSWORD :'repl_password';

-- the guide's slow-query query (Troubleshooting) runs in database postgres
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
SQL

psql_ -d pynomaly_prod <<'SQL'
-- Grant schema permissions (guide)
GRANT ALL ON SCHEMA public TO pynomaly_user;
GRANT ALL PRIVILEGES ON ALL TABLES IN SCHEMA public TO pynomaly_user;
GRANT ALL PRIVILEGES ON ALL SEQUENCES IN SCHEMA public TO pynomaly_user;
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;

-- The audit's opt-in replication probe (-m writes): a marker row written as pynomaly_user
-- on db1, awaited on db2, then deleted. Its own schema: the application's tables are untouched.
CREATE SCHEMA IF NOT EXISTS audit_probe;
CREATE TABLE IF NOT EXISTS audit_probe.replication_marker (
  marker text PRIMARY KEY, written_at timestamptz NOT NULL DEFAULT now());
GRANT USAGE ON SCHEMA audit_probe TO pynomaly_user;
GRANT SELECT, INSERT, DELETE ON audit_probe.replication_marker TO pynomaly_user;
SQL
