"""Optional corpus test: on the four seed submissions of issue 12 the probe reports a
measured violation (C1 flip or C4 count, with positions and nats) on the evaluation that
produced the score. Opt in with PGOLF_PROBE_SEEDS=1 and PGOLF_CORPUS (a mirror of
openai/parameter-golf); each seed's folder is read from it at the commit the labels
(PGOLF_LABELS, default ../shared/corpus/dev.json) give."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from rules.core import Severity

from scripts import corpus_labels

MIRROR = os.environ.get("PGOLF_CORPUS")
LABELS = Path(os.environ.get("PGOLF_LABELS", corpus_labels.DEFAULT_LABELS))
pytestmark = pytest.mark.skipif(os.environ.get("PGOLF_PROBE_SEEDS") != "1" or not MIRROR or not LABELS.is_file(),
                                reason="opt-in corpus test (PGOLF_PROBE_SEEDS=1, PGOLF_CORPUS=mirror): minutes of CPU")

# PR -> (entry that must be proven, env the run used when its logs do not show it, probe code)
CASES = {
    467: ("eval_val_ttt_lora", {}, "PG150"),  # final epoch of a 50-epoch per-document LoRA TTT counted
    568: ("eval_val_ttt_lora", {}, "PG150"),  # multi-epoch TTT, last epoch kept (the logs' headline)
    595: ("eval_val_sliding", {"TTT_ENABLED": "1"}, "PG150"),  # after main()'s AdamW pass over validation
    1150: ("eval_val_sliding_ttt", {}, "PG150"),  # SLOT fitted on the scored windows (the logs' headline)
}


@pytest.mark.parametrize("pr", sorted(CASES))
def test_seed_violation_is_measured_on_the_scoring_path(pr, tmp_path):
    pytest.importorskip("torch")
    from auditor.probes.runner import probe_record

    entry_of = next(e for e in json.loads(LABELS.read_text()) if e["pr"] == pr)
    folder = corpus_labels.extract_entry(Path(MIRROR), entry_of, tmp_path / "src", pr)
    entry, env, code = CASES[pr]
    r = probe_record(folder, timeout_s=280, env=env, tokenizer_cache=tmp_path)
    hits = [f for f in r.findings if f.code == code and f.severity == Severity.ILLEGAL and f.message.startswith(entry)]
    assert hits, [(f.code, f.severity.value, f.message) for f in r.findings]
    assert re.search(r"position \d+'s loss changed by \d", hits[0].message)
    e = next(e for e in r.data["entries"] if e["name"] == entry)
    assert e["c1"]["verified"] and e["c1"]["worst_position"] < e["c1"]["flipped"]
    if pr == 595:
        assert e["pre_steps"]["function"] == "main"
    if pr in (568, 1150):
        assert e["headline"]
