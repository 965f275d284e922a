"""PG412/PG415: the full canonical validation set, on the stated hardware."""

from __future__ import annotations

import re

from auditor.challenge import CANONICAL_VAL_TOKENS
from auditor.checks.base import CheckRule, cite, log_location
from rules.core import Finding, Severity
from auditor.record import Record

VAL_TOKENS = CheckRule(
    "PG412",
    "val-tokens",
    "Evaluation covers the full canonical validation stream.",
    "RULEBOOK.md: full validation set, the canonical partition, no subsets",
)
HARDWARE = CheckRule("PG415", "hardware", "The logs show the run on 8xH100.", "README: 8xH100 SXM", severity=Severity.INFO)

# `tokenizer_path: ./data/tokenizers/fineweb_8192_bpe.model` in a log, or the script's default.
# Found as `.model` then read backwards over name characters, at most _NAME_MAX of them:
# the regex `([\w.-]+)\.model\b` was quadratic on a long run of word characters (a 50 KB
# hex literal took over a minute), this is linear in the text.
_MODEL_RE = re.compile(r"\.model\b")
_NAME_MAX = 200


def model_names(text: str) -> list[str]:
    """The NAME of every `NAME.model` in text, in order (NAME: letters, digits, `_.-`)."""
    names = []
    for m in _MODEL_RE.finditer(text):
        end = i = m.start()
        floor = max(0, end - _NAME_MAX)
        while i > floor and (text[i - 1].isalnum() or text[i - 1] in "_.-"):
            i -= 1
        if i < end:
            names.append(text[i:end])
    return names


def tokenizer_name(record: Record, run) -> str | None:
    """The tokenizer model a run used: the one its log names, else the one the record's
    script names; None when neither names exactly one known model."""
    for _n, text in run.context:
        if "tokenizer" in text.lower():
            found = model_names(text)
            if found:
                return found[-1]
    names = set()
    if record.script is not None:
        for layer in record.script.effective_layers:
            names |= set(model_names(layer.text[:400_000]))
    known = names & set(CANONICAL_VAL_TOKENS)
    return known.pop() if len(known) == 1 else None


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
    for run in record.logs:
        if run.val_tokens is None:
            continue
        tokenizer = tokenizer_name(record, run)
        canonical = CANONICAL_VAL_TOKENS.get(tokenizer or "")
        if canonical is None:
            continue
        n = int(run.val_tokens.value)
        # Evaluators drop the tail that does not fill a window; allow the last
        # partial sequence (<= 4096 tokens) but not a subset.
        if n < canonical - 4096 or n > canonical + 1:
            findings.append(
                VAL_TOKENS.finding(
                    Severity.ILLEGAL if n < canonical else Severity.WARNING,
                    f"{run.log}: val_tokens {n:,} but the canonical validation stream has {canonical:,} tokens "
                    f"with {tokenizer}.model",
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
