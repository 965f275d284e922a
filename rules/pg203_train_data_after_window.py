from __future__ import annotations

import functools
import re
from typing import Callable, Iterator

import libcst as cst

from rules.core import Severity

from .engine import Hit, Rule, register
from .facts.names import CALIBRATION_NAME_RE, TRAIN, is_train_string
from .facts import CallInfo, Facts, FuncInfo, base_name, dotted, iter_nodes, target_names

_LOG_RE = re.compile(r"(log|print)")
_EVAL_ENTRY_RE = re.compile(r"(^|_)(eval|evaluate|score|scoring|slot|ttt|test_time)(_|$)", re.I)
_NOT_READ = {"print", "len", "str", "repr", "format", "int", "float", "isinstance", "info", "debug", "warning",
             "log", "log0", "print0", "sorted", "glob_count", "exists", "isfile", "join", "write"}
_CLOCK_RE = re.compile(r"(^|\.)(perf_counter|perf_counter_ns|time|monotonic|monotonic_ns)$")
_TIMER_RE = re.compile(r"(train(ing)?_time|train_ms|training_ms|elapsed_train)", re.I)


def _call_info(facts: Facts, node: cst.Call) -> CallInfo:
    return next(ci for ci in facts.calls if ci.node is node)


def _reads(facts: Facts, func: FuncInfo | None) -> list[tuple[int, cst.CSTNode, object, tuple, frozenset]]:
    """(line, node, ctx, (prefix, text node), labels) of the calls and loops directly in
    ``func`` whose receiver, arguments or iterable may carry training data: ``labels`` is what they carry
    with ``func``'s parameters left open (``@p``, see ``Facts.summary``), so that a caller
    can say whether the call it makes passes training data."""
    out = []
    seen: set[int] = set()
    calls = facts.calls_by_func.get(func, ())
    # what a log line counts (``len(glob("fineweb_train_*"))``) is not data the model sees
    logged = {id(n) for ci in calls if _LOG_RE.match(ci.attr or "") for n in facts.subtree(ci.node)}
    scoped = facts.comp_bound

    def carried(labels: frozenset) -> bool:
        return any(x == TRAIN or x.startswith("@") for x in labels)

    for ci in calls:
        if ci.line in seen or ci.attr in _NOT_READ or id(ci.node) in logged:
            continue
        local = scoped.get(ci.node, set())  # `x` in `(int(x) for x in spec.split(","))`
        recv = ci.node.func.value if type(ci.node.func) is cst.Attribute else None
        labels: set = set()
        if recv is not None and base_name(recv) not in local:
            labels |= facts.summary(recv, func, ci.line)
        for a in ci.node.args:
            if (local and facts.names(a.value) <= local) or (
                    type(a.value) in (cst.FormattedString, cst.SimpleString)
                    and not is_train_string(facts.code(a.value))):
                continue
            labels |= facts.summary(a.value, func, ci.line)
        if carried(frozenset(labels)):
            seen.add(ci.line)
            out.append((ci.line, ci.node, ci.ctx, ("", ci.node), frozenset(labels)))
    for li, ctx in facts.loops:
        if li.func is func and li.iter is not None and li.start not in seen:
            labels = facts.summary(li.iter, func, li.start)
            if carried(labels):
                seen.add(li.start)
                out.append((li.start, li.node, ctx, ("for ... in ", li.iter), labels))
    return out


def _read(facts: Facts, r: tuple) -> tuple:
    """``(line, node, ctx, text)`` of a ``_reads`` entry: its code is generated only for
    the reads that carry training data (most entries are open parameters only)."""
    prefix, node = r[3]
    return r[0], r[1], r[2], prefix + facts.code(node).strip()


@register
class TrainDataAfterWindow(Rule):
    """Training data read in the evaluation path, after the training window.

    What it flags:
        Reads of training shards (``fineweb_train_*``, ``train_files``, the train
        loader's ``next_batch``, a loop over a train loader) in code that runs
        after the training loop: statements after the loop that optimizes the
        model (the loop holding an optimizer ``step()`` and training reads), the
        functions they call (transitively), and evaluation entry points
        (``eval_*``, ``*_ttt``, ``slot_*``, ``score_*``). GPTQ-style
        calibration (``collect_hessians``, ``gptq_*``, ``calibrate``) on
        training data after the loop is a WARNING when the code neither reserves
        time for it inside the training budget (``GPTQ_RESERVE_SECONDS``-style
        setting) nor stops the training timer after it; quiet when it does. A
        read counts as calibration when its value reaches a calibration call
        (``batches = [loader.next_batch() ...]; collect_calibration(model,
        batches)``); the timer stops after it when a training-time variable is
        set, ``train_time`` is logged, or ``perf_counter() - t0`` is taken after
        it from a start set before the loop ended (and not restarted).

    Why: the ruling:
        Challenge README and PR #1868: training is at most 600 s including
        everything that reads training data (GPTQ Hessian collection must fit,
        ``GPTQ_RESERVE_SECONDS``); training data may not be read after the
        training window, and evaluation (TTT, caches, calibration) may use only
        the artifact and the validation tokens already scored.

    Legal alternative:
        Collect calibration statistics inside the training window: reserve the
        seconds out of the training budget and stop the training timer after
        calibration. Evaluation-time adaptation uses validation tokens already
        scored (score-first TTT), never training shards.

    Known limits:
        The training loop is recognised as a loop that steps an optimizer and
        reads training data. Training data is the shared flow's ``TRAIN`` label
        (``facts/flow.py``: values from ``fineweb_train_*`` / ``train_*`` shard
        literals through assignments, config fields, calls and parameters); a read
        in a function called after the loop counts when that call chain passes it
        training data. By name only: a parameter of a function no call in the file
        reaches (``train_loader``, ``train_files``), and a value defined by a call
        whose callee does not look like loading (``names.TRAIN_CARRY_RE``) is a
        statistic of the data, not the data (``calib = collect_hessians(..)``). Whether calibration fits the window is
        judged from the code's shape (a reserve setting, a training-time
        measurement after it), not from logged times.
    """

    code = "PG203"
    slug = "train-data-after-window"
    severity = Severity.ILLEGAL
    conditions = ("time",)
    reference = "openai/parameter-golf README (time limits); PR #1868 (GPTQ reserve)"
    techniques = ("TTT on training data", "train-data TTT", "eval-time training shards")

    INVALID = [
        # a runner that trains (through `train_model`), then reads a training shard
        '''
import numpy as np
def train_model(args, model, opt, loader):
    for step in range(args.iterations):
        model.loss(*loader.next_batch()).backward()
        opt.step()
    return model
def train_and_eval(args, model, opt, loader, val_tokens):
    model = train_model(args, model, opt, loader)
    prior = np.bincount(np.fromfile(args.train_files[0], dtype=np.uint16))
    return evaluate(model, val_tokens, prior)
if __name__ == "__main__":
    train_and_eval(None, None, None, None, None)
''',
        # eval-time adaptation that draws batches from the train loader
        '''
import torch
def ttt_adapt(model, train_loader, opt, steps):
    for _ in range(steps):
        x, y = train_loader.next_batch(65536, 1024)
        model(x, y).backward()
        opt.step()
        opt.zero_grad()
def main(args, model, opt, val_tokens):
    train_loader = make_loader(args.train_files)
    for step in range(args.iterations):
        x, y = train_loader.next_batch(65536, 1024)
        model(x, y).backward()
        opt.step()
        opt.zero_grad()
    ttt_adapt(model, train_loader, opt, 50)
    print(evaluate(model, val_tokens))
if __name__ == "__main__":
    main(parse(), build(), make_opt(), load_val())
''',
    ]
    VALID = [
        # after the loop, a generator's own `x` (not the training batch `x`) parses a setting
        '''
def main(model, opt, train_loader, args):
    for step in range(args.iterations):
        x, y = train_loader.next_batch()
        model(x, y).backward()
        opt.step()
    int4_layers = set(int(x) for x in args.int4_layers.split(",") if x.strip())
    return model.quantize(int4_layers)
if __name__ == "__main__":
    main(None, None, TokenLoader("data/fineweb_train_*.bin"), None)
''',
        # a function that runs training then evaluation (`train_and_eval`): it logs the shard
        # count before the training call, and a lambda's `x` after the loop is not the batch `x`
        '''
import glob
def train_model(args, model, opt):
    loader = TokenLoader(args.train_files)
    for step in range(args.iterations):
        x, y = loader.next_batch()
        model.loss(x, y).backward()
        opt.step()
    ranked = sorted(model.layer_norms().items(), key=lambda x: -x[1])
    return model, ranked
def train_and_eval(args, model, opt, val_tokens):
    log(f"train_shards: {len(glob.glob('data/fineweb_train_*.bin'))}")
    model, ranked = train_model(args, model, opt)
    return evaluate(model, val_tokens)
if __name__ == "__main__":
    train_and_eval(None, None, None, None)
''',
    ]

    def check(self, facts: Facts) -> Iterator[Hit]:
        # a function's reads are found when first asked for: most functions (the model's
        # layers) are neither trainers, nor evaluation entries, nor called after training
        raw = functools.cache(lambda f: _reads(facts, f))
        # whoever calls it: each function's reads with its parameters as every call passes them
        reads = functools.cache(
            lambda f: [_read(facts, r) for r in raw(f) if TRAIN in facts.resolve_labels(r[4], f)])
        reserve = any(re.search(r"reserve", n, re.I) for n in facts.config) or any(
            re.search(r"reserve", n, re.I) for n in facts.refs_by_func)
        flagged: set[int] = set()
        calib_keys: set[str] = set()
        ends, runners = self._train_ends(facts, reads)
        for owner in [None, *facts.funcs]:
            end = ends.get(owner)
            if end is None:
                continue
            # direct reads after the loop
            for line, node, ctx, text in reads(owner):
                if line <= end or line in flagged:
                    continue
                if type(node) is cst.Call and any(
                        self._called_reads(facts, raw, g, env)
                        for g, _c, env in self._callees(facts, _call_info(facts, node), owner)):
                    continue  # reported inside the local function, with the route
                calib = bool(CALIBRATION_NAME_RE.search(text.split("(")[0])) or _feeds_calibration(facts, owner, node)
                hit = self._hit(facts, owner, end, line, node, ctx, text, None, calib, reserve)
                if hit is not None:
                    flagged.add(line)
                    if hit.key in calib_keys:
                        continue  # one calibration warning per function (its reads and the call itself)
                    if calib:
                        calib_keys.add(hit.key)
                    yield hit
            # reads in functions called after the loop
            for ci in facts.calls_by_func.get(owner, ()):
                if ci.line <= end or ci.line in flagged:  # the call itself was reported
                    continue
                for fi, chain_calib, env in self._callees(facts, ci, owner):
                    for line, node, ctx, text in self._called_reads(facts, raw, fi, env):
                        if line in flagged:
                            continue
                        calib = chain_calib or bool(CALIBRATION_NAME_RE.search(fi.name)) or bool(
                            CALIBRATION_NAME_RE.search(text.split("(")[0])) or _feeds_calibration(facts, owner, ci.node)
                        hit = self._hit(facts, owner, end, line, node, ctx, text, (ci, fi), calib, reserve)
                        if hit is not None:
                            flagged.add(line)
                            yield hit
        # evaluation entry points reading training data, wherever they are called
        for fi in facts.funcs:
            if not _EVAL_ENTRY_RE.search(fi.name) or CALIBRATION_NAME_RE.search(fi.name) or fi in runners:
                continue  # `train_and_eval` runs the training: its reads are judged against it above
            for line, node, ctx, text in reads(fi):
                if line in flagged:
                    continue
                flagged.add(line)
                yield Hit(node, f"evaluation function `{fi.qualname}` reads training data (`{text[:70]}`, "
                          f"line {line}): training data may not be used after the training window",
                          ctx=ctx, key=f"train read in {fi.qualname}")

    def _train_ends(self, facts: Facts, reads: Callable) -> tuple[dict, set]:
        """``owner -> last line of its training``: the end of the training loop it
        holds, else of its first call to a function that trains (``train_and_eval``
        calling ``train_model``, transitively); and the set of those runners. A
        second training phase after the first (``adapt(model, train_stream)``) and a
        loop in an evaluation entry (``ttt_adapt``) come after the window."""
        ends = {}
        for owner in [None, *facts.funcs]:
            end = self._train_end(facts, owner, reads)
            if end is not None:
                ends[owner] = end
        runners: set = set()
        changed = True
        while changed:
            changed = False
            for owner in [None, *facts.funcs]:
                if owner in ends:
                    continue
                first = next((ci for ci in facts.calls_by_func.get(owner, ())
                              if not _EVAL_ENTRY_RE.search(ci.attr or "")
                              and any(g in ends and g is not owner for g in facts.callees(ci))),
                             None)
                if first is not None:
                    ends[owner] = first.end
                    runners.add(owner)
                    changed = True
        return ends, runners

    def _train_end(self, facts: Facts, owner, reads: Callable) -> int | None:
        steps = [o[0] for o in facts.occurrences(owner, {"step"})]
        end = None
        for li, _ctx in facts.loops:
            if li.func is not owner:
                continue
            if any(li.start <= s <= li.end for s in steps) and any(
                    li.start <= r[0] <= li.end for r in reads(owner)):
                end = max(end or 0, li.end)
        return end

    def _callees(self, facts: Facts, ci: CallInfo, owner: FuncInfo | None):
        """Local functions reached from call ``ci`` in ``owner`` (transitively), with
        whether the chain passed through a calibration-named call and what the chain
        passes to each parameter (``param -> labels``; the first chain found)."""
        out = []
        calib0 = bool(CALIBRATION_NAME_RE.search(ci.attr or ""))
        todo = [(g, calib0, ci, owner, None) for g in facts.callees(ci)]
        seen: set = set()
        while todo and len(seen) < 200:
            g, calib, call, caller, caller_env = todo.pop()
            if g in seen:
                continue
            seen.add(g)
            env = facts.call_env(call.node, g, caller, call.line, caller_env)
            out.append((g, calib, env))
            for c2 in facts.calls_by_func.get(g, ()):
                for h in facts.callees(c2):
                    if h not in seen:
                        todo.append((h, calib or bool(CALIBRATION_NAME_RE.search(c2.attr or "")), c2, g, env))
        return out

    @staticmethod
    def _called_reads(facts: Facts, raw: Callable, fi: FuncInfo, env: dict) -> list:
        """The reads in ``fi`` that carry training data when called with ``env``."""
        return [_read(facts, r) for r in raw(fi) if TRAIN in facts.resolve_labels(r[4], fi, env)]

    def _hit(self, facts: Facts, owner, end: int, line: int, node, ctx, text: str,
             via: tuple | None, calib: bool, reserve: bool) -> Hit | None:
        where = owner.qualname if owner is not None else "<module>"
        site_line = via[0].line if via else line
        route = (f" in `{via[1].qualname}`, called from `{where}` line {via[0].line}," if via else
                 f" in `{where}`")
        if calib:
            if reserve or self._timer_after(facts, owner, site_line, end):
                return None
            return Hit(node, f"calibration reads training data (`{text[:70]}`, line {line}){route} after the "
                       f"training loop ending line {end}, and nothing shows it inside the training "
                       f"window (no reserve setting, the training timer is not read after it)",
                       ctx=ctx, severity=Severity.WARNING, confidence="medium",
                       key=f"calibration train read after window {where}")
        return Hit(node, f"training data read after the training window: `{text[:70]}` (line {line}){route} "
                   f"after the training loop ending line {end}",
                   evidence=facts.line_text(end) + facts.line_text(site_line) + (
                       facts.line_text(line) if line != site_line else ()),
                   ctx=ctx, key=f"train read after window {where}")

    def _timer_after(self, facts: Facts, owner, line: int, end: int) -> bool:
        lo = owner.start if owner is not None else 0
        hi = owner.end if owner is not None else len(facts.lines)
        # `time.perf_counter() - t0` after the read, t0 started before the training loop ended
        # and not restarted since: the measured (returned, logged) training time includes it
        scope = owner.defs if owner is not None else facts.module_defs
        for node, bline, ctx in facts.binops:
            if ctx.func is not owner or bline <= line or type(node.operator) is not cst.Subtract:
                continue
            if not (type(node.left) is cst.Call and _CLOCK_RE.search(dotted(node.left.func))):
                continue
            start = base_name(node.right)
            starts = [d for d in scope.get(start, []) if d[0] < bline] if start else []
            if starts and starts[-1][0] <= end:
                return True
        for ai in facts.assigns:
            if ai.ctx.func is owner and ai.line > line and any(
                    _TIMER_RE.search(base_name(t) or "") for t in ai.targets):
                return True
        for sline, text, _ctx in facts.strings:
            if line < sline <= hi and sline >= lo and "train_time" in text:
                return True
        return False


def _feeds_calibration(facts: Facts, owner: FuncInfo | None, node: cst.CSTNode) -> bool:
    """The read's value goes into a calibration call (``collect_calibration``,
    ``gptq_*``, ``*hessian*``) in ``owner``: as an argument, or through local
    assignments (``batches = [loader.next_batch() ...]``; ``collect_hessians(model, batches)``)."""
    calib_calls = [ci for ci in facts.calls_by_func.get(owner, ()) if CALIBRATION_NAME_RE.search(ci.attr or "")]
    if not calib_calls:
        return False
    if any(any(n is node for n in iter_nodes(ci.node)) for ci in calib_calls):
        return True
    assigns = [a for a in facts.assigns if a.ctx.func is owner and a.value is not None]
    holder = next((a for a in assigns if any(n is node for n in iter_nodes(a.value))), None)
    if holder is None:
        return False
    names = {n for t in holder.targets for n in target_names(t)}
    line = holder.line
    for _ in range(3):  # a few hops of local assignments
        if any(ci.line >= line and names & facts.names(ci.node) for ci in calib_calls):
            return True
        more = {n for a in assigns if a.line > line and names & facts.names(a.value)
                for t in a.targets for n in target_names(t)}
        if not more - names:
            break
        names |= more
    return False
