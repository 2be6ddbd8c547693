"""Monitoring drifts (Prometheus, rules, Alertmanager): each breaks exactly the requirements it names."""

from __future__ import annotations

from . import PROM_RELOAD, Drift, edit_file

DRIFTS: tuple[Drift, ...] = (
    Drift("prometheus-rule-for", ("MON-ALERT-HIGH-ERROR-RATE",),
          "web1: HighErrorRate 'for: 5m' changed to 'for: 1m', Prometheus reloaded",
          *edit_file("web1", "/etc/prometheus/pynomaly_rules.yml",
                     r"'/alert: HighErrorRate/,/for:/s/for: 5m/for: 1m/'", PROM_RELOAD, "prometheus-rule-for")),
)
