"""Ansible-compatible YAML inventories: groups are roles, `audit_*` vars configure the suite.

`load_inventory(path)` validates the file with pydantic and merges variables the way Ansible
does (all < parent group < child group < host); any error names the file and the field.
Secrets are only ever references (`{env: VAR}` or `{file: path}`), resolved on demand.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from audit.settings import AuditSettings
from audit.yamlio import load_yaml

INVENTORY_DIR = Path(__file__).resolve().parent.parent / "inventories"


class InventoryError(Exception):
    """The inventory cannot be used; the message names the file and the field."""


class SecretRef(BaseModel):
    """Where a secret lives: an environment variable or a file, never the value itself."""

    model_config = ConfigDict(extra="forbid")
    env: str | None = None
    file: str | None = None

    def model_post_init(self, _ctx: Any) -> None:
        if bool(self.env) == bool(self.file):
            raise ValueError("give exactly one of `env` (variable name) or `file` (path)")


class Endpoint(BaseModel):
    """A service endpoint, optionally reached through an SSH tunnel via an inventory host."""

    model_config = ConfigDict(extra="forbid")
    url: str
    via: str | None = None


class GateLoad(BaseModel):
    """`audit_load.gate`: the load declared for production, held for `run_time` seconds: paced
    users (`requests_per_s`, each user at `user_rps`) or `users` waiting `wait` between tasks."""

    model_config = ConfigDict(extra="forbid")
    requests_per_s: float | None = Field(default=None, gt=0, le=10000)
    users: int | None = Field(default=None, ge=1, le=5000)
    run_time: int = Field(default=20, ge=5, le=600)          # seconds; every run stops by itself
    max_requests: int = Field(default=1500, ge=10, le=500000)  # hard cap on requests per run

    def model_post_init(self, _ctx: Any) -> None:
        if self.requests_per_s is not None and self.users is not None:
            raise ValueError("declare the production load as requests_per_s or as users, not both")
        if self.requests_per_s is None and self.users is None:
            self.users = 6


class StepLoad(BaseModel):
    """`audit_load.step`: the capacity search: start_rps, +step_rps per step, each step `settle`
    (not measured) + `hold` seconds, bounded by max_rps, max_time and max_requests."""

    model_config = ConfigDict(extra="forbid")
    start_rps: float = Field(default=10, gt=0)
    step_rps: float = Field(default=10, gt=0)
    max_rps: float = Field(default=400, gt=0, le=10000)
    settle: int = Field(default=3, ge=2, le=60)
    hold: int = Field(default=12, ge=3, le=600)
    max_time: int = Field(default=240, ge=10, le=3600)
    max_requests: int = Field(default=60000, ge=10, le=2000000)


class LoadProfile(BaseModel):
    """`audit_load`: the opt-in load checks (loadtests/): the `gate` profile (the production load)
    and the `step` profile (the capacity curve), the scenario mix and the per-address limits.

    Every client address (the runner, or each host of the group `loadgen`) stays under NGINX's
    per-client API limit: the plan refuses a load its addresses cannot send honestly. The former
    top-level users/run_time/max_requests are the gate's."""

    model_config = ConfigDict(extra="forbid")
    gate: GateLoad = GateLoad()
    step: StepLoad = StepLoad()
    user_rps: float = Field(default=1.0, gt=0, le=50)        # requests/s of one paced user
    spawn_rate: float = Field(default=3, gt=0, le=200)       # gate users started per second
    wait: tuple[float, float] = (0.5, 1.5)                  # seconds between a waiting user's tasks
    weights: dict[Literal["anonymous", "api", "static"], int] = {"anonymous": 1, "api": 1, "static": 1}
    users_per_process: int = Field(default=50, ge=1)         # no loadgen hosts: local worker processes
    api_rate_limit: float = Field(default=10, gt=0)          # NGINX limit_req on /api/, r/s per client
    worker_wait: int = Field(default=30, ge=5, le=300)       # seconds for every worker to connect

    @model_validator(mode="before")
    @classmethod
    def _legacy_gate(cls, data: Any) -> Any:
        if isinstance(data, dict) and {"users", "run_time", "max_requests"} & set(data):
            data = dict(data)
            gate = dict(data.get("gate") or {})
            for key in ("users", "run_time", "max_requests"):
                if key in data:
                    gate.setdefault(key, data.pop(key))
            data["gate"] = gate
        return data


class AwsAccount(BaseModel):
    """`audit_aws`: where the guide's AWS resources (security group, ALB target group, backup
    bucket) are read, with read-only credentials: a boto3 profile, or the names of two secrets of
    `audit_secrets` (never the keys themselves); neither: boto3's own chain (environment, role)."""

    model_config = ConfigDict(extra="forbid")
    region: str
    endpoint_url: str | None = None          # an AWS-compatible endpoint (e.g. a test double)
    profile: str | None = None
    access_key_id: str | None = None         # secret names in audit_secrets
    secret_access_key: str | None = None


class HostVars(BaseModel):
    """The variables the suite reads; other Ansible variables are allowed and ignored."""

    model_config = ConfigDict(extra="allow")

    ansible_host: str | None = None
    ansible_port: int | None = Field(default=None, ge=1, le=65535)
    ansible_user: str | None = None
    ansible_ssh_private_key_file: str | None = None
    ansible_connection: Literal["ssh", "local", "docker", "paramiko"] | None = None
    ansible_become: bool | None = None

    audit_known_hosts: str | None = None
    audit_public_host: str | None = None
    audit_public_url: str | None = None
    audit_resolve: dict[str, str] | None = None
    audit_ca_bundle: str | None = None
    audit_docker_url: str | None = None
    audit_prometheus: Endpoint | None = None
    audit_alertmanager: Endpoint | None = None
    audit_grafana: Endpoint | None = None
    audit_waivers: str | None = None
    audit_expected: dict[str, Any] | None = None
    audit_secrets: dict[str, SecretRef] | None = None
    audit_app_instances: int | None = Field(default=None, ge=1)
    audit_deploy_repo: str | None = None
    audit_settings: AuditSettings | None = None
    audit_not_applicable: dict[str, str] | None = None   # REQ-ID or catalogue section -> why not
    audit_load: LoadProfile | None = None
    audit_aws: AwsAccount | None = None                  # issue 21: the cloud requirements (boto3, read-only)
    audit_elasticsearch: Endpoint | None = None          # issue 21: the ELK stack (ARCH-ELK-STACK)
    audit_logstash: Endpoint | None = None
    audit_kibana: Endpoint | None = None

    @field_validator("audit_secrets", mode="before")
    @classmethod
    def _no_literal_secrets(cls, value: Any) -> Any:
        if isinstance(value, dict):
            for name, ref in value.items():
                if not isinstance(ref, dict):
                    raise ValueError(
                        f"secret {name!r} must be a reference ({{env: VAR}} or {{file: path}}), "
                        "never the value"
                    )
        return value

    @field_validator("audit_not_applicable")
    @classmethod
    def _reasons(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for key, reason in (value or {}).items():
            if not str(reason or "").strip():
                raise ValueError(f"{key}: give the reason why it does not apply to this deployment")
        return value

    def model_post_init(self, _ctx: Any) -> None:
        unknown = [k for k in (self.model_extra or {}) if k.startswith("audit_")]
        if unknown:
            raise ValueError(f"unknown suite variable(s): {', '.join(sorted(unknown))}")


# suite variables merged key by key across all < group < host (other variables: the most specific wins)
MERGED_VARS = ("audit_settings", "audit_not_applicable")
PATH_VARS = ("ansible_ssh_private_key_file", "audit_known_hosts", "audit_ca_bundle", "audit_waivers",
             "audit_deploy_repo")


def declared_not_applicable(declared: dict[str, str], req_id: str, section: str) -> str | None:
    """Why `audit_not_applicable` says a requirement does not apply: by its id, its catalogue
    section, or a `PREFIX-*` pattern; None when it does not say so."""
    return declared.get(req_id) or declared.get(section) or next(
        (why for key, why in declared.items() if key.endswith("*") and req_id.startswith(key[:-1])), None)


def absolutise_paths(node: Any, base: Path) -> None:
    """In a raw inventory tree (as YAML loads it), make every path variable (PATH_VARS) and every
    secret `file` absolute against `base`, in place: for a copy written somewhere else."""
    if isinstance(node, dict):
        for key, value in node.items():
            if isinstance(value, str) and (key in PATH_VARS or key == "file"):
                node[key] = str((base / value).resolve())
            else:
                absolutise_paths(value, base)
    elif isinstance(node, list):
        for item in node:
            absolutise_paths(item, base)


@dataclass
class Host:
    """One inventory host with its merged variables and the roles (groups) it belongs to."""

    name: str
    roles: frozenset[str]
    vars: dict[str, Any]

    @property
    def address(self) -> str:
        return self.vars.get("ansible_host") or self.name

    @property
    def port(self) -> int:
        return int(self.vars.get("ansible_port") or 22)

    @property
    def user(self) -> str | None:
        return self.vars.get("ansible_user")

    @property
    def connection(self) -> str:
        return self.vars.get("ansible_connection") or "ssh"

    @property
    def become(self) -> bool:
        """Commands that need root go through `sudo -n` (ansible_become), else the login is root."""
        return bool(self.vars.get("ansible_become"))

    @cached_property
    def settings(self) -> AuditSettings:
        """The host's typed audit_settings (merged key by key over all, groups, host)."""
        return AuditSettings(**(self.vars.get("audit_settings") or {}))

    @property
    def not_applicable(self) -> dict[str, str]:
        """Requirement ids or catalogue sections declared not applicable on this host, with why."""
        return dict(self.vars.get("audit_not_applicable") or {})


@dataclass
class Inventory:
    """A validated inventory: hosts by name, roles, and global suite settings."""

    path: Path
    name: str
    hosts: dict[str, Host]
    globals: dict[str, Any] = field(default_factory=dict)

    def hosts_with_role(self, *roles: str) -> list[Host]:
        """Hosts in any of `roles` (all hosts when `roles` is empty or names `all`: the deployment's,
        not the load generators that are only in the group `loadgen`), sorted by name."""
        if not roles or "all" in roles:
            return [h for n, h in sorted(self.hosts.items()) if h.roles != {"loadgen"}]
        return [h for n, h in sorted(self.hosts.items()) if h.roles & set(roles)]

    @property
    def roles(self) -> set[str]:
        return set().union(*(h.roles for h in self.hosts.values())) if self.hosts else set()

    @cached_property
    def settings(self) -> AuditSettings:
        """The deployment-wide audit_settings (all.vars)."""
        return AuditSettings(**(self.globals.get("audit_settings") or {}))

    def setting(self, key: str, default: Any = None) -> Any:
        """A deployment-wide suite variable (from `all.vars`)."""
        return self.globals.get(key, default)

    def secret_ref(self, name: str) -> SecretRef | None:
        ref = (self.globals.get("audit_secrets") or {}).get(name)
        return SecretRef(**ref) if isinstance(ref, dict) else ref


def _loc(parts: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in parts if p != "__root__")


def _validate_vars(path: Path, where: str, raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InventoryError(f"{path}: {where}: expected a mapping of variables, got {type(raw).__name__}")
    try:
        HostVars(**raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        field_path = _loc(err["loc"])
        at = f"{where}.{field_path}" if field_path else where
        raise InventoryError(f"{path}: {at}: {err['msg']}") from None
    return {k: _absolutise(path, k, v) for k, v in raw.items()}


def _absolutise(path: Path, key: str, value: Any) -> Any:
    base = path.parent
    if key in PATH_VARS and isinstance(value, str) and value:
        return str((base / os.path.expanduser(value)).resolve())
    if key == "audit_secrets" and isinstance(value, dict):
        return {n: ({"file": str((base / r["file"]).resolve())} if r.get("file") else dict(r))
                for n, r in value.items()}
    return value


def _walk(path: Path, name: str, group: Any, where: str, depth: int,
          parents: tuple[str, ...], out: dict[str, list]) -> None:
    """Collect, per host, (depth, group name, group vars) of every group containing it."""
    if group is None:
        group = {}
    if not isinstance(group, dict):
        raise InventoryError(f"{path}: {where}: a group must be a mapping with hosts/vars/children")
    unknown = set(group) - {"hosts", "vars", "children"}
    if unknown:
        raise InventoryError(f"{path}: {where}: unknown key(s) {', '.join(sorted(unknown))} "
                             "(a group has hosts, vars and children)")
    gvars = _validate_vars(path, f"{where}.vars", group.get("vars"))
    chain = (*parents, name)
    out.setdefault("__groups__", []).append((depth, name, gvars, chain))
    hosts = group.get("hosts") or {}
    if not isinstance(hosts, dict):
        raise InventoryError(f"{path}: {where}.hosts: expected a mapping of host names")
    for host, hvars in hosts.items():
        hv = _validate_vars(path, f"{where}.hosts.{host}", hvars)
        out.setdefault(str(host), []).append((chain, hv))
    children = group.get("children") or {}
    if not isinstance(children, dict):
        raise InventoryError(f"{path}: {where}.children: expected a mapping of groups")
    for child, cgroup in children.items():
        _walk(path, str(child), cgroup, f"{where}.children.{child}", depth + 1, chain, out)


def load_inventory(path: str | Path) -> Inventory:
    """Read, validate and merge an inventory file."""
    path = Path(path).resolve()
    try:
        data = load_yaml(path.read_text())
    except OSError as exc:
        raise InventoryError(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise InventoryError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not data:
        raise InventoryError(f"{path}: expected a mapping with an `all` group at the top")
    collected: dict[str, list] = {}
    for top, group in data.items():
        _walk(path, str(top), group, str(top), 0, (), collected)
    groups = collected.pop("__groups__")
    depth_of = {}
    for depth, gname, gvars, chain in groups:
        depth_of.setdefault(gname, (depth, gvars, chain))

    hosts: dict[str, Host] = {}
    for hname, memberships in collected.items():
        roles: set[str] = set()
        for chain, _ in memberships:
            roles.update(chain)
        layers = sorted((depth_of[g][0], g) for g in roles)
        merged: dict[str, Any] = {}
        for layer in [depth_of[g][1] for _, g in layers] + [hvars for _, hvars in memberships]:
            for key, value in layer.items():
                if key in MERGED_VARS and isinstance(value, dict):
                    value = {**(merged.get(key) or {}), **value}
                merged[key] = value
        roles.discard("all")
        roles.discard("ungrouped")
        hosts[hname] = Host(hname, frozenset(roles), merged)

    globals_ = dict(depth_of.get("all", (0, {}, ()))[1])
    for key, target in (("via", "audit_prometheus"), ("via", "audit_alertmanager"), ("via", "audit_grafana")):
        via = (globals_.get(target) or {}).get(key)
        if via and via not in hosts:
            raise InventoryError(f"{path}: all.vars.{target}.via: no host named {via!r} in the inventory")
    name = path.stem
    return Inventory(path=path, name=name, hosts=hosts, globals=globals_)


def available_inventories() -> list[str]:
    return sorted(p.stem for p in INVENTORY_DIR.glob("*.yml") if not p.name.startswith("."))  # not generated ones


def resolve_inventory_arg(value: str) -> Path | None:
    """Map `--hosts` to an inventory file, or None when it is a raw testinfra host spec list.

    A name resolves to inventories/NAME.yml; an existing path is used as is. Anything else
    that is not a `scheme://` spec is a usage error listing the available inventories.
    """
    if "://" in value:
        return None
    candidate = Path(value)
    if candidate.suffix in (".yml", ".yaml") or os.sep in value:
        if candidate.is_file():
            return candidate.resolve()
        raise InventoryError(f"inventory file {value} does not exist")
    named = INVENTORY_DIR / f"{value}.yml"
    if named.is_file():
        return named
    raise InventoryError(
        f"unknown inventory {value!r}: available are {', '.join(available_inventories()) or '(none)'} "
        f"(files in {INVENTORY_DIR}); or give a path to an inventory file, or testinfra host specs "
        "such as ssh://user@host"
    )


def inventory_from_specs(specs: str, ssh_config: str | None = None, identity: str | None = None) -> Inventory:
    """An ad-hoc inventory from raw testinfra specs (`ssh://user@host:port`, `docker://NAME`,
    `local://`): every host plays every role. An ssh:// host is reached like an inventory host
    (the suite's shared SSH connection, the account's own keys and known_hosts), a docker:// one
    through the engine (`docker exec`), local:// on this machine."""
    from urllib.parse import urlparse

    all_roles = frozenset({"web", "app", "monitoring", "db_primary", "redis", "docker",
                           "backup_db", "backup_app"})
    hosts = {}
    for spec in [s.strip() for s in specs.split(",") if s.strip()]:
        parsed = urlparse(spec)
        name = parsed.hostname or parsed.scheme
        if parsed.scheme == "ssh":
            host_vars = {"ansible_host": parsed.hostname, "ansible_port": parsed.port, "ansible_user": parsed.username,
                         "ansible_ssh_private_key_file": identity and str(Path(identity).resolve())}
            host_vars = {k: v for k, v in host_vars.items() if v}
        elif parsed.scheme in ("docker", "local"):
            host_vars = {"ansible_connection": parsed.scheme, **({"ansible_host": parsed.hostname}
                                                                 if parsed.hostname else {})}
        else:
            raise InventoryError(f"--hosts {spec}: only ssh://, docker:// and local:// specs are supported")
        hosts[name] = Host(name, all_roles, host_vars)
    return Inventory(path=Path("<--hosts>"), name="adhoc", hosts=hosts,
                     globals={"ssh_config": str(Path(ssh_config).resolve())} if ssh_config else {})


def resolve_secret(inventory: Inventory, name: str) -> str:
    """Read a secret by its reference; errors name the secret and where it was looked for."""
    ref = inventory.secret_ref(name)
    if ref is None:
        raise InventoryError(f"{inventory.path}: all.vars.audit_secrets.{name}: not defined")
    if ref.env:
        value = os.environ.get(ref.env)
        if not value:
            raise InventoryError(f"secret {name}: environment variable {ref.env} is not set")
        return value
    try:
        value = Path(ref.file).read_text().strip()
    except OSError as exc:
        raise InventoryError(f"secret {name}: cannot read {ref.file}: {exc.strerror}") from None
    if not value:
        raise InventoryError(f"secret {name}: {ref.file} is empty")
    return value
