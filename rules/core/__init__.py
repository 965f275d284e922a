"""The core every package depends on, and which depends on none of them.

`Finding`, `Location`, `Severity`, `Verdict` (findings.py) are what every engine
reports in; `RuleSpec` and `Registry` (registry.py) are every code it can report.
Static rules (`rules/`), the auditor (`auditor/`) and the reference stack import
it; it imports nothing of theirs, so importing it stays cheap (no libcst).
"""

from rules.core.findings import Finding, Location, Severity, Verdict, sort_findings, verdict_of
from rules.core.registry import Registry, RuleSpec

__all__ = ["Finding", "Location", "Registry", "RuleSpec", "Severity", "Verdict", "sort_findings", "verdict_of"]
