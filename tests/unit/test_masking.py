"""Secrets never leave the suite: masking of text, config assignments, log records, report files."""

import logging

from audit import evidence


def test_registered_secret_and_its_url_form_are_masked():
    evidence.register_secret("p@ss/w0rd!x")
    text = "postgresql://u:p%40ss%2Fw0rd%21x@db/x and raw p@ss/w0rd!x"
    masked = evidence.mask(text)
    assert "w0rd" not in masked
    assert masked.count(evidence.MASK) == 2


def test_short_values_are_not_treated_as_secrets():
    evidence.register_secret("abc")
    assert evidence.mask("abc") == "abc"


def test_secret_looking_assignments_are_masked():
    text = "JWT_SECRET=abc123\nDEBUG=false\nrequirepass hunter22\n# PASSWORD=commented\nDB_PASSWORD: x"
    masked = evidence.mask_assignments(text)
    assert "abc123" not in masked
    assert "hunter22" not in masked
    assert "DEBUG=false" in masked
    assert "# PASSWORD=commented" in masked
    assert "DB_PASSWORD: " + evidence.MASK in masked


def test_log_records_are_masked(caplog):
    evidence.register_secret("log-secret-value")
    logger = logging.getLogger("audit.test")
    handler = logging.Handler()
    seen = []
    handler.emit = lambda record: seen.append(record.getMessage())
    handler.addFilter(evidence.MaskingFilter())
    logger.addHandler(handler)
    try:
        logger.warning("connecting with %s", "log-secret-value")
    finally:
        logger.removeHandler(handler)
    assert seen == [f"connecting with {evidence.MASK}"]


def test_report_tree_is_scrubbed(tmp_path):
    evidence.register_secret("tree-secret-value")
    (tmp_path / "a.json").write_text('{"message": "x tree-secret-value y"}')
    (tmp_path / "b.txt").write_text("clean")
    assert evidence.scrub_tree(tmp_path) == 1
    assert "tree-secret-value" not in (tmp_path / "a.json").read_text()
