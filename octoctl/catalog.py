"""The symptom catalog (catalog.yml): ten procedures, their symptoms, alerts, scenarios and escalation level."""

from __future__ import annotations

import re
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from octoctl.errors import ExitCode, OctoctlError

FixMode = Literal["auto", "disruptive", "report"]


class Scenario(BaseModel):
    """One of the seed's scenarios of a procedure."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[A-Z]$")
    title: str = Field(min_length=1)
    fix: FixMode
    summary: str = ""

    @property
    def auto_fixable(self) -> bool:
        """octoctl can fix it (possibly after approval)."""
        return self.fix != "report"

    @property
    def disruptive(self) -> bool:
        return self.fix == "disruptive"

    @property
    def report_only(self) -> bool:
        return self.fix == "report"


class Procedure(BaseModel):
    """A troubleshooting procedure and the role that carries it out."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z][a-z_]*$")
    short: str = Field(pattern=r"^[a-z][a-z0-9_-]*$")
    title: str = Field(min_length=1)
    level: Literal["L1", "L2", "L3"]
    rank: int = Field(ge=1)
    aliases: tuple[str, ...] = ()
    alerts: tuple[str, ...] = ()
    symptoms: tuple[str, ...] = Field(min_length=1)
    keywords: tuple[str, ...] = ()
    messages: tuple[str, ...] = Field(
        default=(), description="regexes (case-insensitive) of error messages people paste; a match is decisive"
    )
    components: tuple[str, ...] = Field(
        default=(), description="the stack components this procedure concerns (keys of the catalog's components); "
        "empty: every component"
    )
    scenarios: tuple[Scenario, ...] = Field(min_length=1)

    @property
    def role(self) -> str:
        """The role name in the collection (CONVENTIONS.md: one role per procedure, named after it)."""
        return self.name

    @property
    def fqcn(self) -> str:
        return f"octollm.remediation.{self.role}"

    def scenario(self, scenario_id: str) -> Scenario | None:
        for scenario in self.scenarios:
            if scenario.id == scenario_id.upper():
                return scenario
        return None

    @field_validator("scenarios")
    @classmethod
    def _unique_scenarios(cls, scenarios: tuple[Scenario, ...]) -> tuple[Scenario, ...]:
        ids = [s.id for s in scenarios]
        if len(set(ids)) != len(ids) or ids != sorted(ids):
            raise ValueError(f"scenario ids must be unique and in order, got {ids}")
        return scenarios

    @field_validator("messages")
    @classmethod
    def _message_patterns(cls, messages: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in messages:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"message pattern {pattern!r} is not a valid regex: {exc}") from exc
        return messages

    def message_match(self, text: str) -> str | None:
        """The first message pattern found in ``text``, or None."""
        for pattern in self.messages:
            if re.search(pattern, text, re.IGNORECASE):
                return pattern
        return None

    @field_validator("alerts")
    @classmethod
    def _alert_names(cls, alerts: tuple[str, ...]) -> tuple[str, ...]:
        for alert in alerts:
            if not re.fullmatch(r"[A-Z][A-Za-z0-9]+", alert):
                raise ValueError(f"alert name {alert!r} is not a Prometheus-style CamelCase name")
        return alerts


class Catalog(BaseModel):
    """All procedures, ordered by rank."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    version: Literal[2]
    components: dict[str, tuple[str, ...]] = Field(
        default_factory=dict, description="component -> the words that name it in a page (redis: [redis, 6379])"
    )
    procedures: tuple[Procedure, ...]

    @field_validator("procedures")
    @classmethod
    def _consistent(cls, procedures: tuple[Procedure, ...]) -> tuple[Procedure, ...]:
        names = [p.name for p in procedures]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate procedure names in {names}")
        ranks = sorted(p.rank for p in procedures)
        if ranks != list(range(1, len(ranks) + 1)):
            raise ValueError(f"ranks must be 1..{len(ranks)} without gaps or repeats, got {ranks}")
        seen: dict[str, str] = {}
        for procedure in procedures:
            for word in (procedure.name, procedure.short, *procedure.aliases):
                key = normalize_name(word)
                if seen.get(key, procedure.name) != procedure.name:
                    raise ValueError(f"{word!r} selects both {seen[key]} and {procedure.name}")
                seen[key] = procedure.name
        return tuple(sorted(procedures, key=lambda p: p.rank))

    @field_validator("procedures")
    @classmethod
    def _known_components(cls, procedures: tuple[Procedure, ...], info: Any) -> tuple[Procedure, ...]:
        known = set((info.data or {}).get("components") or {})
        for procedure in procedures:
            unknown = [c for c in procedure.components if c not in known]
            if unknown:
                raise ValueError(f"{procedure.name} names unknown components {unknown} (known: {sorted(known)})")
        return procedures

    def components_in(self, text: str) -> set[str]:
        """The components a text names (whole words, case-insensitive)."""
        words = set(re.findall(r"[a-z0-9_.-]+", text.lower()))
        words |= {w.strip(".-_") for w in words}
        return {name for name, names in self.components.items() if any(n.lower() in words for n in names)}

    def get(self, name: str) -> Procedure:
        for procedure in self.procedures:
            if procedure.name == name:
                return procedure
        raise KeyError(name)

    def by_name(self, word: str) -> Procedure | None:
        """The procedure a name, role name, short name or alias selects directly."""
        key = normalize_name(word)
        for procedure in self.procedures:
            if key in {normalize_name(w) for w in (procedure.name, procedure.short, *procedure.aliases)}:
                return procedure
        return None

    def by_alert(self, alert: str) -> list[Procedure]:
        wanted = alert.strip().lower()
        return [p for p in self.procedures if wanted in {a.lower() for a in p.alerts}]

    def names(self) -> list[str]:
        return [p.name for p in self.procedures]

    def in_rank_order(self, procedures: list[Procedure]) -> list[Procedure]:
        unique = {p.name: p for p in procedures}
        return sorted(unique.values(), key=lambda p: p.rank)


def normalize_name(word: str) -> str:
    """``Data-Corruption`` and ``data corruption`` both become ``data_corruption``."""
    return re.sub(r"[\s\-]+", "_", word.strip().lower())


def parse_catalog(text: str, source: str = "catalog.yml") -> Catalog:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise OctoctlError(f"{source} is not valid YAML: {exc}", ExitCode.INTERNAL) from exc
    try:
        return Catalog.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise OctoctlError(
            f"{source} is invalid ({exc.error_count()} errors), first at {where}: {first['msg']}", ExitCode.INTERNAL
        ) from exc


def load_catalog(path: Path | None = None) -> Catalog:
    """Load and validate a catalog; by default the one shipped in the package."""
    if path is not None:
        return parse_catalog(path.read_text(encoding="utf-8"), str(path))
    return _packaged_catalog()


@lru_cache(maxsize=1)
def _packaged_catalog() -> Catalog:
    text = resources.files("octoctl").joinpath("catalog.yml").read_text(encoding="utf-8")
    return parse_catalog(text)
