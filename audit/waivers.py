"""Waivers: a requirement (optionally on some hosts) is knowingly not met, until an expiry date.

File format (YAML)::

    waivers:
      - requirement: PRE-OS-RELEASE
        hosts: [web1, db1]          # optional; all hosts when absent
        justification: "Debian 12 stands in for Ubuntu in the reference deployment"
        expires: 2027-06-30
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from audit.yamlio import load_yaml


class WaiverError(Exception):
    """The waiver file is malformed; the message names the file and the entry."""


class Waiver(BaseModel):
    model_config = ConfigDict(extra="forbid")
    requirement: str
    hosts: list[str] | None = None
    justification: str = Field(min_length=10)
    expires: dt.date

    def covers(self, req_id: str, host: str | None) -> bool:
        return self.requirement == req_id and (self.hosts is None or host is None or host in self.hosts)

    def expired(self, today: dt.date | None = None) -> bool:
        return (today or dt.date.today()) > self.expires


class WaiverFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    waivers: list[Waiver] = []


def load_waivers(path: str | Path, known_ids: set[str] | None = None) -> list[Waiver]:
    path = Path(path)
    try:
        data = load_yaml(path.read_text()) or {}
        waivers = WaiverFile(**data).waivers
    except OSError as exc:
        raise WaiverError(f"{path}: cannot read waiver file: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise WaiverError(f"{path}: not valid YAML: {exc}") from None
    except (ValidationError, TypeError) as exc:
        if isinstance(exc, ValidationError):
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise WaiverError(f"{path}: {where}: {err['msg']}") from None
        raise WaiverError(f"{path}: expected a mapping with a `waivers` list") from None
    if known_ids is not None:
        for i, w in enumerate(waivers):
            if w.requirement not in known_ids:
                raise WaiverError(f"{path}: waivers.{i}.requirement: unknown requirement id {w.requirement!r}")
    return waivers


def find_waiver(waivers: list[Waiver], req_ids: list[str], host: str | None) -> tuple[list[Waiver], list[Waiver]]:
    """(active, expired) waivers of a check; both empty unless EVERY requirement it verifies is covered.

    A check that verifies several requirements is waived only if each of them is waived, so that
    waiving one cannot hide a failure of another. A requirement with an active waiver ignores its
    expired ones (the waiver was renewed); one with only expired waivers makes the check fail.
    """
    active: list[Waiver] = []
    expired: list[Waiver] = []
    for req in req_ids:
        hits = [w for w in waivers if w.covers(req, host)]
        live = [w for w in hits if not w.expired()]
        if live:
            active.extend(live)
        elif hits:
            expired.extend(hits)
        else:
            return [], []
    return active, expired
