from __future__ import annotations

import re
from typing import Iterator

import libcst as cst

from auditor.findings import Severity

from ._common import is_target_name
from .engine import Hit, Rule, register
from .facts import Facts, dotted, is_loss_name

_CLASS_RE = re.compile(r"(word|space|boundary|start|class|leading|punct|alpha|digit|is_|bucket|kind)", re.I)
_MIXVAR_RE = re.compile(r"(lam|alpha|beta|gate|mix|weight|coef|temp|prob|^p_|logit|^w$|^w_)", re.I)
# matched on the import-resolved name (``import torch as T; T.minimum`` and ``from torch
# import minimum`` are ``torch.minimum``); ``np.`` / ``jnp.`` for snippets without imports
_MIN_FUNCS = {"torch.minimum", "torch.min", "torch.fmin", "numpy.minimum", "np.minimum",
              "jax.numpy.minimum", "jnp.minimum"}
_WHERE_FUNCS = {"torch.where", "numpy.where", "np.where"}
_STACK_FUNCS = {"torch.stack", "numpy.stack", "np.stack"}


def _loss_like(facts: Facts, node: cst.CSTNode) -> bool:
    return any(is_loss_name(n) for n in facts.names(node)) and not isinstance(node, (cst.Integer, cst.Float))


@register
class TargetSelectedScorer(Rule):
    """Per-token choice of scorer after seeing the true token.

    What it flags:
        ``torch.minimum(nll_a, nll_b)`` / ``np.minimum`` / ``torch.min(a, b)`` /
        ``torch.where(nll_a < nll_b, nll_a, nll_b)`` / ``torch.stack([...]).min(0)``
        over per-token losses of two scorers (or two passes); and mixing weights
        chosen by a property of the realized target (``lam = where(is_word_start[targets], ...)``).

    Why: the ruling:
        PR #659: choosing, per token, the scorer with the lower loss on the true
        token uses x_t to pick the distribution (C1) and the result is not a
        distribution (C2); over passes it is rescoring (C4). The PR #779 audit
        extended this to gates reading the target's class.

    Legal alternative:
        A fixed or prefix-only mixture ``p = λ·p_a + (1-λ)·p_b`` with λ from the
        context (e.g. the model's own entropy), scored once.

    Known limits:
        Losses are recognised by name (``nll``, ``loss``, ``bits``…); a minimum
        over tensors with neutral names is missed. Class lookups of the target
        feeding byte counts (``bytes``) are ignored on purpose.
    """

    code = "PG102"
    slug = "target-selected-scorer"
    severity = Severity.ILLEGAL
    conditions = ("C1", "C2", "C4")
    reference = "openai/parameter-golf PR #659 (min over scorers), PR #779 audit"

    INVALID = [
        '''
import torch
def score(logp_model, logp_cache, targets):
    nll_model = -logp_model.gather(-1, targets[..., None]).squeeze(-1)
    nll_cache = -logp_cache.gather(-1, targets[..., None]).squeeze(-1)
    nll = torch.minimum(nll_model, nll_cache)
    return nll.sum()
''',
        '''
import torch
def pick(loss_a, loss_b):
    return torch.where(loss_a < loss_b, loss_a, loss_b).sum()
''',
        '''
import torch
def mix(p_model, p_cache, targets, is_word_start):
    lam = torch.where(is_word_start[targets], 0.4, 0.05)
    return -torch.log(lam * p_cache + (1 - lam) * p_model)
''',
        # the minimum under an import alias
        '''
import torch as T
def score(nll_a, nll_b):
    return T.minimum(nll_a, nll_b).sum()
''',
        '''
from torch import minimum
def score(nll_a, nll_b):
    return minimum(nll_a, nll_b).sum()
''',
    ]
    VALID = [
        # clamp against a constant is not a choice of scorer
        '''
import torch
def clip(nll):
    return torch.minimum(nll, torch.tensor(20.0))
''',
        # entropy-gated mixture (prefix-only gate)
        '''
import torch
def mix(logp_model, p_cache, targets):
    ent = -(logp_model.exp() * logp_model).sum(-1)
    lam = torch.where(ent > 3.0, 0.3, 0.05)
    p_t = logp_model.exp().gather(-1, targets[:, None]).squeeze(-1)
    return -torch.log(lam * p_cache + (1 - lam) * p_t)
''',
        # per-token choice between two scorers by a prefix-only quantity (each one's own
        # entropy, known before the target): a distribution chosen before x_t is legal
        '''
import torch
def score(logp_a, logp_b, targets):
    ent_a = -(logp_a.exp() * logp_a).sum(-1)
    ent_b = -(logp_b.exp() * logp_b).sum(-1)
    nll_a = -logp_a.gather(-1, targets[..., None]).squeeze(-1)
    nll_b = -logp_b.gather(-1, targets[..., None]).squeeze(-1)
    return torch.where(ent_a < ent_b, nll_a, nll_b).sum()
''',
        # target class used for byte counting
        '''
def count_bytes(tgt_ids, prev_ids, base_bytes_lut, has_leading_space_lut, is_boundary_lut):
    token_bytes = base_bytes_lut[tgt_ids] + (has_leading_space_lut[tgt_ids] & ~is_boundary_lut[prev_ids])
    return token_bytes.sum()
''',
    ]

    def check(self, facts: Facts) -> Iterator[Hit]:
        for ci in facts.calls:
            args = [a.value for a in ci.node.args if a.keyword is None]
            full = facts.resolve(ci.name)
            if full in _MIN_FUNCS and len(args) == 2 and all(_loss_like(facts, a) for a in args):
                yield Hit(ci.node, f"`{ci.name}` of two per-token losses "
                          f"(`{facts.code(args[0]).strip()}`, `{facts.code(args[1]).strip()}`): the scorer is "
                          f"chosen after seeing the true token (C1, C2, C4)", ctx=ci.ctx,
                          key="min over scorers")
            elif full in _WHERE_FUNCS and len(args) == 3 and isinstance(args[0], cst.Comparison) \
                    and _loss_like(facts, args[1]) and _loss_like(facts, args[2]) \
                    and _loss_like(facts, args[0].left):
                yield Hit(ci.node, "per-token selection between losses by comparing them on the true token "
                          "(C1, C2, C4)", ctx=ci.ctx, key="where over scorers")
            elif ci.attr in ("min", "amin") and isinstance(ci.node.func, cst.Attribute) and \
                    isinstance(ci.node.func.value, cst.Call) and \
                    facts.resolve(dotted(ci.node.func.value.func)) in _STACK_FUNCS and _loss_like(facts, ci.node.func.value):
                yield Hit(ci.node, "minimum over stacked per-token losses of several scorers or passes "
                          "(C1, C2, C4)", ctx=ci.ctx, key="min over stacked")
        for ai in facts.assigns:
            if ai.value is None or ai.op != "=":
                continue
            tn = " ".join(dotted(t) for t in ai.targets)
            if not _MIXVAR_RE.search(tn) or "byte" in facts.code(ai.node).lower():
                continue
            for sub, line, ctx in facts.subscripts:
                if not (ai.line <= line <= ai.end) or ctx.func is not ai.ctx.func:
                    continue
                base = dotted(sub.value)
                if not _CLASS_RE.search(base or ""):
                    continue
                idx = [el.slice.value for el in sub.slice if isinstance(el.slice, cst.Index)]
                if idx and any(is_target_name(n) for n in facts.names(idx[0])):
                    yield Hit(ai.node, f"mixing weight `{tn}` is chosen from `{facts.code(sub).strip()}`, a "
                              f"property of the realized target (C1)", ctx=ai.ctx, key=f"target-class gate {tn}")
                    break
