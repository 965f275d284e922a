"""PG102 target-selected-scorer: oracle selection between losses of the realized target,
found by value, and the near misses that must stay quiet. Every snippet is written
here; the names are deliberately plain or misleading, so that only the values decide."""

from __future__ import annotations

import textwrap

import pytest

from rules.core import Severity
from rules import lint_source


def _pg102(code: str) -> list:
    return [f for f in lint_source(textwrap.dedent(code), file="snippet.py") if f.code == "PG102"]


FLAGGED = {
    # the comparison stored in a variable first, an `if` on it, the kept value summed
    "stored_compare_if": ('''
        import torch.nn.functional as F
        def run(logits, probs_b, y, lam):
            u = F.cross_entropy(logits, y, reduction="none")
            q = probs_b.gather(-1, y[:, None]).squeeze(-1)
            v = -(lam * q + (1 - lam) * (-u).exp()).log()
            ok = v < u
            acc = 0.0
            for i in range(len(u)):
                if ok[i]:
                    acc += v[i].item()
                else:
                    acc += u[i].item()
            return acc
    ''', 10),
    # an early exit: keep the mixed loss only when it is not worse
    "early_exit": ('''
        import math
        def run(table, logits, val_tokens, lam):
            y = val_tokens[1:]
            logp_rows = logits.log_softmax(-1).tolist()
            total = 0.0
            for i in range(len(y)):
                a = -logp_rows[i][y[i]]
                c = table.get(y[i], 1e-9)
                b = -math.log(lam * c + (1 - lam) * math.exp(-a))
                if b >= a:
                    total += a
                    continue
                total += b
            return total
    ''', 11),
    # torch.where with the comparison inline, through an import alias
    "where_inline": ('''
        import torch as tt
        import torch.nn.functional as F
        def run(logits_a, logits_b, y):
            a = F.cross_entropy(logits_a, y, reduction="none")
            b = F.cross_entropy(logits_b, y, reduction="none")
            return tt.where(a < b, a, b).sum()
    ''', 7),
    # element-wise minimum of a model loss and a cache loss
    "minimum": ('''
        import numpy as np
        def run(logits, cache_p, val_tokens):
            y = val_tokens[1:]
            logp = logits.log_softmax(-1)
            s = -logp[np.arange(len(y)), y]
            t = -np.log(cache_p[np.arange(len(y)), y])
            return np.minimum(s, t).sum()
    ''', 8),
    # a boolean mask: replace the model loss where the other one is lower
    "mask_store": ('''
        import torch
        def run(lp_a, lp_b, val_tokens):
            y = val_tokens[1:]
            ya = lp_a.log_softmax(-1).gather(-1, y[:, None]).squeeze(-1)
            yb = lp_b.log_softmax(-1).gather(-1, y[:, None]).squeeze(-1)
            out = -ya
            m = yb > ya
            out[m] = -yb[m]
            return out.sum()
    ''', 9),
    # mask arithmetic: m * a + (1 - m) * b
    "mask_arith": ('''
        import torch.nn.functional as F
        def run(h1, h2, y):
            a = F.cross_entropy(h1, y, reduction="none")
            b = F.cross_entropy(h2, y, reduction="none")
            m = (a <= b).float()
            return (m * a + (1 - m) * b).sum()
    ''', 7),
    # a conditional expression per token
    "ifexp": ('''
        import torch.nn.functional as F
        def run(h1, h2, y):
            a = F.cross_entropy(h1, y, reduction="none").tolist()
            b = F.cross_entropy(h2, y, reduction="none").tolist()
            s = 0.0
            for u, v in zip(a, b):
                s += u if u < v else v
            return s
    ''', 8),
    # the best of several adaptation passes per document: min over stacked pass losses
    "best_pass_stacked": ('''
        import torch
        def run(model, val_tokens, n, opt, k):
            grand = 0.0
            for s in range(0, len(val_tokens) - 1, n):
                x, y = val_tokens[s:s + n], val_tokens[s + 1:s + n + 1]
                per_pass = []
                for _ in range(k):
                    out = model(x, y)
                    per_pass.append(out.detach())
                    out.mean().backward()
                    opt.step()
                grand += torch.stack(per_pass).min(0).values.sum().item()
            return grand
    ''', 13),
    # the best pass kept by a running comparison and copied into the reported total
    "best_pass_running": ('''
        def run(model, val_tokens, n, opt, k):
            tot = 0.0
            for s in range(0, len(val_tokens) - 1, n):
                x, y = val_tokens[s:s + n], val_tokens[s + 1:s + n + 1]
                keep = float("inf")
                for _ in range(k):
                    cur = model(x, y).sum()
                    if cur.item() < keep:
                        keep = cur.item()
                    cur.backward()
                    opt.step()
                tot += keep
            return tot
    ''', 9),
    # under a gate on a list that starts empty and is filled by appends: the gate is not
    # a constant False (the finding stays illegal, not a switched-off warning)
    "gate_on_filled_list": ('''
        import torch
        import torch.nn.functional as F
        def run(logits, logits_b, y, conf):
            nll = F.cross_entropy(logits, y, reduction="none")
            lp_other = logits_b.log_softmax(-1)
            picked = []
            for i in range(len(y)):
                if conf[i] < 0.5:
                    picked.append(i)
            if picked:
                idx = torch.tensor(picked)
                alt = -lp_other[idx].gather(-1, y[idx][:, None]).squeeze(-1)
                nll[idx] = torch.minimum(nll[idx], alt)
            return nll.sum()
        def main(logits, logits_b, y, conf):
            print(run(logits, logits_b, y, conf))
    ''', 14),
    # a mixing weight chosen by an `if` on a class of the realized token
    "class_gate_if": ('''
        import math
        def run(logits, cache_p, val_tokens, starts):
            y = val_tokens[1:]
            p = logits.softmax(-1)
            total = 0.0
            for i in range(len(y)):
                if starts[y[i]]:
                    w = 0.4
                else:
                    w = 0.05
                total += -math.log(w * cache_p[i] + (1 - w) * p[i, y[i]])
            return total
    ''', 8),
    # a helper returns the per-token minimum; its caller adds it to the total
    "helper_returns_min": ('''
        import torch
        import torch.nn.functional as F
        def pick(h1, h2, y):
            return torch.min(F.cross_entropy(h1, y, reduction="none"), F.cross_entropy(h2, y, reduction="none"))
        def run(batches):
            acc = 0.0
            for h1, h2, y in batches:
                acc += pick(h1, h2, y).sum().item()
            return acc
        def main(batches):
            print(run(batches))
    ''', 5),
}

QUIET = {
    # training keeps its best validation loss for a log line; the reported score is a
    # separate evaluation
    "train_returns_best": '''
        import torch.nn.functional as F
        def train(model, opt, batches, val_x, val_y, steps):
            best = float("inf")
            for step in range(steps):
                x, y = batches[step]
                F.cross_entropy(model(x), y).backward()
                opt.step()
                v = F.cross_entropy(model(val_x), val_y).item()
                if v < best:
                    best = v
            return model, best
        def evaluate(model, val_x, val_y):
            return F.cross_entropy(model(val_x), val_y, reduction="sum").item()
        def main(model, opt, batches, val_x, val_y):
            model, best = train(model, opt, batches, val_x, val_y, 100)
            print("best during training", best)
            print("val", evaluate(model, val_x, val_y))
    ''',
    # a minimum over the whole vocabulary (clamping a distribution), then normalised and
    # scored once: no realized target in the choice
    "vocab_clamp": '''
        import torch
        def run(p_model, p_cache, y):
            p = torch.minimum(p_model, 2 * p_cache) + 1e-6
            p = p / p.sum(-1, keepdim=True)
            return -p.gather(-1, y[:, None]).log().sum()
    ''',
    # a loss clipped against a constant
    "clip_constant": '''
        import torch
        import torch.nn.functional as F
        def run(logits, y):
            nll = F.cross_entropy(logits, y, reduction="none")
            total = torch.clamp(nll, max=30.0).sum() + min(nll.max().item(), 50.0) * 0
            return torch.minimum(nll, torch.full_like(nll, 30.0)).sum() + total
    ''',
    # choosing the better of two configurations on training batches
    "config_choice_train": '''
        import torch.nn.functional as F
        def pick(model_a, model_b, batches):
            best_cfg, best = None, float("inf")
            for x, y in batches:
                la = F.cross_entropy(model_a(x), y)
                lb = F.cross_entropy(model_b(x), y)
                if la < lb:
                    best_cfg = "a"
                else:
                    best_cfg = "b"
                if la.item() < best:
                    best = la.item()
            print("best", best)
            return best_cfg
    ''',
    # a fixed mixture of two normalised distributions, scored once
    "fixed_mixture": '''
        import torch
        def run(p_model, p_cache, y):
            q = 0.9 * p_model + 0.1 * p_cache
            return -q.gather(-1, y[:, None]).squeeze(-1).log().sum()
    ''',
    # a gate computed from the context only (the model's entropy), the usual legal mixer
    "entropy_gate": '''
        import torch
        def run(logits, p_cache, y):
            p = logits.softmax(-1)
            ent = -(p * p.clamp_min(1e-9).log()).sum(-1)
            lam = torch.where(ent > 4.0, 0.4, 0.05)
            if ent.mean() > 3.0:
                lam = lam * 1.5
            q = (1 - lam[:, None]) * p + lam[:, None] * p_cache
            return -q.gather(-1, y[:, None]).squeeze(-1).log().sum()
    ''',
    # a per-token choice between two scorers by their own entropies (known before x_t)
    "entropy_choice": '''
        import torch
        import torch.nn.functional as F
        def run(h1, h2, y):
            e1 = -(h1.softmax(-1) * h1.log_softmax(-1)).sum(-1)
            e2 = -(h2.softmax(-1) * h2.log_softmax(-1)).sum(-1)
            a = F.cross_entropy(h1, y, reduction="none")
            b = F.cross_entropy(h2, y, reduction="none")
            return torch.where(e1 < e2, a, b).sum()
    ''',
    # log-sum-exp of two weighted log-probs written with max: a mixture, not a choice
    "logaddexp_max": '''
        import math
        def run(model_lp, cache_lp, lam):
            total = 0.0
            for u, v in zip(model_lp, cache_lp):
                a = math.log(1 - lam) + u
                b = math.log(lam) + v
                mixed = max(a, b) + math.log1p(math.exp(-abs(a - b)))
                total += -mixed
            return total
        def main(logits, y, cache_p):
            lp = logits.log_softmax(-1).gather(-1, y[:, None]).squeeze(-1).tolist()
            cp = cache_p.gather(-1, y[:, None]).squeeze(-1).log().tolist()
            return run(lp, cp, 0.1)
    ''',
    # bytes of the target chosen by its class: accounting, not a score
    "byte_where": '''
        import torch
        def count(val_tokens, base, space, boundary):
            tgt, prev = val_tokens[1:], val_tokens[:-1]
            nb = torch.where(space[tgt] & ~boundary[prev], base[tgt] + 1, base[tgt])
            return nb.sum()
    ''',
    # targets that are padding are left out: a mask of the target, no comparison of losses
    "pad_mask": '''
        import torch.nn.functional as F
        def run(logits, y, pad):
            nll = F.cross_entropy(logits, y, reduction="none")
            keep = y != pad
            return nll[keep].sum()
    ''',
    # score first, then keep an update only if the already-scored chunk improved
    "keep_update_if_better": '''
        import copy
        import torch.nn.functional as F
        def run(model, chunks, opt):
            total = 0.0
            for x, y in chunks:
                before = F.cross_entropy(model(x), y)
                total += before.item()
                saved = copy.deepcopy(model.state_dict())
                before.backward()
                opt.step()
                after = F.cross_entropy(model(x), y)
                if after > before:
                    model.load_state_dict(saved)
            return total
    ''',
}


@pytest.mark.parametrize("name", sorted(FLAGGED))
def test_selection_is_flagged(name):
    code, line = FLAGGED[name]
    found = _pg102(code)
    assert found, f"{name}: missed"
    assert any(f.severity == Severity.ILLEGAL for f in found), [f.message for f in found]
    assert any(f.location.line_start == line for f in found), [(f.location.line_start, f.message) for f in found]


@pytest.mark.parametrize("name", sorted(QUIET))
def test_near_miss_is_quiet(name):
    found = _pg102(QUIET[name])
    assert not found, f"{name}: {[(f.location.line_start, f.message) for f in found]}"
