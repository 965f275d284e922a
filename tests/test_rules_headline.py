"""The headline path and the evidence that a switched-off path ran.

Findings on the evaluation whose line the logs report are judged fully, on another
evaluation they are warnings, in code nothing calls they are info. A switched-off
path counts as run only on a line that path alone prints, or on README text about it.
All snippets are written for these tests."""

from __future__ import annotations

from rules.core import Severity
from rules import LintConfig, lint_source

_NGRAM = '''
def eval_ngram(val_tokens, model_probs, order):
    ctx_counts, full_counts = {}, {}
    nll = 0.0
    for i in range(order, len(val_tokens)):
        ctx_key = hash(tuple(val_tokens[i - order:i])) % 1048576
        full_key = (ctx_key ^ (val_tokens[i] * 1000003)) % 1048576
        p_ng = full_counts.get(full_key, 0) / max(ctx_counts.get(ctx_key, 0), 1)
        nll += -math.log(0.8 * model_probs[i] + 0.2 * p_ng)
        full_counts[full_key] = full_counts.get(full_key, 0) + 1
    return nll
'''

_EVAL = '''
@torch.no_grad()
def eval_val(model, val_tokens):
    loss_sum = 0.0
    for i in range(0, len(val_tokens) - 1025, 1024):
        chunk = val_tokens[i:i + 1025]
        loss_sum += model(chunk[:-1], chunk[1:]).item()
    return loss_sum
'''

TWO_EVALS = '''import math
import torch

def log0(msg):
    print(msg)
''' + _NGRAM + _EVAL + '''
def main():
    val_tokens = torch.load("data/fineweb_val_000000.bin")
    model = torch.nn.Linear(1, 1)
    val_loss = eval_val(model, val_tokens)
    log0(f"final_sliding val_loss:{val_loss:.4f} val_bpb:{val_loss / 2:.4f}")
    probs = model(val_tokens)
    ng = eval_ngram(val_tokens, probs, 5)
    log0(f"ngram_probe val_loss:{ng:.4f} val_bpb:{ng / 2:.4f}")

if __name__ == "__main__":
    main()
'''


def _one(fs, code):
    got = [f for f in fs if f.code == code]
    assert len(got) == 1, [(f.code, f.severity, f.message) for f in fs]
    return got[0]


def _lint(src, ev=(), headlines=(), env=None):
    return lint_source(src, file="train_gpt.py", config=LintConfig(
        env=dict(env or {}), evidence_lines=list(ev), headlines=list(headlines)))


# ---------------------------------------------------------------- the headline path

def test_finding_on_another_evaluation_is_a_warning():
    fs = _lint(TWO_EVALS, headlines=[("seed1.log", 90, "final_sliding val_loss:2.1000 val_bpb:1.0500")])
    ng = _one(fs, "PG101")
    assert ng.severity == Severity.WARNING
    assert "off the headline path" in ng.message
    ev = " ".join(ng.evidence)
    assert "eval_val" in ev and "seed1.log:90" in ev and "eval_ngram" in ev


def test_finding_on_the_headline_evaluation_is_judged_fully():
    fs = _lint(TWO_EVALS, headlines=[("seed1.log", 91, "ngram_probe val_loss:2.0000 val_bpb:1.0000")])
    assert _one(fs, "PG101").severity == Severity.ILLEGAL


def test_unknown_headline_falls_back_to_reachable_and_says_so():
    for heads in ([], [("seed1.log", 5, "final_roundtrip_exact val_loss:2.1 val_bpb:1.05")]):
        ng = _one(_lint(TWO_EVALS, headlines=heads), "PG101")
        assert ng.severity == Severity.ILLEGAL
        assert any(e.startswith("headline path: not identified") for e in ng.evidence)


def test_an_evaluation_that_trains_before_the_headline_stays_on_its_path():
    # TTT on the validation tokens logs its own loss, then the headline eval runs on
    # the adapted weights: the update is part of what the headline measures
    src = '''import torch

def log0(msg):
    print(msg)

def ttt_on_val(model, val_tokens, epochs):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    total_loss = 0.0
    for ep in range(epochs):
        for i in range(0, len(val_tokens) - 1025, 1024):
            chunk = val_tokens[i:i + 1025]
            loss = model(chunk[:-1], chunk[1:])
            loss.backward()
            opt.step()
            total_loss += loss.item()
    return total_loss
''' + _EVAL + '''
def main():
    val_tokens = torch.load("data/fineweb_val_000000.bin")
    model = torch.nn.Linear(1, 1)
    tl = ttt_on_val(model, val_tokens, 3)
    log0(f"ttt:done loss:{tl:.4f}")
    val_loss = eval_val(model, val_tokens)
    log0(f"final_sliding val_loss:{val_loss:.4f} val_bpb:{val_loss / 2:.4f}")

if __name__ == "__main__":
    main()
'''
    fs = _lint(src, headlines=[("seed1.log", 90, "final_sliding val_loss:2.1000 val_bpb:1.0500")])
    assert _one(fs, "PG201").severity == Severity.ILLEGAL


def test_code_nothing_calls_is_info_unless_its_own_log_line_shows_it_ran():
    src = TWO_EVALS.replace('''    probs = model(val_tokens)
    ng = eval_ngram(val_tokens, probs, 5)
    log0(f"ngram_probe val_loss:{ng:.4f} val_bpb:{ng / 2:.4f}")
''', "").replace("    return nll\n", '    log0(f"ngram_cache:done nll:{nll:.4f}")\n    return nll\n')
    assert _one(_lint(src), "PG101").severity == Severity.INFO
    # README text about the technique cannot make a function nothing calls run
    readme = [("README.md", 4, "We mix a hashed n-gram cache into the model's probabilities.")]
    assert _one(_lint(src, readme), "PG101").severity == Severity.INFO
    ran = _one(_lint(src, [("seed1.log", 77, "ngram_cache:done nll:1234.5678")]), "PG101")
    assert ran.severity == Severity.ILLEGAL and any("seed1.log:77" in e for e in ran.evidence)


# ---------------------------------------------------------------- evidence for a switched-off path

GATED_TTT = '''import os
import torch

class Hyperparameters:
    ttt_enabled = bool(int(os.environ.get("TTT_ENABLED", "0")))
    ttt_mode = os.environ.get("TTT_MODE", "global")
    swa_every = int(os.environ.get("SWA_EVERY", "50"))

def log0(msg):
    print(msg)
''' + _EVAL + '''
def main():
    args = Hyperparameters()
    val_tokens = torch.load("data/fineweb_val_000000.bin")
    model = torch.nn.Linear(1, 1)
    n_avg = 29
    log0(f"swa:applying averaged {n_avg} checkpoints every {args.swa_every} steps")
    if args.ttt_mode == "global" and args.ttt_enabled:
        log0(f"ttt:global epochs averaged over {n_avg} chunks")
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        for ep in range(10):
            for i in range(0, len(val_tokens) - 1025, 1024):
                chunk = val_tokens[i:i + 1025]
                loss = model(chunk[:-1], chunk[1:])
                loss.backward()
                opt.step()
    val_loss = eval_val(model, val_tokens)
    log0(f"final_sliding val_loss:{val_loss:.4f} val_bpb:{val_loss / 2:.4f}")

if __name__ == "__main__":
    main()
'''


def test_a_word_another_path_prints_does_not_upgrade():
    # `averaged` is in the gated TTT message, but this line comes from the SWA log call
    fs = _lint(GATED_TTT, [("seed1.log", 40, "swa:applying averaged 29 checkpoints every 50 steps")])
    ttt = _one(fs, "PG201")
    assert ttt.severity == Severity.WARNING
    assert not any("seed1.log:40" in e for e in ttt.evidence)


def test_the_gated_paths_own_log_line_upgrades_and_is_cited():
    fs = _lint(GATED_TTT, [("seed1.log", 40, "swa:applying averaged 29 checkpoints every 50 steps"),
                           ("seed1.log", 61, "ttt:global epochs averaged over 29 chunks")])
    ttt = _one(fs, "PG201")
    assert ttt.severity == Severity.ILLEGAL
    assert any(e.startswith("seed1.log:61:") and "only that path makes" in e for e in ttt.evidence), ttt.evidence


def test_readme_naming_the_switched_path_upgrades():
    ev = [("README.md", 1, "# 10L + global TTT, 10 epochs over the validation set")]
    ttt = _one(_lint(GATED_TTT, ev), "PG201")
    assert ttt.severity == Severity.ILLEGAL
    assert any(e.startswith("README.md:1:") and "ttt" in e for e in ttt.evidence)


def test_readme_naming_only_part_of_the_switch_or_saying_it_is_off_does_not_upgrade():
    for line in ("We evaluate with LoRA TTT per document.",          # `global` missing
                 "Global TTT is disabled for the submitted runs.",   # said to be off
                 "Set TTT_MODE=global to try it"):                   # the setting's name, not use
        assert _one(_lint(GATED_TTT, [("README.md", 3, line)]), "PG201").severity == Severity.WARNING, line


def test_readme_words_that_another_path_logs_do_not_upgrade():
    src = GATED_TTT.replace('log0(f"swa:applying averaged', 'log0(f"ttt global: skipped; swa:applying averaged')
    ev = [("README.md", 1, "# 10L + global TTT, 10 epochs over the validation set")]
    assert _one(_lint(src, ev), "PG201").severity == Severity.WARNING


SLOT_PIECE = '''import os
import torch
import torch.nn.functional as F

class Hyperparameters:
    slot_enabled = bool(int(os.environ.get("SLOT_ENABLED", "0")))
    slot_lr = float(os.environ.get("SLOT_LR", "0.001"))

def log0(msg):
    print(msg)

def eval_windows(args, model, val_tokens, seq_len=64):
    use_delta = args.slot_enabled
    log0(f"windows:start n={len(val_tokens) // seq_len}"
         f"{f' delta_lr={args.slot_lr}' if use_delta else ''}")
    total = 0.0
    for ws in range(0, len(val_tokens) - seq_len - 1, seq_len):
        x = val_tokens[ws:ws + seq_len]
        y = val_tokens[ws + 1:ws + seq_len + 1]
        h = model.hidden(x)
        if use_delta:
            delta = torch.zeros(1, 1, h.size(-1), requires_grad=True)
            opt = torch.optim.AdamW([delta], lr=args.slot_lr)
            for _ in range(3):
                loss = F.cross_entropy(model.head(h + delta).flatten(0, 1), y.flatten())
                loss.backward()
                opt.step()
            h = h + delta.detach()
        with torch.no_grad():
            total += F.cross_entropy(model.head(h), y, reduction="sum").item()
    return total

def main():
    args = Hyperparameters()
    val_tokens = torch.load("data/fineweb_val_000000.bin")
    model = torch.nn.Linear(1, 1)
    nll = eval_windows(args, model, val_tokens)
    log0(f"final_windows val_loss:{nll:.4f}")

if __name__ == "__main__":
    main()
'''


def test_a_message_piece_printed_only_when_the_switch_is_on_upgrades():
    base = _one(_lint(SLOT_PIECE), "PG104")
    assert base.severity == Severity.WARNING
    off = _one(_lint(SLOT_PIECE, [("seed1.log", 12, "windows:start n=969088")]), "PG104")
    assert off.severity == Severity.WARNING
    on = _one(_lint(SLOT_PIECE, [("seed1.log", 12, "windows:start n=969088 delta_lr=0.003")]), "PG104")
    assert on.severity == Severity.ILLEGAL
    assert any(e.startswith("seed1.log:12:") and "use_delta" in e for e in on.evidence), on.evidence


def test_a_log_line_reporting_the_switch_value_upgrades():
    src = GATED_TTT.replace(
        'log0(f"swa:applying averaged {n_avg} checkpoints every {args.swa_every} steps")',
        'log0(f"config: swa_every={args.swa_every} global_ttt={args.ttt_enabled} ttt_mode={args.ttt_mode}")')
    off = _one(_lint(src, [("seed1.log", 2, "config: swa_every=50 global_ttt=False ttt_mode=global")]), "PG201")
    assert off.severity == Severity.WARNING
    on = _one(_lint(src, [("seed1.log", 2, "config: swa_every=50 global_ttt=True ttt_mode=global")]), "PG201")
    assert on.severity == Severity.ILLEGAL
    assert any(e.startswith("seed1.log:2:") and "ttt_enabled=True" in e for e in on.evidence), on.evidence


def test_a_printing_helper_handed_the_evaluator_decides_by_its_label():
    src = TWO_EVALS.replace('''    val_loss = eval_val(model, val_tokens)
    log0(f"final_sliding val_loss:{val_loss:.4f} val_bpb:{val_loss / 2:.4f}")
    probs = model(val_tokens)
    ng = eval_ngram(val_tokens, probs, 5)
    log0(f"ngram_probe val_loss:{ng:.4f} val_bpb:{ng / 2:.4f}")
''', '''    timed("final_sliding", eval_val, model, val_tokens)
    timed("ngram_probe", eval_ngram, val_tokens, model(val_tokens), 5)

def timed(label, fn, *args):
    loss = fn(*args)
    log0(f"{label} val_loss:{loss:.4f} val_bpb:{loss / 2:.4f}")
''')
    head = [("seed1.log", 90, "final_sliding val_loss:2.1000 val_bpb:1.0500")]
    assert _one(_lint(src, headlines=head), "PG101").severity == Severity.WARNING
    head = [("seed1.log", 91, "ngram_probe val_loss:2.0000 val_bpb:1.0000")]
    assert _one(_lint(src, headlines=head), "PG101").severity == Severity.ILLEGAL
