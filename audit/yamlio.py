"""YAML reading with libyaml when PyYAML has it (the catalogue alone takes ~1 s in pure Python)."""

from __future__ import annotations

from typing import Any

import yaml

LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(text: str) -> Any:
    """yaml.safe_load, with the C loader when available."""
    return yaml.load(text, Loader=LOADER)  # noqa: S506 - a SafeLoader
