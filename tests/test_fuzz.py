"""Fuzz the auditor with generated hostile input (issue 13): every input ends in a
verdict, never a traceback or an internal error. CI runs a slice (PGOLF_FUZZ_EXAMPLES
scales it); `python scripts/fuzz.py --examples 10000` runs the full set."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzzkit import check_layout, check_script, layouts, logs, scripts, submissions

SCALE = float(os.environ.get("PGOLF_FUZZ_SCALE", "1"))
FUZZ = settings(
    deadline=None,
    derandomize=True,  # CI is reproducible; scripts/fuzz.py explores with fresh seeds
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


def n(examples: int) -> int:
    return max(1, int(examples * SCALE))


@settings(FUZZ, max_examples=n(120))
@given(layouts())
def test_folder_layouts_end_in_a_verdict(files):
    assert check_layout(files) in (0, 1, 2, 3)


@settings(FUZZ, max_examples=n(80))
@given(scripts())
def test_scripts_end_in_a_verdict(data):
    assert check_script(data) in (0, 1, 2, 3)


@settings(FUZZ, max_examples=n(50))
@given(submissions(), st.booleans())
def test_submission_json_ends_in_a_verdict(data, with_script):
    files = {"submission.json": data}
    if with_script:
        files["train_gpt.py"] = b"import torch\n"
    assert check_layout(files) in (0, 1, 2, 3)


@settings(FUZZ, max_examples=n(50))
@given(st.lists(logs(), min_size=1, max_size=3))
def test_logs_end_in_a_verdict(texts):
    files = {f"train_seed{i}.log": text for i, text in enumerate(texts)}
    files["train_gpt.py"] = b"import torch\n"
    assert check_layout(files) in (0, 1, 2, 3)
