"""Drift registry: break one requirement on the running deployment, and heal it.

Each drift names the requirement ids (checks/requirements.yml) whose checks must
turn red while it is applied, and nothing else may. Applied drifts are recorded
in .state/deployment.json; `heal` reverts them in reverse order.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from .. import containers, docker_engine, flavour
from ..setup import APT_GENCACHES
from ..state import ROOT, State
from ..ui import ProvisionError, step

CATALOGUE = ROOT / "checks" / "requirements.yml"
BACKUPS = "/var/lib/pynomaly-drift"  # inside the containers: originals of edited files


# On the fleet (systemd hosts), commands of the reference's init-script world that differ: Prometheus
# writes no pid file under systemd, its unit reloads it. (`service X ...` needs no translation:
# Debian's `service` hands it to systemctl when systemd runs.)
FLEET_COMMANDS = {
    "kill -HUP $(cat /run/prometheus/prometheus.pid)": "systemctl reload prometheus",
}


class Ctx:
    """What a drift needs: the Docker client, the state folder and the flavour it runs on.

    Drifts name hosts as the reference does ("web1", "db1", ...); `container()` finds a host's
    container in the selected flavour, and a drift whose host is another one there says so
    (`Drift.fleet_hosts`: on the fleet the app's files are on app1, not web1)."""

    def __init__(self, client, st: State, flavour: str = "reference"):
        self.client, self.st, self.flavour = client, st, flavour
        self.deferred: list[tuple[str, str]] | None = None  # reloads held back while several drifts change
        self.hosts: dict[str, str] = {}  # the running drift's host names -> this flavour's

    @property
    def fleet(self) -> bool:
        return self.flavour == "fleet"

    def host(self, name: str) -> str:
        return self.hosts.get(name, name)

    def container(self, host: str):
        """The container of deployment host ``host`` in this flavour."""
        name = self.host(host)
        if self.fleet:
            from ..fleet.topology import host as fleet_host

            name = fleet_host(name).container
        return self.client.containers.get(name)

    def service(self, host: str, name: str, action: str) -> str:
        """start|stop|restart|reload a service the way the flavour runs it: its init script
        (reference, `service NAME ACTION`), or its systemd unit (fleet: `systemctl ACTION UNIT`)."""
        return self.sh(host, self.service_command(name, action))

    def service_command(self, name: str, action: str) -> str:
        if self.fleet:
            from ..fleet.topology import SERVICE_UNITS

            return f"systemctl {action} {SERVICE_UNITS.get(name, name)}"
        return f"service {name} {action} >/dev/null"

    def reload(self, host: str, cmd: str) -> None:
        """Run a reload now, or once after the last of several drifts when they are applied or
        healed together (each Prometheus reload waits ~30 s for scrapes and rule evaluations)."""
        host = self.host(host)
        if self.deferred is None:
            self.sh(host, cmd)
        elif (host, cmd) not in self.deferred:
            self.deferred.append((host, cmd))

    @contextlib.contextmanager
    def together(self):
        """Hold reloads back for the block, then run each distinct one once, in order."""
        self.deferred = []
        try:
            yield
        finally:
            pending, self.deferred = self.deferred, None
            self.hosts = {}  # the pending reloads name their hosts already mapped
            failed = []
            for host, cmd in pending:
                try:
                    self.sh(host, cmd)
                except ProvisionError as exc:
                    failed.append(str(exc))
            if failed:
                raise ProvisionError("reload after the drifts failed:\n" + "\n".join(failed))

    def sh(self, host: str, cmd: str, env: dict | None = None) -> str:
        if self.fleet:
            for old, new in FLEET_COMMANDS.items():
                cmd = cmd.replace(old, new)
        return containers.run(self.container(host), cmd, env=env)[1]

    def redis(self, host: str, port: int, args: str) -> str:
        return self.sh(host, f"redis-cli --no-auth-warning -p {port} {args}",
                       env={"REDISCLI_AUTH": self.st.secret("redis_password")})

    def psql(self, host: str, *sql: str) -> str:
        cmds = " ".join(f'-c "{s}"' for s in sql)
        return self.sh(host, f"runuser -u postgres -- psql -qtAX {cmds}")


@dataclass(frozen=True)
class Drift:
    name: str
    requirements: tuple[str, ...]
    description: str
    apply: Callable[[Ctx], None]
    heal: Callable[[Ctx], None]
    opt_in: str = ""  # only checks under this marker (e.g. "load") see it: the matrix skips it
    # For the drift matrix, which applies drifts together when nothing they touch is shared
    # (filled in from SHARED and ALONE below):
    touches: tuple[str, ...] = ()  # shared things it changes or restarts
    alone: bool = False  # it disturbs what others rely on: never applied together with another
    hardened: bool = False  # proven on a deployment hardened beyond the guide (provision harden): ADV-*
    disturbs: tuple[str, ...] = ()  # requirements of other checks that read what it breaks
    # The deployments it runs on (filled in from drifts/fleet.py; reference only by default), and
    # on the fleet, its hosts that are other hosts there (("web1", "app1"): the app moved).
    flavours: tuple[str, ...] = ("reference",)
    fleet_hosts: tuple[tuple[str, str], ...] = ()


# Drifts that change or restart the same thing cannot be applied together: one's heal would undo
# or trip over the other's (a recreated container loses the other's edit and its backup).
SHARED = {
    "app-3": ("app-replica-unhealthy", "app-replica-root-staging", "app-replica-gunicorn-flags",
              "app-image-expose-9000", "app-restart-policy-always", "app-env-not-persisted"),
    "app-2": ("perf-db-pool-shrunk", "perf-redis-pool-no-keepalive", "perf-cache-db0-60s",
              "perf-rate-limit-in-memory", "perf-logging-debug", "perf-jwt-hs512-1day",
              "perf-secret-key-placeholder"),
    "redis-cluster": ("redis-cluster-failover", "redis-cluster-replica-moved", "redis-cluster-node-forgotten",
                      "redis-cluster-slot-unassigned"),
    "pg-replication": ("pg-replica-detached", "pg-replay-paused", "arch-replica-no-hot-standby"),
    # the served certificate: only the last one written would be seen
    "certificate": ("tls-cert-short-lived", "tls-cert-wrong-name", "tls-cert-self-signed", "tls-chain-incomplete",
                    "tls-cert-files-moved", "tls-cert-ec-key"),
    # the newest backup: a truncated copy written today is also a backup that is recent and from today
    "db-backups": ("backup-db-stale", "backup-db-none-today", "backup-db-truncated"),
    "app-backups": ("backup-app-stale", "backup-app-truncated"),
    # NGINX's proxy_pass lines: once every location bypasses the upstream, /docs' own edit finds nothing
    "nginx-proxy-pass": ("arch-nginx-bypasses-upstream", "nginx-docs-not-proxied", "nginx-docs-502"),
    # the deploy job's image lines: once they name pynomaly:latest, the pull's own edit finds nothing
    "deploy-job-image": ("cicd-deploy-latest-tag", "cicd-deploy-no-pull"),
    # the fleet's web1: every iptables drift keeps rules.v4 in one backup file, and restores it
    "fleet-iptables": ("iptables-rule-not-saved", "iptables-no-final-drop", "iptables-not-reloaded",
                       "iptables-prometheus-public", "iptables-flushed", "iptables-rules-file-missing",
                       "iptables-not-persisted"),
}
# Drifts that take away something every area or drift relies on: a daemon or an app instance
# down (Prometheus reloads wait for their targets), the app's database login, a configuration
# that cannot be reloaded, a full cache, an open firewall, a Redis that refuses the password.
ALONE = ("app-replica-stopped", "arch-app-instance-stopped", "pg-password-placeholder", "pg-app-role-nologin",
         "postgres-exporter-stopped", "redis-exporter-stopped", "alertmanager-stopped", "arch-prometheus-stopped",
         "nginx-config-invalid", "prometheus-config-invalid", "redis-cluster-node-stopped",
         "arch-redis-node-standalone", "redis-memory-full", "ufw-disabled", "app-errors", "app-slow",
         "redis-nopass",  # every other drift's redis-cli AUTH fails while it is applied
         "rate-login-burst",  # its burst spends the runner's rate-limit budget: public checks could not audit
         # the runner cannot verify the server's certificate: every public HTTPS check could not audit
         "tls-chain-incomplete", "tls-cert-self-signed", "tls-cert-wrong-name",
         "arch-replica-no-hot-standby",  # db2 refuses every connection: its PostgreSQL facts could not audit
         # running vs on disk: another drift's reload would load the file (not-reloaded) or revert the
         # live change (not-persisted) of these
         "nginx-not-persisted", "prometheus-not-persisted", "prometheus-not-reloaded", "pg-not-persisted",
         "ufw-not-persisted", "ufw-not-reloaded",
         # another drift's reload would move NGINX's pid file, and Debian's init script reads its path
         # from nginx.conf: the next reload or heal would look for the master in the wrong file
         "nginx-pid-elsewhere")
# Drifts that break what a check of another requirement reads, without breaking that requirement
# (the check cannot judge it and says so): in a batch, those checks are this drift's to judge.
DISTURBS = {
    "nginx-api-health-503": ("NGINX-GZIP",),  # compression is judged on /api/v1/health's JSON
}


def edit_file(host: str, path: str, sed: str, reload: str, name: str) -> tuple[Callable, Callable]:
    """apply/heal pair: keep the original, edit it with ``sed``, run ``reload``; restore it."""
    backup = f"{BACKUPS}/{name}.{hashlib.sha256(f'{path}|{sed}'.encode()).hexdigest()[:8]}"  # one per edit

    def apply(ctx: Ctx) -> None:
        ctx.sh(host, f"mkdir -p {BACKUPS} && cp -p {path} {backup} && sed -i {sed} {path}"
                     f" && ! cmp -s {path} {backup}")
        ctx.reload(host, reload)

    def heal(ctx: Ctx) -> None:
        ctx.sh(host, f"cp -p {backup} {path} && rm -f {backup}")
        ctx.reload(host, reload)

    return apply, heal


def crontab_edit(host: str, sed: str) -> tuple[Callable, Callable]:
    """apply/heal pair: root's crontab through one sed expression (which must change it); heal
    installs provision's own."""
    edit = f'old=$(crontab -l) && new=$(printf "%s\\n" "$old" | sed {sed}) && [ "$new" != "$old" ]' \
           ' && printf "%s\\n" "$new" | crontab -'
    return (lambda ctx: ctx.sh(host, edit),
            lambda ctx: ctx.sh(host, "crontab /etc/pynomaly/crontab"))


DPKG_STATUS = "/var/lib/dpkg/status"


def pretend_removed(host: str, package: str, path: str) -> tuple[Callable, Callable]:
    """apply/heal pair: the package "removed" the way dpkg sees it (status deinstall, its binary
    or module directory `path` gone), restorable exactly."""
    backup = f"{BACKUPS}/removed-{package}"
    sed = f"'/^Package: {package}$/,/^Status:/s/^Status: install ok installed$/Status: deinstall ok config-files/'"

    def apply(ctx: Ctx) -> None:
        ctx.sh(host, f"mkdir -p {backup} && cp -p {DPKG_STATUS} {backup}/status && mv {path} {backup}/bin"
                     f" && sed -i {sed} {DPKG_STATUS} && ! cmp -s {DPKG_STATUS} {backup}/status")

    def heal(ctx: Ctx) -> None:
        # the package cache, rebuilt from the drifted status by a sudo audit, is fresh again
        ctx.sh(host, f"cp -p {backup}/status {DPKG_STATUS} && mv {backup}/bin {path} && rm -rf {backup}"
                     f" && {APT_GENCACHES}")

    return apply, heal


NGINX_RELOAD = "nginx -t -q && service nginx reload >/dev/null"
PROM_RELOAD = "kill -HUP $(cat /run/prometheus/prometheus.pid)"
ENV_FILE = "/opt/pynomaly/.env.production"


def _registry() -> tuple[Drift, ...]:
    """Every area module's DRIFTS, in a stable order (one module per guide area)."""
    from . import app, backups, edge, hardening, load, monitoring, network, postgres, redis

    modules = (network, postgres, redis, edge, app, monitoring, hardening, backups, load)
    from . import architecture, cicd, maintenance, performance, scaling  # issue 11: closing areas
    modules += (architecture, cicd, maintenance, performance, scaling)
    from . import checklist  # issue 4: Monitoring Checklist, host parts
    modules += (checklist,)
    from . import opt_in  # issue 17: what only the opt-in proofs see (live rate limits, restore, alert round trip)
    modules += (opt_in,)
    from . import advisories  # issue 21: beyond the guide, proven on a hardened deployment
    modules += (advisories,)
    from . import fleet  # issue 18: which drifts run on the fleet flavour, and its own
    modules += (fleet,)
    shared = {name: tuple(k for k, names in SHARED.items() if name in names) for v in SHARED.values() for name in v}
    drifts = tuple(dataclasses.replace(d, touches=shared.get(d.name, ()), alone=d.name in ALONE,
                                       disturbs=DISTURBS.get(d.name, ()), hardened=m is advisories,
                                       **fleet.flavour_fields(d))
                   for m in modules for d in m.DRIFTS)
    unknown = set(ALONE).union(*SHARED.values(), DISTURBS) - {d.name for d in drifts}
    if unknown:
        raise ProvisionError(f"SHARED/ALONE/DISTURBS name unknown drifts: {', '.join(sorted(unknown))}")
    names = [d.name for d in drifts]
    dupes = {n for n in names if names.count(n) > 1}
    if dupes:
        raise ProvisionError(f"duplicate drift names: {', '.join(sorted(dupes))}")
    unknown = fleet.named() - set(names)
    if unknown:
        raise ProvisionError(f"drifts/fleet.py names unknown drifts: {', '.join(sorted(unknown))}")
    return tuple(d for d in drifts if flavour.current() in d.flavours)  # the selected flavour's


def by_name(name: str) -> Drift:
    for drift in _registry():
        if drift.name == name:
            return drift
    known = ", ".join(d.name for d in _registry())
    if flavour.current() != "reference":
        raise ProvisionError(f"unknown drift {name!r} on the {flavour.current()} flavour; known: {known}")
    raise ProvisionError(f"unknown drift {name!r}; known: {known}")


def catalogue_ids(path: Path = CATALOGUE) -> set[str] | None:
    """Requirement ids of the catalogue, or None when it is not there."""
    if not path.exists():
        return None
    ids = {r["id"] for r in yaml.safe_load(path.read_text())["requirements"]}
    advisories = path.with_name("advisories.yml")  # ADV-*: beyond the guide (issue 21)
    if advisories.exists():
        ids |= {r["id"] for r in yaml.safe_load(advisories.read_text()).get("advisories") or []}
    return ids


def unknown_ids() -> dict[str, list[str]]:
    """Drift name -> ids it names that the catalogue lacks (empty when all are known)."""
    ids = catalogue_ids()
    if ids is None:
        return {}
    bad = {d.name: [r for r in d.requirements if r not in ids] for d in _registry()}
    return {k: v for k, v in bad.items() if v}


def print_list() -> None:
    width = max(len(d.name) for d in _registry())
    for d in _registry():
        description = d.description
        if flavour.current() == "fleet":  # say where it happens there
            for ref_host, fleet_host in d.fleet_hosts:
                description = description.replace(f"{ref_host}:", f"{fleet_host}:")
        print(f"{d.name:{width}}  {','.join(d.requirements)}  {description}")


def _state() -> State:
    """The state folder of the selected flavour (.state/, or .state-fleet/ for fleet)."""
    if flavour.current() == "fleet":
        from ..fleet.state import FleetState

        return FleetState()
    return State()


def _ctx() -> tuple[Ctx, State, dict]:
    st = _state()
    record = st.load()
    if not record:
        up = "python -m provision up" if flavour.current() == "reference" else \
            f"python -m provision --flavour {flavour.current()} up"
        raise ProvisionError(f"no deployment: run `{up}` first")
    client = docker_engine.client_or_none()
    if client is None:
        raise ProvisionError("no Docker engine answers")
    return Ctx(client, st, flavour.current()), st, record


@contextlib.contextmanager
def lock():
    """Exclusive lock on the deployment for drift experiments (one drift at a time)."""
    path = _state().root / "drift.lock"
    path.parent.mkdir(exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@contextlib.contextmanager
def applied(name: str):
    """Apply one drift for the duration of a block (under the lock), then heal it."""
    with lock():
        apply(name)
        try:
            yield by_name(name)
        finally:
            heal()


def apply(name: str) -> None:
    apply_all([name])


def apply_all(names) -> None:
    """Apply the drifts one after the other; reloads that several of them need run once, last."""
    ctx, st, record = _ctx()
    with ctx.together():
        for name in names:
            _apply(ctx, st, record, name)


def _apply(ctx: Ctx, st: State, record: dict, name: str) -> None:
    drift = by_name(name)
    applied = record.setdefault("drifts", [])
    if name in applied:
        step(f"drift {name} is already applied")
        return
    step(f"applying drift {name}: {drift.description}")
    ctx.hosts = dict(drift.fleet_hosts) if ctx.fleet else {}
    try:
        drift.apply(ctx)
    except Exception:  # half applied is still applied: undo what can be undone, then say so
        with contextlib.suppress(Exception):
            drift.heal(ctx)
        raise
    finally:
        ctx.hosts = {}
    applied.append(name)
    st.save(record)
    undo = "python -m provision heal" if not ctx.fleet else "python -m provision --flavour fleet heal"
    step(f"breaks: {', '.join(drift.requirements)}  (undo: {undo})")


def heal() -> None:
    ctx, st, record = _ctx()
    applied = record.get("drifts", [])
    if not applied:
        step("no drift applied; nothing to heal")
        return
    failed = []
    try:
        with ctx.together():
            for name in reversed(list(applied)):
                step(f"healing {name}")
                drift = by_name(name)
                ctx.hosts = dict(drift.fleet_hosts) if ctx.fleet else {}
                try:
                    drift.heal(ctx)
                except ProvisionError as exc:  # heal the others anyway; the record keeps this one
                    failed.append(f"{name}: {exc}")
                    continue
                finally:
                    ctx.hosts = {}
                applied.remove(name)
                st.save(record)
    except ProvisionError as exc:  # a reload after the heals
        failed.append(str(exc))
    if failed:
        raise ProvisionError("could not heal:\n" + "\n".join(failed) +
                             "\n(`python -m provision down && python -m provision up` starts afresh)")
    step("healed")


def __getattr__(name: str):
    if name == "REGISTRY":  # assembled lazily: the area modules import this module
        return _registry()
    raise AttributeError(name)
