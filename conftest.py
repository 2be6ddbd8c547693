"""Root conftest: the audit plugin turns `pytest --hosts=NAME` into an audit of inventories/NAME.yml."""

pytest_plugins = ["audit.plugin"]
