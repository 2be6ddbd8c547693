"""Inventory resolution, validation and variable merging."""

from pathlib import Path

import pytest

from audit.inventory import (
    InventoryError,
    inventory_from_specs,
    load_inventory,
    resolve_inventory_arg,
    resolve_secret,
)

ROOT = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "inv.yml"
    path.write_text(text)
    return path


def test_name_resolves_to_the_inventories_folder():
    assert resolve_inventory_arg("local") == ROOT / "inventories" / "local.yml"


def test_a_path_is_used_as_is(tmp_path):
    path = write(tmp_path, "all: {hosts: {h1: }}\n")
    assert resolve_inventory_arg(str(path)) == path


def test_raw_testinfra_specs_are_not_inventories():
    assert resolve_inventory_arg("ssh://root@host1,docker://c1") is None
    inv = inventory_from_specs("ssh://root@host1,docker://c1")
    assert sorted(inv.hosts) == ["c1", "host1"]
    assert inv.hosts["host1"].vars == {"ansible_host": "host1", "ansible_user": "root"}
    assert inv.hosts["c1"].vars == {"ansible_connection": "docker", "ansible_host": "c1"}


def test_unknown_name_lists_the_available_inventories():
    with pytest.raises(InventoryError, match=r"unknown inventory 'nope': available are .*local.*prod.*staging"):
        resolve_inventory_arg("nope")


def test_missing_path_is_named(tmp_path):
    with pytest.raises(InventoryError, match="does-not-exist.yml does not exist"):
        resolve_inventory_arg(str(tmp_path / "does-not-exist.yml"))


@pytest.mark.parametrize("name", ["local", "staging", "prod"])
def test_shipped_inventories_are_valid(name):
    inv = load_inventory(ROOT / "inventories" / f"{name}.yml")
    assert inv.hosts_with_role("web")
    assert inv.hosts_with_role("db_primary")


def test_local_inventory_roles_and_paths():
    inv = load_inventory(ROOT / "inventories" / "local.yml")
    web1 = inv.hosts["web1"]
    assert {"web", "app", "monitoring"} <= web1.roles
    assert web1.address == "127.77.0.11"
    assert web1.port == 22
    assert web1.user == "root"
    assert web1.vars["ansible_ssh_private_key_file"] == str(ROOT / ".state/ssh/id_ed25519")
    assert "db" in inv.hosts["db1"].roles
    assert "db_primary" in inv.hosts["db1"].roles
    assert [h.name for h in inv.hosts_with_role("redis_cluster")] == ["cache1", "cache2", "cache3"]
    assert inv.hosts["engine"].connection == "local"


def test_child_group_vars_override_parent_and_host_vars_win(tmp_path):
    inv = load_inventory(write(tmp_path, """
all:
  vars: {ansible_user: a, ansible_port: 2200}
  children:
    db:
      vars: {ansible_user: b}
      children:
        db_primary:
          vars: {ansible_user: c}
          hosts:
            db1: {ansible_port: 2201}
            db9:
"""))
    assert inv.hosts["db1"].user == "c"
    assert inv.hosts["db1"].port == 2201
    assert inv.hosts["db9"].port == 2200


@pytest.mark.parametrize(("text", "message"), [
    ("all: {hosts: {web1: {ansible_port: ssh}}}", r"inv.yml: all.hosts.web1.ansible_port: .*integer"),
    ("all: {vars: {audit_publc_url: x}}", r"inv.yml: all.vars: .*unknown suite variable.*audit_publc_url"),
    ("all: {vars: {audit_secrets: {db_password: hunter2}}}",
     r"inv.yml: all.vars.audit_secrets: .*must be a reference"),
    ("all: {vars: {audit_secrets: {db_password: {env: A, file: b}}}}",
     r"all.vars.audit_secrets.db_password: .*exactly one"),
    ("all: {children: {web: {hostz: {}}}}", r"all.children.web: unknown key\(s\) hostz"),
    ("all: [1, 2]", r"all: a group must be a mapping"),
    ("all: {vars: {audit_prometheus: {url: http://x, via: nohost}}}",
     r"audit_prometheus.via: no host named 'nohost'"),
    ("- just\n- a list", r"expected a mapping with an `all` group"),
    ("all: {hosts: {a: }\n", r"not valid YAML"),
])
def test_bad_inventory_names_file_and_field(tmp_path, text, message):
    with pytest.raises(InventoryError, match=message):
        load_inventory(write(tmp_path, text))


def test_secrets_by_env_and_file(tmp_path, monkeypatch):
    (tmp_path / "pw").write_text("s3cret-from-file\n")
    inv = load_inventory(write(tmp_path, """
all:
  vars:
    audit_secrets:
      a: {env: AUDIT_TEST_SECRET}
      b: {file: pw}
      c: {file: missing}
  hosts: {h: }
"""))
    monkeypatch.setenv("AUDIT_TEST_SECRET", "s3cret-from-env")
    assert resolve_secret(inv, "a") == "s3cret-from-env"
    assert resolve_secret(inv, "b") == "s3cret-from-file"
    with pytest.raises(InventoryError, match=r"secret c: cannot read .*missing"):
        resolve_secret(inv, "c")
    monkeypatch.delenv("AUDIT_TEST_SECRET")
    with pytest.raises(InventoryError, match="AUDIT_TEST_SECRET is not set"):
        resolve_secret(inv, "a")
    with pytest.raises(InventoryError, match="audit_secrets.zzz: not defined"):
        resolve_secret(inv, "zzz")


CHECKS_NEED = ("audit_public_host", "audit_public_url", "audit_docker_url", "audit_prometheus", "audit_alertmanager",
               "audit_deploy_repo", "audit_secrets", "audit_settings")
SECRETS_NEEDED = {"db_audit_password", "db_password", "redis_password", "app_username", "app_password", "jwt_secret"}
# optional endpoints: unless declared, their requirements are could-not-audit naming the key
OR_NOT_APPLICABLE = {"audit_aws": ("NET-AWS-SG-HTTPS-INGRESS", "NGINX-ALB-TARGET-HEALTH-CHECK", "BAK-DB-S3-UPLOAD"),
                     "audit_elasticsearch": ("ARCH-ELK-STACK",)}


@pytest.mark.parametrize("name", ["prod", "staging"])
def test_shipped_examples_name_every_role_and_key_the_checks_need(name):
    """A copy of prod.yml or staging.yml, filled in, audits everything: no role without a host, no
    key a check needs left out (issue 17: a missing key is could-not-audit, never a silent skip)."""
    from audit.catalogue import load_catalogue
    from audit.inventory import load_inventory

    inv = load_inventory(ROOT / "inventories" / f"{name}.yml")
    roles = {role for r in load_catalogue().requirements for role in (r.roles or ()) if role != "all"}
    declared = inv.globals.get("audit_not_applicable") or {}
    assert roles - {"iptables"} <= inv.roles, f"roles without a host: {sorted(roles - inv.roles)}"
    assert "iptables" in inv.roles or "NET-IPTABLES-*" in declared
    assert [k for k in CHECKS_NEED if not inv.globals.get(k)] == []
    assert set(inv.globals["audit_secrets"]) >= SECRETS_NEEDED
    for key, requirements in OR_NOT_APPLICABLE.items():
        assert inv.globals.get(key) or set(requirements) <= set(declared), key
