"""Moved: the host parsers live in the probe modules now (audit/probes/network.py, hardening.py,
checklist.py, maintenance.py). A thin re-export of the two shell parsers other probes still import
from here; import them from audit.probes.maintenance instead (this module goes with issue 16)."""

from audit.probes.maintenance import crontab_entries, script_commands

__all__ = ["crontab_entries", "script_commands"]
