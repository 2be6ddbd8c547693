"""The requirement catalogue (`checks/requirements.yml`): every requirement of the guide."""

from __future__ import annotations

from functools import cache, cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator

from audit.yamlio import load_yaml

CATALOGUE_PATH = Path(__file__).resolve().parent.parent / "checks" / "requirements.yml"
ADVISORIES = "advisories.yml"  # beside the catalogue: what a reviewer expects beyond the guide (ADV-*)
Severity = Literal["blocker", "critical", "normal", "minor"]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str
    anchor: str


class Fact(BaseModel):
    """A requirement that is one value to compare: which probe reads it, under which key, and how
    the value compares (checks/values.py judges every such row on the hosts of its `roles`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    probe: str
    key: str
    compare: Literal["equal", "at_least", "at_most", "set"] = "equal"


class Requirement(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str
    section: str
    statement: str
    severity: Severity
    expected: Any = None
    roles: list[str] | None = None
    automatable: bool = True
    reason: str | None = None
    fact: Fact | None = None
    source: str | None = None  # advisories: where the finding comes from (gixy-ng rule, sslyze, baseline, guide defect)

    @property
    def advisory(self) -> bool:
        """Beyond the guide: shown apart, counted only by --gate=hardened."""
        return self.id.startswith("ADV-")

    @model_validator(mode="after")
    def _source_of_an_advisory(self) -> Requirement:
        if self.advisory and not self.source:
            raise ValueError(f"{self.id}: an advisory needs its `source`")
        return self

    @model_validator(mode="after")
    def _roles_of_a_fact(self) -> Requirement:
        if self.fact is not None and not self.roles:
            raise ValueError(f"{self.id}: a `fact` row needs `roles` (the hosts it is judged on)")
        return self

    @model_validator(mode="after")
    def _reason_when_not_automatable(self) -> Requirement:
        if not self.automatable and not self.reason:
            raise ValueError(f"{self.id}: automatable: false needs a `reason`")
        return self


class Catalogue(BaseModel):
    model_config = ConfigDict(extra="forbid")
    guide: str
    sections: dict[str, Section]
    requirements: list[Requirement]            # the guide's
    advisories: list[Requirement] = []         # beyond the guide (checks/advisories.yml)

    @model_validator(mode="after")
    def _consistent(self) -> Catalogue:
        seen: set[str] = set()
        for req in self.requirements + self.advisories:
            if req.advisory != (req in self.advisories):
                raise ValueError(f"{req.id}: ADV-* ids are advisories (advisories.yml), and only they")
            if req.id in seen:
                raise ValueError(f"duplicate requirement id {req.id}")
            seen.add(req.id)
            if req.section not in self.sections:
                raise ValueError(f"{req.id}: unknown section {req.section!r}")
        return self

    def __getitem__(self, req_id: str) -> Requirement:
        return self.by_id[req_id]

    @cached_property
    def by_id(self) -> dict[str, Requirement]:
        return {r.id: r for r in self.requirements + self.advisories}

    def section_of(self, req_id: str) -> Section:
        return self.sections[self.by_id[req_id].section]

    def guide_link(self, req_id: str) -> str:
        return f"{self.guide}#{self.section_of(req_id).anchor}"


@cache
def load_catalogue(path: Path = CATALOGUE_PATH) -> Catalogue:
    try:
        data = load_yaml(path.read_text())
        extra = path.with_name(ADVISORIES)
        if extra.exists():
            more = load_yaml(extra.read_text()) or {}
            data["sections"] = {**data.get("sections", {}), **(more.get("sections") or {})}
            data["advisories"] = more.get("advisories") or []
        return Catalogue(**data)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ValueError(f"{path}: {where}: {err['msg']}") from None
