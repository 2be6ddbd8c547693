"""Cloud state and the log stack (issue 21 item 3): what was "not automatable".

- `aws_security_group`, `aws_target_group`, `aws_backups` (the deployment): read with boto3 and
  the inventory's read-only credentials (`audit_aws`: region, optional endpoint_url, a profile or
  two secret names of `audit_secrets`): the security group's ingress rules, the ALB target
  group's health check, and the backup bucket's objects. Calls used: ec2:DescribeSecurityGroups,
  elasticloadbalancing:DescribeTargetGroups, s3:ListBucket (a read-only policy is enough).
- `elk` (the deployment): Elasticsearch's cluster health and indices, Logstash's node API and
  Kibana's status, through the inventory's optional endpoints (`audit_elasticsearch`,
  `audit_logstash`, `audit_kibana`: url, optionally `via` a host).

A deployment without AWS or ELK declares the requirements not applicable (audit_not_applicable,
with the reason); a deployment that uses them and does not say where is could-not-audit naming
the inventory setting.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any

from audit.access import ANSWER, CONNECT, describe
from audit.facts import probe
from audit.outcomes import CouldNotAudit

# ---------------------------------------------------------------- AWS


def aws_clients(session, *services: str) -> list:
    """boto3 clients for the inventory's account (audit_aws), short timeouts, no retries."""
    import boto3
    from botocore.config import Config

    account = session.inventory.setting("audit_aws")
    if not account:
        raise CouldNotAudit(None, "AWS", "the inventory names no account (all.vars.audit_aws), or declare the "
                                         "requirement not applicable (audit_not_applicable) when AWS is not used")
    keys = {}
    if account.get("access_key_id") and account.get("secret_access_key"):
        keys = {"aws_access_key_id": session.access.secret(account["access_key_id"]),
                "aws_secret_access_key": session.access.secret(account["secret_access_key"])}
    try:
        aws = boto3.session.Session(region_name=account.get("region"), profile_name=account.get("profile"), **keys)
        config = Config(connect_timeout=CONNECT, read_timeout=ANSWER, retries={"max_attempts": 1})
        return [aws.client(s, endpoint_url=account.get("endpoint_url"), config=config) for s in services]
    except Exception as exc:  # noqa: BLE001 - a profile that does not exist, no region, ...
        raise CouldNotAudit(None, "AWS", describe(exc)) from None


def aws_call(service: str, call, **kwargs) -> dict:
    """One read-only AWS API call; an unreachable endpoint or refused credentials is could-not-audit,
    an answer that the thing does not exist is returned as {"missing": code}."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        return call(**kwargs)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if re.search(r"NotFound|NoSuch|InvalidGroup", code):
            return {"missing": code}
        raise CouldNotAudit(None, f"AWS {service}", f"{code}: {describe(exc)}") from None
    except BotoCoreError as exc:
        raise CouldNotAudit(None, f"AWS {service}", describe(exc)) from None


def ingress_rules(group: dict) -> list[dict]:
    """A security group's IpPermissions -> {protocol, from, to, cidr} per CIDR."""
    out = []
    for perm in group.get("IpPermissions") or []:
        for cidr in [r.get("CidrIp") for r in perm.get("IpRanges") or []] + \
                    [r.get("CidrIpv6") for r in perm.get("Ipv6Ranges") or []]:
            out.append({"protocol": perm.get("IpProtocol"), "from": perm.get("FromPort"), "to": perm.get("ToPort"),
                        "cidr": cidr})
    return out


def allows(rules: list[dict], protocol: str, port: int, cidr: str) -> bool:
    return any(r["cidr"] == cidr and (r["protocol"] in (protocol, "-1"))
               and (r["protocol"] == "-1" or (r["from"] or 0) <= port <= (r["to"] or 0)) for r in rules)


@dataclass(frozen=True)
class SecurityGroups:
    name: str
    groups: dict[str, list[dict]]       # group id -> its ingress rules (none: no such group)


def read_security_groups(ec2, name: str) -> SecurityGroups:
    answer = aws_call("EC2", ec2.describe_security_groups, Filters=[{"Name": "group-name", "Values": [name]}])
    return SecurityGroups(name, {g["GroupId"]: ingress_rules(g) for g in answer.get("SecurityGroups") or []})


@probe(per_host=False)
def aws_security_group(session) -> SecurityGroups:
    """The security group the guide creates, and its ingress rules."""
    (ec2,) = aws_clients(session, "ec2")
    return read_security_groups(ec2, session.expected("NET-AWS-SG-HTTPS-INGRESS")["group_name"])


HEALTH_FIELDS = {"protocol": "HealthCheckProtocol", "port": "Port", "path": "HealthCheckPath",
                 "interval_seconds": "HealthCheckIntervalSeconds", "timeout_seconds": "HealthCheckTimeoutSeconds",
                 "healthy_threshold": "HealthyThresholdCount", "unhealthy_threshold": "UnhealthyThresholdCount"}


def read_target_group(elbv2, name: str) -> dict[str, Any] | None:
    """The target group's health check in the catalogue's words; None when there is no such group."""
    answer = aws_call("ELBv2", elbv2.describe_target_groups, Names=[name])
    groups = answer.get("TargetGroups") or []
    if not groups:
        return None
    return {key: groups[0].get(field_) for key, field_ in HEALTH_FIELDS.items()}


@probe(per_host=False)
def aws_target_group(session) -> dict[str, Any] | None:
    """The ALB target group pynomaly-targets' health check (None: no such target group)."""
    (elbv2,) = aws_clients(session, "elbv2")
    return read_target_group(elbv2, session.expected("NGINX-ALB-TARGET-HEALTH-CHECK")["target_group"])


@dataclass(frozen=True)
class BucketFacts:
    bucket: str
    exists: bool
    newest: dict[str, float | None] = field(default_factory=dict)  # key pattern -> age in hours of the newest


def bucket_url(url: str) -> tuple[str, str]:
    """s3://bucket/prefix/ -> (bucket, prefix)."""
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    return bucket, prefix


def read_bucket(s3, url: str, patterns: dict[str, str], now: dt.datetime) -> BucketFacts:
    """Age of the newest object matching each glob-like pattern (e.g. pynomaly_app_*.tar.gz)."""
    bucket, prefix = bucket_url(url)
    answer = aws_call("S3", s3.list_objects_v2, Bucket=bucket, Prefix=prefix)
    if "missing" in answer:
        return BucketFacts(bucket, False)
    newest: dict[str, float | None] = {}
    for name, pattern in patterns.items():
        rx = re.compile("^" + re.escape(prefix) + re.escape(pattern).replace(r"\*", ".*") + "$")
        times = [o["LastModified"] for o in answer.get("Contents") or [] if rx.match(o["Key"])]
        newest[name] = round((now - max(times)).total_seconds() / 3600, 2) if times else None
    return BucketFacts(bucket, True, newest)


@probe(per_host=False)
def aws_backups(session) -> BucketFacts:
    """The off-site backup bucket: how old the newest application and database backups are."""
    (s3,) = aws_clients(session, "s3")
    app, db = session.expected("BAK-APP-S3-UPLOAD"), session.expected("BAK-DB-S3-UPLOAD")
    if app["url"] != db["url"]:
        raise CouldNotAudit(None, "AWS S3", f"two backup buckets ({app['url']}, {db['url']}): one is read")
    return read_bucket(s3, app["url"], {"app": app["object"], "db": db["object"]}, dt.datetime.now(dt.UTC))


def s3_upload_line(lines: list[str], archive_prefix: str, url: str) -> str | None:
    """The script line that copies the backup it made to the bucket: `aws s3 cp <archive> <url>`
    (the archive named by the script's variables, e.g. $BACKUP_DIR/pynomaly_app_$TIMESTAMP.tar.gz)."""
    for line in lines:
        words = line.split()
        if words[:3] == ["aws", "s3", "cp"] and len(words) >= 5 and archive_prefix in words[3] \
                and words[4].rstrip("/") == url.rstrip("/"):
            return line
    return None


# ---------------------------------------------------------------- ELK

@dataclass(frozen=True)
class ElkFacts:
    elasticsearch: dict[str, Any]       # cluster health: status, number_of_nodes
    indices: dict[str, int]             # index -> documents
    logstash: dict[str, Any]            # node API: status, version
    kibana: str | None                  # overall status level (available / green), None: not read


def kibana_level(status: dict) -> str | None:
    """Kibana's /api/status: 8.x status.overall.level, 7.x status.overall.state."""
    overall = (status.get("status") or {}).get("overall") or {}
    return overall.get("level") or overall.get("state")


def index_documents(cat: list[dict]) -> dict[str, int]:
    """`_cat/indices?format=json` -> {index: docs.count} (system indices left out)."""
    return {i["index"]: int(i.get("docs.count") or 0) for i in cat if not str(i.get("index", "")).startswith(".")}


def api_json(session, name: str, path: str) -> Any:
    body = session.access.api(name).raw(path)
    try:
        return body.json()
    except ValueError:
        raise CouldNotAudit(None, f"the {name} API", f"GET {path} did not answer JSON") from None


@probe(per_host=False)
def elk(session) -> ElkFacts:
    """Elasticsearch's health and indices, Logstash's node API, Kibana's status."""
    health = api_json(session, "elasticsearch", "/_cluster/health")
    indices = index_documents(api_json(session, "elasticsearch", "/_cat/indices?format=json"))
    node = api_json(session, "logstash", "/")
    kibana = kibana_level(api_json(session, "kibana", "/api/status"))
    return ElkFacts({"status": health.get("status"), "number_of_nodes": health.get("number_of_nodes")}, indices,
                    {"status": node.get("status"), "version": node.get("version")}, kibana)
