"""Cloud state and the log stack (issue 21 item 3, formerly "not automatable"): the AWS security
group and ALB target group (boto3, read-only credentials), the off-site S3 copies of the backups
(the scripts' `aws s3 cp` lines and the bucket), and the ELK stack. A deployment without AWS or
ELK declares them not applicable in its inventory. What is read, and how: audit/probes/cloud.py.
"""

from __future__ import annotations

import pytest

from audit.probes.cloud import allows, s3_upload_line


@pytest.mark.requirement("NET-AWS-SG-HTTPS-INGRESS")
def check_security_group_allows_https(judge, aws_security_group):
    """"aws ec2 authorize-security-group-ingress --group-id ... --protocol tcp --port 443 --cidr 0.0.0.0/0"."""
    want, sg = judge.expected, aws_security_group
    if not sg.groups:
        judge.fail(f"no security group named {sg.name}")
    judge.each(sg.groups, lambda rules: allows(rules, want["protocol"], want["port"], want["cidr"]),
               what=f"ingress rules of {sg.name}", expected=want)


@pytest.mark.requirement("NGINX-ALB-TARGET-HEALTH-CHECK")
def check_alb_target_group_health_check(judge, aws_target_group):
    """"aws elbv2 create-target-group --name pynomaly-targets --health-check-path /health ..."."""
    want = {k: v for k, v in judge.expected.items() if k != "target_group"}
    if aws_target_group is None:
        judge.fail(f"no target group named {judge.expected['target_group']}")
    judge.equal({k: aws_target_group.get(k) for k in want}, what=f"target group {judge.expected['target_group']}",
                expected=want, where="elbv2 DescribeTargetGroups")


def _upload(judge, backups, aws_backups, kind: str) -> None:
    want = judge.expected
    script = getattr(backups, kind).script if getattr(backups, kind) else None
    line = script and s3_upload_line(script.commands, want["archive"], want["url"])
    age = aws_backups.newest.get(kind) if aws_backups.exists else None
    found = {"script line": line, "bucket": aws_backups.bucket if aws_backups.exists else "no such bucket",
             "newest object, hours": age}
    judge.that(bool(line) and age is not None and age <= want["max_age_hours"], what=f"off-site copy ({kind})",
               found=found, where=script.path if script else None)


@pytest.mark.roles("backup_app")
@pytest.mark.requirement("BAK-APP-S3-UPLOAD")
def check_app_backups_go_to_s3(judge, backups, aws_backups):
    """"aws s3 cp $BACKUP_DIR/pynomaly_app_$TIMESTAMP.tar.gz s3://pynomaly-backups/"."""
    _upload(judge, backups, aws_backups, "app")


@pytest.mark.roles("backup_db")
@pytest.mark.requirement("BAK-DB-S3-UPLOAD")
def check_db_backups_go_to_s3(judge, backups, aws_backups):
    """"# Upload to S3 (optional)  aws s3 cp $BACKUP_DIR/pynomaly_backup_$TIMESTAMP.sql.gz s3://pynomaly-backups/"."""
    _upload(judge, backups, aws_backups, "db")


@pytest.mark.requirement("ARCH-ELK-STACK")
def check_elk_collects_logs(judge, elk):
    """"Monitoring: Prometheus, Grafana, and ELK stack": Elasticsearch healthy with log indices
    that hold documents, Logstash and Kibana answering."""
    want = judge.expected
    found = {"elasticsearch": elk.elasticsearch["status"], "logstash": elk.logstash["status"], "kibana": elk.kibana,
             "indices with documents": sorted(i for i, n in elk.indices.items() if n > 0)}
    judge.that(found["elasticsearch"] in want["elasticsearch_status"] and found["logstash"] == want["logstash_status"]
               and found["kibana"] in want["kibana_status"]
               and len(found["indices with documents"]) >= want["indices_with_documents"],
               what="the ELK stack", found=found)
