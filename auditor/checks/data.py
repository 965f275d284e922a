"""PG412/PG415: the full canonical validation set, on the stated hardware."""

from __future__ import annotations

import re
from collections import Counter

from auditor.challenge import CANONICAL_VAL_TOKENS
from auditor.checks.base import CheckRule, cite, log_location
from auditor.findings import Finding, Severity
from auditor.record import Record

VAL_TOKENS = CheckRule(
    "PG412",
    "val-tokens",
    "Evaluation covers the full canonical validation stream.",
    "RULEBOOK.md: full validation set, the canonical partition, no subsets",
)
HARDWARE = CheckRule("PG415", "hardware", "The logs show the run on 8xH100.", "README: 8xH100 SXM")

TOKENIZER_RE = re.compile(r"(?:\bsp|_sp|fineweb10B_sp|vocab[_ ]?size[\"'=:, ]+)(\d{3,6})\b", re.IGNORECASE)


def tokenizer_vocab(record: Record) -> int | None:
    """Vocabulary size the record says it uses (sp8192, VOCAB_SIZE=8192...)."""
    texts = [record.readme or "", str(record.submission or "")]
    if record.script is not None:
        texts += [layer.text[:200_000] for layer in record.script.effective_layers]
    votes = Counter(int(m.group(1)) for text in texts for m in TOKENIZER_RE.finditer(text))
    return votes.most_common(1)[0][0] if votes else None


def check(record: Record) -> list[Finding]:
    findings: list[Finding] = []
    counted = {run.log: int(run.val_tokens.value) for run in record.logs if run.val_tokens is not None}
    if len(set(counted.values())) > 1:
        findings.append(
            VAL_TOKENS.finding(
                Severity.WARNING,
                "the seeds evaluated different numbers of validation tokens: "
                + ", ".join(f"{log}: {n:,}" for log, n in counted.items()),
                None,
                key="differ",
            )
        )
    vocab = tokenizer_vocab(record) if counted else None
    canonical = CANONICAL_VAL_TOKENS.get(vocab) if vocab else None
    for run in record.logs:
        if canonical is None or run.val_tokens is None:
            continue
        n = int(run.val_tokens.value)
        # Evaluators drop the tail that does not fill a window; allow the last
        # partial sequence (<= 4096 tokens) but not a subset.
        if n < canonical - 4096 or n > canonical + 1:
            findings.append(
                VAL_TOKENS.finding(
                    Severity.ILLEGAL if n < canonical else Severity.WARNING,
                    f"{run.log}: val_tokens {n:,} but the canonical SP{vocab} validation stream has {canonical:,} tokens",
                    log_location(run.log, run.val_tokens),
                    evidence=[cite(run.log, run.val_tokens)],
                    key=f"count:{run.log}",
                )
            )
    for run in record.logs:
        if run.hardware is not None and "H100" not in str(run.hardware.value):
            findings.append(
                HARDWARE.finding(
                    Severity.INFO,
                    f"{run.log}: ran on {run.hardware.value}, not 8xH100; times are not comparable",
                    log_location(run.log, run.hardware),
                    key=f"hw:{run.log}",
                )
            )
    return findings
