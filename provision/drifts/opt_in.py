"""Drifts that only the opt-in proofs see (`opt_in`): the live rate limits (`--opt-in=burst`), the
restore test and the alert round trip (`--opt-in=writes`). Each breaks what the live check
measures; the configuration checks of the same requirement may turn red too (the rate-limit
drifts change nginx.conf), the others stay green (the restore and the alert drifts leave every
file and setting that a default check reads as the guide has it). The drift matrix audits them
with `--opt-in=<marker>`, one by one (their checks spend the runner's rate-limit budget or stop an
exporter).
"""

from __future__ import annotations

from . import BACKUPS, NGINX_RELOAD, Ctx, Drift
from .edge import CONF, nginx
from .monitoring import CONFIG as PROMETHEUS_CONFIG
from .monitoring import HOST as MONITORING_HOST
from .monitoring import _config

DB_DIR = "/opt/backups/postgres"
ALERT = "DatabaseConnectionFailure"
AMTOOL = "amtool --alertmanager.url=http://127.0.0.1:9093"


def _with_fresh_login_zone(drift: Drift) -> Drift:
    """The drift, whose heal also gives the login zone fresh state: NGINX keeps a zone's state
    across reloads, so after a burst of 20 the runner's address would owe 17 slots (3.4 minutes at
    5 r/m) once burst=3 is back. A reload with the zone at another size allocates a new zone, the
    reload back to 10m another one (the master handles one reload at a time: wait between)."""
    resize = r"'s/zone=login:10m rate=/zone=login:11m rate=/'"
    keep = f"{BACKUPS}/nginx-login-zone-resize"

    def heal(ctx: Ctx) -> None:
        drift.heal(ctx)
        ctx.sh("web1", f"cp -p {CONF} {keep} && sed -i {resize} {CONF} && {NGINX_RELOAD} && sleep 2"
                       f" && cp -p {keep} {CONF} && rm -f {keep} && {NGINX_RELOAD} && sleep 2")

    return Drift(drift.name, drift.requirements, drift.description + "; heal: a fresh login zone", drift.apply,
                 heal, drift.opt_in)


def _live(drift: Drift) -> Drift:
    return Drift(drift.name, drift.requirements, drift.description + " (seen live: --opt-in=burst)", drift.apply,
                 drift.heal, "burst")


def _newest_backup_not_restorable() -> tuple:
    """A newer database backup that gzip accepts and that looks complete (the dump's header, its
    completion marker, every table), as a newer pg_dump (17) writes it: its `SET
    transaction_timeout = 0;` is unknown to PostgreSQL 15, so `psql -v ON_ERROR_STOP=1` stops
    there and nothing is restored. Heal deletes it."""
    bad = f"{DB_DIR}/pynomaly_backup_$(date +%Y%m%d)_235959.sql.gz"

    def apply(ctx: Ctx) -> None:
        ctx.sh("db1", f"f=$(ls -t {DB_DIR}/*.sql.gz | head -1) && gunzip -c \"$f\""
                      " | sed '/^SET statement_timeout = 0;$/a SET transaction_timeout = 0;'"
                      f" | gzip > {bad} && gunzip -c {bad} | grep -q '^SET transaction_timeout = 0;$'")

    def heal(ctx: Ctx) -> None:
        ctx.sh("db1", f"rm -f {bad}")

    return apply, heal


def _silenced(matcher: str) -> tuple:
    """A standing silence in Alertmanager (2 days) for `matcher`; heal expires it. Nothing in a file:
    the alert reaches Alertmanager and is suppressed there, so no notification would go out."""
    def apply(ctx: Ctx) -> None:
        ctx.sh(MONITORING_HOST, f"{AMTOOL} silence add {matcher} --duration=48h --author=pynomaly-drift"
                                " --comment='drift: a forgotten maintenance silence' >/dev/null")

    def heal(ctx: Ctx) -> None:
        ctx.sh(MONITORING_HOST, f"ids=$({AMTOOL} silence query -q {matcher}); [ -z \"$ids\" ] || "
                                f"{AMTOOL} silence expire $ids")

    return apply, heal


# prometheus.yml: an alert relabeling rule, under `alerting:`, that drops the round trip's alert
# before it is sent (the rule loads and fires, Alertmanager is discovered, the file stays valid).
DROP_ALERT = (r"'/^alerting:$/a\  alert_relabel_configs:\n    - source_labels: [alertname]\n"
              rf"      regex: {ALERT}\n      action: drop'")

DRIFTS: tuple[Drift, ...] = (
    _live(nginx("rate-login-zone-5r-per-second-live", ("RATE-ZONE-LOGIN",), "zone login rate=5r/s",
                r"'s/zone=login:10m rate=5r\/m/zone=login:10m rate=5r\/s/'")),
    _live(nginx("rate-api-zone-5r-per-second-live", ("RATE-ZONE-API",), "zone api rate=5r/s",
                r"'s/zone=api:10m rate=10r\/s/zone=api:10m rate=5r\/s/'")),
    _live(nginx("rate-api-burst-50-live", ("RATE-API-LIMIT",), "/api/ limit_req burst=50",
                "'s/zone=api burst=20 nodelay/zone=api burst=50 nodelay/'")),
    _with_fresh_login_zone(_live(nginx("rate-login-burst-20-live", ("RATE-LOGIN-LIMIT",), "login limit_req burst=20",
                                       "'s/zone=login burst=3 nodelay/zone=login burst=20 nodelay/'"))),
    Drift("backup-db-newest-not-restorable", ("CHK-BACKUP-INTEGRITY-VERIFIED",),
          "db1: the newest database backup is a complete-looking dump that gzip accepts but PostgreSQL 15 "
          "cannot restore (a newer pg_dump's `SET transaction_timeout`) (seen by the restore test: --opt-in=writes)",
          *_newest_backup_not_restorable(), opt_in="writes"),
    Drift("alert-relabel-drops-db-alert", ("CHK-MONITORING-ALERTS-FUNCTIONAL",),
          f"web1: {PROMETHEUS_CONFIG} drops {ALERT} in alert_relabel_configs (the rule fires, nothing reaches "
          "Alertmanager), Prometheus reloaded (seen by the alert round trip: --opt-in=writes)",
          *_config("alert-relabel-drops-db-alert", DROP_ALERT), opt_in="writes"),
    Drift("alertmanager-silence-db-alert", ("CHK-MONITORING-ALERTS-FUNCTIONAL",),
          f"web1: a 48 h Alertmanager silence for alertname={ALERT} (it arrives, suppressed: it would never "
          "notify) (seen by the alert round trip: --opt-in=writes)",
          *_silenced(f"alertname={ALERT}"), opt_in="writes"),
)
