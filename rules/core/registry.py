"""Every code the tool can report, with its documentation, in one registry.

Each engine declares its codes where it emits them: a static rule class in
`rules/`, a folder check, the PR gate, a probe or the rerun harness each hold a
:class:`RuleSpec`, and the spec makes the findings (``spec.finding(...)``), so a
finding's code and slug can only be ones the registry knows. `auditor.catalog`
gathers the specs into one :class:`Registry`; `pgolf rules`, `pgolf explain`,
SARIF's rule metadata and the README's tables all read it.
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass, replace
from typing import Iterable, Iterator

from rules.core.findings import Finding, Location, Severity

CODE = re.compile(r"^PG\d{3}$")
SLUG = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


@dataclass(frozen=True)
class RuleSpec:
    """A code's identity and documentation.

    ``severity`` is the most severe finding the code can report (a check may
    report less, e.g. on the non-record track); ``kinds`` says which engines
    report it ("static rule", "folder check", ...), filled in by the catalog.
    ``sections`` are (heading, text) pairs of the longer documentation and
    ``examples`` (caption, code) pairs.
    """

    code: str
    slug: str
    summary: str
    reference: str = "RULEBOOK.md: evidence rules"
    severity: Severity = Severity.ILLEGAL
    kinds: tuple[str, ...] = ()
    conditions: tuple[str, ...] = ()
    sections: tuple[tuple[str, str], ...] = ()
    examples: tuple[tuple[str, str], ...] = ()

    @property
    def rule(self) -> str:
        return f"{self.code} {self.slug}"

    def finding(
        self,
        severity: Severity,
        message: str,
        location: Location | None = None,
        evidence: tuple[str, ...] | list[str] = (),
        key: str = "",
    ) -> Finding:
        return Finding(
            code=self.code,
            slug=self.slug,
            severity=severity,
            message=message,
            location=location,
            evidence=tuple(evidence),
            reference=self.reference,
            key=key,
        )

    def merged(self, other: RuleSpec) -> RuleSpec:
        """One code reported by two engines (PG302 by the static rule and the folder
        check): the first spec's documentation, the other's summary as a section."""
        if other.slug != self.slug:
            raise ValueError(f"{self.code} is both {self.slug!r} and {other.slug!r}")
        extra = tuple((f"As a {kind}", f"{other.summary}\n\nRuling: {other.reference}") for kind in other.kinds)
        return replace(
            self,
            severity=min(self.severity, other.severity, key=lambda s: s.rank),
            kinds=self.kinds + tuple(k for k in other.kinds if k not in self.kinds),
            sections=self.sections + extra,
        )

    def page(self) -> str:
        """What `pgolf explain` prints: header, summary, sections, examples."""
        out = [f"# {self.code} {self.slug}", "", self.summary, "",
               f"Severity: {self.severity.value}   Reported by: {', '.join(self.kinds) or '-'}"
               f"   Conditions: {', '.join(self.conditions) or '-'}"]
        if self.reference:
            out.append(f"Ruling: {self.reference}")
        for heading, text in self.sections:
            out += ["", f"## {heading}", "", text]
        for caption, code in self.examples:
            out += ["", f"## {caption}", "", "```python", textwrap.dedent(code).strip(), "```"]
        return "\n".join(out) + "\n"


class Registry:
    """Specs by code, one per code (engines sharing a code merge), looked up by
    code (any case), slug, or ``"CODE slug"``."""

    def __init__(self, specs: Iterable[RuleSpec]):
        by_code: dict[str, RuleSpec] = {}
        for spec in specs:
            if not CODE.match(spec.code) or not SLUG.match(spec.slug):
                raise ValueError(f"bad code or slug: {spec.code!r} {spec.slug!r}")
            by_code[spec.code] = by_code[spec.code].merged(spec) if spec.code in by_code else spec
        self._specs = [by_code[c] for c in sorted(by_code)]
        self._by_slug: dict[str, RuleSpec] = {}
        for spec in self._specs:
            if spec.slug in self._by_slug:
                raise ValueError(f"slug {spec.slug!r} names both {self._by_slug[spec.slug].code} and {spec.code}")
            self._by_slug[spec.slug] = spec

    def __iter__(self) -> Iterator[RuleSpec]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def get(self, name: str) -> RuleSpec | None:
        name = name.strip()
        code, _, slug = name.partition(" ")
        spec = next((s for s in self._specs if s.code == code.upper()), None) or self._by_slug.get(name.lower())
        if spec is not None and slug and slug.strip() != spec.slug:
            return None
        return spec
