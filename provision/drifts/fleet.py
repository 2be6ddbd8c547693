"""Drifts on the fleet flavour (`python -m provision --flavour fleet drift NAME`).

Which of the reference's drifts run on the fleet, and the fleet's own. A reference drift runs on
the fleet when what it changes is there and it changes it the same way: unchanged (BOTH), with its
service control made flavour-aware in its module (Ctx.service / Ctx.fleet: stopping a daemon is
`systemctl stop`, a cluster node is `redis-server@PORT`, Prometheus reloads through its unit, the
app's replica 3 is docker-compose's on app1), or with another host (MOVED: the app's files, the
backups of the application and the maintenance scripts live on app1, not on web1). Every other
reference drift stays reference-only: what it edits is not on the fleet (the app containers of
the host engine: perf-*, app-replica-unhealthy/root-staging/gunicorn-flags, app-image-expose-9000;
web1's ufw: the ufw-* drifts of web1), or reads what the fleet has elsewhere (127.0.0.1:8000 on
web1: arch-nginx-bypasses-upstream, app-errors, app-slow; 'localhost:8002' in prometheus.yml:
prometheus-target-removed).

The fleet's own (DRIFTS below) break web1's iptables firewall (Security Hardening > Network
Security), which the reference does not have.
"""

from __future__ import annotations

from . import BACKUPS, Drift

BOTH = frozenset({
    # network (ufw hosts; the two with networks in them use the fleet's)
    "ufw-postgres-public", "ufw-redis-public", "ufw-redis-cluster-public", "ufw-extra-internal-rule",
    "ufw-ssh-narrowed",
    # PostgreSQL (psql on db1/db2; `service postgresql restart` is systemctl's there)
    "pg-shared-buffers", "pg-effective-cache-size", "pg-work-mem", "pg-maintenance-work-mem",
    "pg-max-connections", "pg-max-prepared-transactions", "pg-checkpoint-completion-target", "pg-wal-buffers",
    "pg-default-statistics-target", "pg-log-min-duration-statement", "pg-log-checkpoints", "pg-log-connections",
    "pg-log-disconnections", "pg-wal-level", "pg-max-wal-senders", "pg-wal-keep-size", "pg-app-role-nologin",
    "pg-password-placeholder", "pg-password-md5", "pg-replica-trust", "pg-revoke-database-create",
    "pg-revoke-schema-create", "pg-revoke-table-truncate", "pg-revoke-sequence-update", "pg-replica-detached",
    "pg-replay-paused", "pg-alembic-behind", "pg-drop-idx-users-email", "pg-drop-idx-users-created-at",
    "pg-drop-idx-audit-logs-user-id", "pg-drop-idx-audit-logs-timestamp", "pg-drop-idx-api-keys-user-id",
    "pg-drop-idx-api-keys-key-hash", "pg-drop-idx-users-active", "pg-drop-idx-api-keys-active",
    "pg-drop-idx-audit-logs-user-timestamp", "pg-drop-idx-users-email-active", "pg-index-invalid",
    "pg-stat-statements-dropped", "pg-connections-busy",
    # Redis and the cluster (redis-cli; the stopped node is systemctl's on the fleet)
    "redis-eviction-policy", "redis-bind-all", "redis-port-file", "redis-protected-mode-off", "redis-maxmemory-2gb",
    "redis-save-hourly", "redis-nopass", "redis-placeholder-password", "redis-memory-full", "redis-cluster-failover",
    "redis-cluster-replica-moved", "redis-cluster-node-stopped", "redis-cluster-node-forgotten",
    "redis-cluster-slot-unassigned",
    # running vs on disk (issue 19): the same mechanism on both flavours (the ufw pair: web1 is the fleet's
    # iptables host, which has its own pair below; the app's replica 3: recreated by the host engine)
    "nginx-not-reloaded", "nginx-not-persisted", "prometheus-not-reloaded", "prometheus-not-persisted",
    "pg-not-reloaded", "pg-not-persisted", "redis-not-reloaded", "redis-cluster-not-persisted",
    "redis-cluster-not-reloaded", "fail2ban-not-reloaded", "fail2ban-not-persisted",
    # NGINX, rate limits, headers, TLS, certbot on web1 (`service nginx reload` is systemctl's)
    "nginx-static-no-xfo", "tls-1.1", "nginx-config-invalid", "nginx-user-root", "nginx-worker-processes",
    "nginx-worker-connections", "nginx-no-epoll", "nginx-multi-accept-off", "nginx-sendfile-off",
    "nginx-keepalive-30", "nginx-types-hash", "nginx-gzip-off", "nginx-gzip-types", "nginx-log-format",
    "nginx-access-log-elsewhere", "nginx-no-least-conn", "nginx-upstream-max-fails", "nginx-redirect-302",
    "nginx-no-http2", "nginx-server-name", "nginx-docs-no-real-ip", "nginx-proxy-read-timeout",
    "nginx-health-access-log", "nginx-static-expires", "nginx-docs-not-proxied", "rate-zone-api",
    "rate-zone-login", "rate-api-burst", "rate-login-burst", "hdr-no-hsts", "hdr-no-nosniff", "hdr-no-xss",
    "hdr-no-referrer-policy", "tls-weak-cipher", "tls-prefer-server-ciphers", "tls-session-cache-off",
    "tls-cert-files-moved", "tls-cert-short-lived", "tls-cert-wrong-name", "tls-cert-self-signed",
    "tls-chain-incomplete", "tls-cert-ec-key", "certbot-renew-cron-removed", "certbot-nginx-plugin-removed",
    "certbot-removed", "nginx-static-slow", "nginx-docs-502",
    # the app behind NGINX; replica 3 of docker-compose (app1)
    "nginx-health-503", "nginx-api-health-503", "nginx-login-fixed-token", "app-replica-stopped",
    "app-restart-policy-always", "arch-app-instance-stopped",
    # monitoring on web1 (Prometheus reloads and daemons through their units)
    "prometheus-rule-for", "prometheus-rule-quantile", "prometheus-rule-job", "prometheus-rule-extra",
    "prometheus-rule-files", "prometheus-config-invalid", "prometheus-interval", "prometheus-redis-port",
    "prometheus-nginx-port", "prometheus-postgres-job", "prometheus-alertmanager-port", "alertmanager-stopped",
    "redis-exporter-stopped", "postgres-exporter-stopped", "grafana-dashboard-title", "grafana-panel-query",
    "arch-prometheus-stopped",
    # hardening, backups of the database, architecture, CI/CD (the state folder's copy), checklist
    "fail2ban-stopped", "pg-hba-mode", "pg-conf-mode", "fail2ban-default-bantime", "fail2ban-nginx-jail-stopped",
    "aide-removed", "aide-db-missing", "rkhunter-removed", "unattended-upgrades-removed", "security-update-pending",
    "backup-cron-removed", "backup-db-script-not-executable", "backup-db-wrong-database", "backup-db-retention-90",
    "backup-db-stale", "backup-db-none-today", "backup-db-truncated",
    "arch-replica-no-hot-standby", "arch-redis-node-standalone",
    "cicd-triggers-develop", "cicd-security-scan-removed", "cicd-test-job-weakened", "cicd-deploy-ungated",
    "cicd-deploy-latest-tag", "cicd-deploy-script-no-errexit", "cicd-deploy-script-no-tag-guard",
    "cicd-deploy-migrations-after-update", "cicd-deploy-health-check-ignored",
    "network-latency-1s", "disk-nearly-full", "failed-ssh-logins",
    # the opt-in proofs (drifts/opt_in.py): live rate limits on web1, the restore test on db1, the
    # alert round trip on web1 (the exporter's systemd unit there)
    "rate-login-zone-5r-per-second-live", "rate-api-zone-5r-per-second-live", "rate-api-burst-50-live",
    "rate-login-burst-20-live", "backup-db-newest-not-restorable", "alert-relabel-drops-db-alert",
    "alertmanager-silence-db-alert",
})

ON_APP1 = (("web1", "app1"),)
MOVED: dict[str, tuple[tuple[str, str], ...]] = {name: ON_APP1 for name in (
    "compose-off-guide", "start-script-off-guide", "env-debug-true", "env-log-level-debug", "app-env-not-reloaded",
    "env-placeholder-secret", "env-key-missing", "env-values-off-guide", "env-urls-off-guide",
    "env-file-world-readable", "app-dir-foreign-owner", "compose-replicas-2",
    "backup-app-script-not-executable", "backup-app-wrong-source", "backup-app-retention-30", "backup-app-stale",
    "backup-app-truncated", "backup-app-cron-4am", "logrotate-cron-removed", "logrotate-config-elsewhere",
    "maint-scripts-not-executable", "maint-cron-cadence-swapped", "maint-daily-steps-broken",
    "maint-weekly-steps-broken", "maint-monthly-steps-broken", "maint-old-rotated-log",
)}


def named() -> set[str]:
    return set(BOTH) | set(MOVED)


def flavour_fields(d: Drift) -> dict:
    """The flavour attributes of drift ``d`` (Drift.flavours, Drift.fleet_hosts)."""
    if d.name in MOVED:
        return {"flavours": ("reference", "fleet"), "fleet_hosts": MOVED[d.name]}
    if d.name in BOTH:
        return {"flavours": ("reference", "fleet")}
    return {}


# ---------------------------------------------------------------- the fleet's own: web1's iptables

RULES_V4 = "/etc/iptables/rules.v4"
SAVED = f"{BACKUPS}/rules.v4"
STRANGER = "192.0.2.1"  # TEST-NET-1: never a real peer


def _iptables(apply: str, heal: str, keep_saved: bool = True) -> tuple:
    """apply/heal pair of iptables commands on web1; the saved rules file is kept and restored."""
    def do(c) -> None:
        c.sh("web1", f"mkdir -p {BACKUPS} && cp -p {RULES_V4} {SAVED} && {apply}")

    def undo(c) -> None:
        c.sh("web1", f"{heal} && cp -p {SAVED} {RULES_V4} && rm -f {SAVED}")

    return do, undo


def _fleet(name: str, ids: tuple[str, ...], description: str, apply, heal) -> Drift:
    return Drift(name, ids, description, apply, heal, flavours=("fleet",))


DRIFTS: tuple[Drift, ...] = (
    _fleet("iptables-rule-not-saved", ("NET-IPTABLES-RULES-SAVED",),
           f"web1: a rule added to the running INPUT chain (-s {STRANGER} -j DROP) but not saved to {RULES_V4}",
           *_iptables(f"iptables -I INPUT 1 -s {STRANGER}/32 -j DROP",
                      f"while iptables -D INPUT -s {STRANGER}/32 -j DROP 2>/dev/null; do :; done")),
    _fleet("iptables-no-final-drop", ("NET-IPTABLES-INPUT-RULES", "NET-NO-OTHER-PUBLIC-PORTS"),
           f"web1: the final `-A INPUT -j DROP` deleted (and saved: {RULES_V4} agrees): every port web1 "
           "listens on is open",
           *_iptables(f"iptables -D INPUT -j DROP && iptables-save > {RULES_V4}",
                      "iptables -C INPUT -j DROP 2>/dev/null || iptables -A INPUT -j DROP")),
    _fleet("iptables-flushed", ("NET-IPTABLES-INPUT-RULES", "NET-IPTABLES-RULES-SAVED", "NET-NO-OTHER-PUBLIC-PORTS"),
           f"web1: iptables -F INPUT (every port open; {RULES_V4} still holds the guide's rules)",
           *_iptables("iptables -F INPUT", "pynomaly-setup-common >/dev/null")),  # the guide's rules again
    # nothing saved: the INPUT chain has no on-disk side to agree with (live truth, issue 19)
    _fleet("iptables-rules-file-missing", ("NET-IPTABLES-INPUT-RULES", "NET-IPTABLES-RULES-SAVED"),
           f"web1: {RULES_V4} moved away (netfilter-persistent would restore nothing at boot)",
           *_iptables(f"rm -f {RULES_V4}", "true")),
    # running vs on disk (issue 19)
    _fleet("iptables-not-persisted", ("NET-IPTABLES-INPUT-RULES", "NET-IPTABLES-RULES-SAVED"),
           f"web1: the INPUT rule accepting tcp 80 deleted live (iptables -D), not saved: {RULES_V4} still has it, "
           "the next boot restores it",
           *_iptables("iptables -D INPUT -p tcp --dport 80 -j ACCEPT",  # back in its place: after 22, before 443
                      "iptables -C INPUT -p tcp --dport 80 -j ACCEPT 2>/dev/null"
                      " || iptables -I INPUT 4 -p tcp --dport 80 -j ACCEPT")),
    _fleet("iptables-not-reloaded", ("NET-IPTABLES-INPUT-RULES", "NET-IPTABLES-RULES-SAVED"),
           f"web1: the rule accepting tcp 80 deleted from {RULES_V4}, not restored into the kernel (it still "
           "accepts 80; the next boot drops it)",
           *_iptables(f"sed -i '/^-A INPUT -p tcp -m tcp --dport 80 -j ACCEPT$/d' {RULES_V4}"
                      f" && ! cmp -s {RULES_V4} {SAVED}", "true")),
    _fleet("iptables-prometheus-public", ("NET-NO-OTHER-PUBLIC-PORTS", "CHK-FIREWALL-RULES-UP-TO-DATE"),
           "web1: -A INPUT -p tcp --dport 9090 -j ACCEPT before the final DROP (Prometheus open to the "
           f"world), saved to {RULES_V4}",
           *_iptables(f"iptables -I INPUT 6 -p tcp --dport 9090 -j ACCEPT && iptables-save > {RULES_V4}",
                      "while iptables -D INPUT -p tcp --dport 9090 -j ACCEPT 2>/dev/null; do :; done")),
)
