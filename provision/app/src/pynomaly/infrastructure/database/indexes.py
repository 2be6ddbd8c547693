"""The guide's "Database Optimization" indexes, verbatim (plus IF NOT EXISTS)."""

PERFORMANCE_INDEXES = (
    # Performance indexes
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_users_email ON users(email)",
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_users_created_at ON users(created_at)",
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_audit_logs_user_id ON audit_logs(user_id)",
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_audit_logs_timestamp ON audit_logs(timestamp)",
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_api_keys_user_id ON api_keys(user_id)",
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_api_keys_key_hash ON api_keys(key_hash)",
    # Partial indexes for active records
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_users_active ON users(id) WHERE is_active = true",
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_api_keys_active ON api_keys(id) WHERE is_active = true",
    # Composite indexes for common queries
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_audit_logs_user_timestamp ON audit_logs(user_id, timestamp)",
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_users_email_active ON users(email, is_active)",
)


def index_names() -> list[str]:
    """The index names, in guide order."""
    return [sql.split(" IF NOT EXISTS ")[1].split()[0] for sql in PERFORMANCE_INDEXES]
