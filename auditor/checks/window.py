"""PG203 from the logs: training data read after the 600 s training window."""
from __future__ import annotations

from auditor.record import Record


def check(record: Record) -> list:
    return []
