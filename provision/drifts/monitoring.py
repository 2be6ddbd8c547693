"""Monitoring drifts (Prometheus, rules, Alertmanager, exporters, Grafana dashboard): each breaks
exactly the requirements it names. Drifts that change what Prometheus sees wait until it sees it
(a reload, a target down, an alert firing), and their heals wait until it is healthy again."""

from __future__ import annotations

from pathlib import Path

from ..ui import step
from . import BACKUPS, PROM_RELOAD, Drift, edit_file
from .edge import live_only

HOST = "web1"
CONFIG = "/etc/prometheus/prometheus.yml"
RULES = "/etc/prometheus/pynomaly_rules.yml"
DASHBOARD = "/etc/grafana/dashboards/pynomaly.json"
API = "http://127.0.0.1:9090/api/v1"


def _wait(condition: str, seconds: int = 45, what: str = "") -> str:
    """Shell: poll `condition` once a second until it holds (fail after `seconds`, saying what for)."""
    fail = f"{{ echo 'gave up after {seconds}s waiting for {what or 'the condition'}' >&2; exit 1; }}"
    return f"(i=0; until {condition}; do i=$((i+1)); [ $i -ge {seconds} ] && {fail}; sleep 1; done)"


_TARGETS = f"curl -sf '{API}/targets?state=active'"
TARGET_DOWN = _wait(f"{_TARGETS} | grep -q '\"health\":\"down\"'", what="a target down")
ALL_TARGETS_UP = _wait(f"! {_TARGETS} | grep -q -E '\"health\":\"(down|unknown)\"'", what="every target up")
ALL_TARGETS_SCRAPED = _wait(f"! {_TARGETS} | grep -q '\"health\":\"unknown\"'", what="every target scraped")
# after a reload, the notifier has no Alertmanager until discovery ran again (the list is empty)
ALERTMANAGER_ACTIVE = _wait(f"curl -sf {API}/alertmanagers | grep -q '\"activeAlertmanagers\":\\[{{'",
                            what="an active Alertmanager")
_CONFIG_TIME = f"curl -sf {API}/status/runtimeinfo | grep -o '\"lastConfigTime\":\"[^\"]*\"'"
RULES_EVALUATED = _wait(f"! curl -sf {API}/rules | grep -q '\"health\":\"unknown\"'", what="every rule evaluated")
# reloaded (the config time changed), every target scraped and every rule evaluated again: a
# reload resets targets and rules to health "unknown" until their next scrape / evaluation.
# Scraped, not up: a target another drift took down stays down, and that drift's heal waits for it.
_CONFIG_CHANGED = _wait(f'[ "$({_CONFIG_TIME})" != "$t0" ]', 30, "a new configuration load")
# Service discovery hands new targets to the scrape manager at most every 5 s: until then the
# targets API still lists the old, scraped ones (a new target turned up "unknown" right after).
_DISCOVERED = "sleep 6"
RELOAD = (f"t0=$({_CONFIG_TIME}); {PROM_RELOAD} && {_CONFIG_CHANGED} && {_DISCOVERED} && {ALL_TARGETS_SCRAPED}"
          f" && {RULES_EVALUATED} && {ALERTMANAGER_ACTIVE}")
RELOAD_TARGET_DOWN = f"{PROM_RELOAD} && {TARGET_DOWN}"
ALERT_FIRING = _wait(f"curl -sf {API}/alerts | grep -q '\"state\":\"firing\"'", 150, "an alert firing")
NO_ALERT = _wait(f"! curl -sf {API}/alerts | grep -q '\"state\":\"'", 90, "no alert pending or firing")


def _config(name: str, sed: str, reload: str = RELOAD) -> tuple:
    """apply/heal of an edit of prometheus.yml; the heal reloads and waits for every target up."""
    apply, _ = edit_file(HOST, CONFIG, sed, reload, name)
    _, heal = edit_file(HOST, CONFIG, sed, RELOAD, name)
    return apply, heal


def _service(service: str, ready: str, healthy: str) -> tuple:
    """apply/heal pair: stop a daemon on web1 and wait for `ready`; start it, wait for `healthy`.

    The stop signals the pid of the init script's pidfile: in these containers root cannot read
    /proc/PID/exe of another user's process, so `service X stop` (start-stop-daemon --exec) does
    not find it. The start is the init script's, once the process is gone."""
    pidfile = f"/run/prometheus/{service}.pid"

    def apply(ctx) -> None:
        if ctx.fleet:  # a systemd unit: systemctl stops it (and its Restart=on-failure stays out)
            ctx.sh(HOST, f"systemctl stop {service} && {{ {ready} || {{ sleep 2; systemctl start {service};"
                         " exit 1; }; }")
            return
        # if what it waits for never comes, start the daemon again before failing
        ctx.sh(HOST, f"pid=$(cat {pidfile}) && kill $pid && {_wait('! kill -0 $pid 2>/dev/null', 30)}"
                     f" && {{ {ready} || {{ sleep 2; service {service} start >/dev/null; exit 1; }}; }}")

    def heal(ctx) -> None:
        ctx.sh(HOST, f"{ctx.service_command(service, 'start')} && {healthy}")

    return apply, heal


def _rules_moved() -> tuple:
    """prometheus.yml loads the same rules from another file name (the guide's file stays)."""
    backup, other = f"{BACKUPS}/prometheus-rule-files", "/etc/prometheus/pynomaly-alerts.yml"

    def apply(ctx) -> None:
        ctx.sh(HOST, f"mkdir -p {BACKUPS} && cp -p {CONFIG} {backup} && cp -p {RULES} {other}"
                     f" && sed -i 's/\"pynomaly_rules.yml\"/\"pynomaly-alerts.yml\"/' {CONFIG}"
                     f" && ! cmp -s {CONFIG} {backup} && {RELOAD}")

    def heal(ctx) -> None:
        ctx.sh(HOST, f"cp -p {backup} {CONFIG} && rm -f {backup} {other} && {RELOAD}")

    return apply, heal


def _app_traffic(mode: str) -> tuple:
    """apply/heal pair running provision/drifts/app_traffic.py on web1 (see its docstring):
    real requests that break the 5-minute window (errors or slow), then dilute it again."""
    script = (Path(__file__).parent / "app_traffic.py").read_text()

    def run(ctx, arg: str) -> None:
        out = ctx.sh(HOST, f"python3 - {arg} <<'PYEOF'\n{script}\nPYEOF",
                     env={"REDISCLI_AUTH": ctx.st.secret("redis_password")})
        step(f"{HOST}: {out.strip().splitlines()[-1] if out.strip() else 'no output'}")

    return (lambda ctx: run(ctx, mode)), (lambda ctx: run(ctx, "heal"))


DRIFTS: tuple[Drift, ...] = (
    # The checks read the app's last 5 minutes: this one changes that window with real requests
    # (and heals it by diluting it); ALONE, as any other traffic would dilute it.
    Drift("app-errors", ("CHK-ERROR-RATE",),
          "web1: ~2% of the last 5 minutes' requests answered 503 (Redis denies the app's PING for a moment)",
          *_app_traffic("errors")),
    Drift("app-slow", ("CHK-RESPONSE-TIME-P95",),
          "web1: ~6.5% of the last 5 minutes' requests take ~1.5 s (Redis paused while they wait on it)",
          *_app_traffic("slow")),
    Drift("prometheus-rule-for", ("MON-ALERT-HIGH-ERROR-RATE",),
          "web1: HighErrorRate 'for: 5m' changed to 'for: 1m', Prometheus reloaded",
          *edit_file(HOST, RULES, r"'/alert: HighErrorRate/,/for:/s/for: 5m/for: 1m/'", RELOAD,
                     "prometheus-rule-for")),
    # running vs on disk (issue 19)
    Drift("prometheus-not-reloaded", ("MON-PROM-JOB-NGINX",),
          "web1: scrape job nginx targets localhost:9114 in prometheus.yml, not reloaded (Prometheus still "
          "scrapes localhost:9113)",
          *edit_file(HOST, CONFIG, "'s/localhost:9113/localhost:9114/'", "true", "prometheus-not-reloaded")),
    Drift("prometheus-not-persisted", ("MON-ALERT-HIGH-ERROR-RATE",),
          "web1: HighErrorRate 'for: 5m' changed to 'for: 1m' and Prometheus reloaded, then the rules file put "
          "back without a reload (the loaded rule is what no file says; the next reload reverts it)",
          *live_only(HOST, RULES, r"'/alert: HighErrorRate/,/for:/s/for: 5m/for: 1m/'", RELOAD,
                     "prometheus-not-persisted", settle="true")),
    Drift("prometheus-rule-quantile", ("MON-ALERT-HIGH-RESPONSE-TIME",),
          "web1: HighResponseTime uses the 99th percentile instead of the 95th, Prometheus reloaded",
          *edit_file(HOST, RULES, r"'/alert: HighResponseTime/,/expr:/s/quantile(0.95,/quantile(0.99,/'", RELOAD,
                     "prometheus-rule-quantile")),
    Drift("prometheus-rule-job", ("MON-ALERT-DATABASE-CONNECTION-FAILURE",),
          "web1: DatabaseConnectionFailure watches up{job=\"postgresql\"} (no such job), Prometheus reloaded",
          *edit_file(HOST, RULES, r"""'s/up{job="postgres"} == 0/up{job="postgresql"} == 0/'""", RELOAD,
                     "prometheus-rule-job")),
    Drift("prometheus-rule-extra", ("MON-RULES-VALID",),
          "web1: a fourth rule (a recording rule) added to group pynomaly, Prometheus reloaded",
          *edit_file(HOST, RULES, r"'$a\      - record: pynomaly:drift\n        expr: vector(1)'", RELOAD,
                     "prometheus-rule-extra")),
    Drift("prometheus-rule-files", ("MON-PROM-RULE-FILES", "MON-RULES-VALID"),
          "web1: prometheus.yml loads the rules from pynomaly-alerts.yml (a copy), Prometheus reloaded",
          *_rules_moved()),
    Drift("prometheus-config-invalid", ("MON-PROM-CONFIG-VALID",),
          "web1: prometheus.yml global scrape_timeout 30s (> scrape_interval: promtool and the reload fail)",
          *_config("prometheus-config-invalid", r"'s/^  evaluation_interval: 15s$/&\n  scrape_timeout: 30s/'",
                   f"{PROM_RELOAD} && sleep 3")),
    Drift("prometheus-interval", ("MON-PROM-GLOBAL-INTERVALS",),
          "web1: prometheus.yml global evaluation_interval 15s changed to 30s, Prometheus reloaded",
          *_config("prometheus-interval", r"'s/^  evaluation_interval: 15s$/  evaluation_interval: 30s/'")),
    Drift("prometheus-target-removed", ("MON-PROM-JOB-PYNOMALY",),
          "web1: target localhost:8002 removed from scrape job pynomaly, Prometheus reloaded",
          *_config("prometheus-target-removed", r"""'s/, '"'"'localhost:8002'"'"'\]/]/'""")),
    Drift("prometheus-redis-port", ("MON-PROM-JOB-REDIS", "MON-TARGETS-UP"),
          "web1: scrape job redis targets localhost:9122 (nothing listens), Prometheus reloaded",
          *_config("prometheus-redis-port", "'s/localhost:9121/localhost:9122/'", RELOAD_TARGET_DOWN)),
    Drift("prometheus-nginx-port", ("MON-PROM-JOB-NGINX", "MON-TARGETS-UP"),
          "web1: scrape job nginx targets localhost:9114 (nothing listens), Prometheus reloaded",
          *_config("prometheus-nginx-port", "'s/localhost:9113/localhost:9114/'", RELOAD_TARGET_DOWN)),
    Drift("prometheus-postgres-job", ("MON-PROM-JOB-POSTGRES", "MON-TARGETS-UP"),
          "web1: scrape job postgres renamed postgresql, Prometheus reloaded",
          *_config("prometheus-postgres-job", r"""'s/job_name: '"'"'postgres'"'"'/job_name: '"'"'postgresql'"'"'/'""")),
    Drift("prometheus-alertmanager-port", ("MON-PROM-ALERTMANAGER", "MON-ALERTMANAGER-DISCOVERED"),
          "web1: prometheus.yml sends alerts to alertmanager:9094, Prometheus reloaded",
          *_config("prometheus-alertmanager-port", "'s/alertmanager:9093/alertmanager:9094/'")),
    Drift("alertmanager-stopped", ("CHK-MONITORING-ALERTS-FUNCTIONAL",),
          "web1: Alertmanager stopped",
          *_service("prometheus-alertmanager", "true",
                    _wait("curl -sf -o /dev/null http://127.0.0.1:9093/-/ready"))),
    Drift("redis-exporter-stopped", ("MON-TARGETS-UP",),
          "web1: the Redis exporter stopped (Prometheus sees its target down)",
          *_service("prometheus-redis-exporter", TARGET_DOWN, ALL_TARGETS_UP)),
    Drift("postgres-exporter-stopped", ("MON-TARGETS-UP", "MON-NO-ALERTS-FIRING"),
          "web1: the PostgreSQL exporter stopped until DatabaseConnectionFailure fires (~90 s)",
          *_service("prometheus-postgres-exporter", ALERT_FIRING, f"{ALL_TARGETS_UP} && {NO_ALERT}")),
    Drift("grafana-dashboard-title", ("MON-GRAFANA-DASHBOARD",),
          "web1: the dashboard is titled 'Pynomaly Dashboard'",
          *edit_file(HOST, DASHBOARD, "'s/\"Pynomaly Production Dashboard\"/\"Pynomaly Dashboard\"/'", "true",
                     "grafana-dashboard-title")),
    Drift("grafana-panel-query", ("MON-GRAFANA-PANELS",),
          "web1: the Error Rate panel's query uses [1m] instead of [5m]",
          *edit_file(HOST, DASHBOARD, r"""'/5\.\./s/\[5m\]/[1m]/'""", "true", "grafana-panel-query")),
)
