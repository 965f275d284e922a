"""Evidence from training logs: one :class:`RunEvidence` per seed's log.

Logs drift a lot between records, so this parser is tolerant and never raises.
Everything it extracts is a :class:`Cited` value (or a :class:`Metric`) that
remembers the 1-based line number and the stripped line text it came from, so a
finding can quote the log line. What it cannot find goes into
``RunEvidence.missing`` as a human sentence ("could not find headline val_bpb
in train_seed42.log"); what is wrong with the log itself (empty, truncated,
binary, not UTF-8, malformed ``:::PGOLF`` JSON, contradictory values) goes into
``RunEvidence.problems``.

- :mod:`.model`: the dataclasses (``Cited``, ``Metric``, ``RunEvidence``).
- :mod:`.patterns`: the scraped log forms and their regexes.
- :mod:`.structured`: the ``:::PGOLF {json}`` schema, read and emitted.
- :mod:`.names`: which file names are logs, and the seed a name carries.
- :mod:`.parse`: the one-pass parser, the headline rule and eval-time totals.
"""

from auditor.evidence.model import Cited, Metric, RunEvidence, headline_lines
from auditor.evidence.names import looks_like_log, seed_from_filename
from auditor.evidence.parse import parse_log_file, parse_log_text
from auditor.evidence.structured import PGOLF_PREFIX, format_pgolf_line

__all__ = [
    "PGOLF_PREFIX",
    "Cited",
    "Metric",
    "RunEvidence",
    "format_pgolf_line",
    "headline_lines",
    "looks_like_log",
    "parse_log_file",
    "parse_log_text",
    "seed_from_filename",
]
