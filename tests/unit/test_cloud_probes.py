"""audit/probes/cloud.py: AWS read with boto3 against moto (both directions), the S3 upload
lines of the backup scripts, and the ELK answers."""

from __future__ import annotations

import datetime as dt

import boto3
import pytest
from moto import mock_aws

from audit.probes.cloud import (
    allows,
    bucket_url,
    index_documents,
    kibana_level,
    read_bucket,
    read_security_groups,
    read_target_group,
    s3_upload_line,
)
from audit.probes.shell import script_commands

REGION = "us-east-1"


@pytest.fixture
def aws(monkeypatch):
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        yield


def test_security_group_of_the_guide_allows_https_from_anywhere(aws):
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    sg = ec2.create_security_group(GroupName="pynomaly-sg", Description="Pynomaly application security group",
                                   VpcId=vpc)["GroupId"]
    found = read_security_groups(ec2, "pynomaly-sg")
    assert list(found.groups) == [sg]
    assert not allows(found.groups[sg], "tcp", 443, "0.0.0.0/0")  # created, no rule yet
    ec2.authorize_security_group_ingress(GroupId=sg, IpProtocol="tcp", FromPort=443, ToPort=443,
                                         CidrIp="0.0.0.0/0")
    assert allows(read_security_groups(ec2, "pynomaly-sg").groups[sg], "tcp", 443, "0.0.0.0/0")
    assert read_security_groups(ec2, "other-sg").groups == {}


def test_rules_that_do_not_open_443_to_everyone():
    assert not allows([{"protocol": "tcp", "from": 443, "to": 443, "cidr": "10.0.0.0/8"}], "tcp", 443, "0.0.0.0/0")
    assert not allows([{"protocol": "tcp", "from": 80, "to": 80, "cidr": "0.0.0.0/0"}], "tcp", 443, "0.0.0.0/0")
    assert allows([{"protocol": "tcp", "from": 0, "to": 65535, "cidr": "0.0.0.0/0"}], "tcp", 443, "0.0.0.0/0")
    assert allows([{"protocol": "-1", "from": None, "to": None, "cidr": "0.0.0.0/0"}], "tcp", 443, "0.0.0.0/0")


def test_target_group_health_check(aws):
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    elbv2 = boto3.client("elbv2", region_name=REGION)
    elbv2.create_target_group(Name="pynomaly-targets", Protocol="HTTP", Port=80, VpcId=vpc,
                              HealthCheckProtocol="HTTP", HealthCheckPath="/health", HealthCheckIntervalSeconds=30,
                              HealthCheckTimeoutSeconds=5, HealthyThresholdCount=2, UnhealthyThresholdCount=3)
    assert read_target_group(elbv2, "pynomaly-targets") == {
        "protocol": "HTTP", "port": 80, "path": "/health", "interval_seconds": 30, "timeout_seconds": 5,
        "healthy_threshold": 2, "unhealthy_threshold": 3}
    elbv2.create_target_group(Name="other", Protocol="HTTP", Port=80, VpcId=vpc, HealthCheckPath="/")
    assert read_target_group(elbv2, "other")["path"] == "/"
    assert read_target_group(elbv2, "missing-targets") is None


def test_backup_bucket_newest_objects(aws):
    s3 = boto3.client("s3", region_name=REGION)
    patterns = {"app": "pynomaly_app_*.tar.gz", "db": "pynomaly_backup_*.sql.gz"}
    assert not read_bucket(s3, "s3://pynomaly-backups/", patterns, dt.datetime.now(dt.UTC)).exists
    s3.create_bucket(Bucket="pynomaly-backups")
    s3.put_object(Bucket="pynomaly-backups", Key="pynomaly_app_20260101_020000.tar.gz", Body=b"x")
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=3)
    found = read_bucket(s3, "s3://pynomaly-backups/", patterns, later)
    assert found.exists
    assert 2.9 < found.newest["app"] < 3.1
    assert found.newest["db"] is None
    assert bucket_url("s3://b/some/prefix/") == ("b", "some/prefix/")


def test_refused_credentials_are_could_not_audit(aws, monkeypatch):
    from botocore.exceptions import ClientError

    from audit.outcomes import CouldNotAudit
    from audit.probes.cloud import aws_call

    def refuse(**_):
        raise ClientError({"Error": {"Code": "UnauthorizedOperation", "Message": "no"}}, "DescribeSecurityGroups")

    with pytest.raises(CouldNotAudit, match="UnauthorizedOperation"):
        aws_call("EC2", refuse)


GUIDE_APP_BACKUP = """#!/bin/bash
BACKUP_DIR="/opt/backups/application"
tar -czf $BACKUP_DIR/pynomaly_app_$TIMESTAMP.tar.gz $APP_DIR
# Upload to S3
aws s3 cp $BACKUP_DIR/pynomaly_app_$TIMESTAMP.tar.gz s3://pynomaly-backups/
"""
REFERENCE_APP_BACKUP = """#!/bin/bash
if [ -n "${S3_BUCKET:-}" ]; then
    aws s3 cp $BACKUP_DIR/pynomaly_app_$TIMESTAMP.tar.gz s3://$S3_BUCKET/
fi
"""


def test_s3_upload_line_of_the_backup_scripts():
    url = "s3://pynomaly-backups/"
    assert s3_upload_line(script_commands(GUIDE_APP_BACKUP), "pynomaly_app_", url).startswith("aws s3 cp ")
    assert s3_upload_line(script_commands(REFERENCE_APP_BACKUP), "pynomaly_app_", url) is None
    assert s3_upload_line(script_commands(GUIDE_APP_BACKUP), "pynomaly_backup_", url) is None


def test_elk_answers():
    assert kibana_level({"status": {"overall": {"level": "available"}}}) == "available"
    assert kibana_level({"status": {"overall": {"state": "green"}}}) == "green"
    assert kibana_level({}) is None
    cat = [{"index": "logs-pynomaly-2026.11.27", "docs.count": "1200"}, {"index": ".kibana_1", "docs.count": "5"},
           {"index": "logs-empty", "docs.count": "0"}]
    assert index_documents(cat) == {"logs-pynomaly-2026.11.27": 1200, "logs-empty": 0}
