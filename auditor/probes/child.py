"""The probe child: `python -m auditor.probes.child SPEC.json` (run by sandbox.run_child).

Writes its JSON result after every entry, so a timeout still leaves what was measured.
"""

from __future__ import annotations

import copy
import json
import os
import resource
import sys
import time
import traceback


def _write(path: str, data: dict) -> None:
    # the child's own CPU time (threads included): the parent cannot read it from
    # RUSAGE_CHILDREN when the jail's PID namespace is torn down rather than reaped
    usage = resource.getrusage(resource.RUSAGE_SELF)
    data["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 2)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(data, f, default=float)
    os.replace(tmp, path)


def main(spec_path: str) -> int:
    with open(spec_path) as f:
        spec = json.load(f)
    started = time.perf_counter()
    deadline = spec.get("deadline_s", 60.0)
    result: dict = {"stage": "start", "entries": [], "skipped": {}, "stubs": [], "notes": []}
    out = spec["result"]

    from auditor.probes.loader import block_network, install_stubs, load_source

    block_network()
    try:
        import torch
    except ImportError as exc:
        result.update(stage="import", error=f"torch is not installed in the probe environment: {exc}")
        _write(out, result)
        return 0
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    result["stubs"] = install_stubs()
    from auditor.probes import discover, probes

    vocab, bos = int(spec["vocab"]), int(spec.get("bos", 1))
    os.environ.update(spec.get("config_env", {}))
    os.environ.update(discover.shrink_env(vocab))
    probes.install_hooks()
    probes.REC.vocab = vocab
    for name, text in (spec.get("siblings") or {}).items():  # files the record ships next to the script
        if os.path.basename(name) == name and name != "train_gpt.py":
            with open(os.path.join(spec["scratch"], name), "w", encoding="utf-8") as f:
                f.write(text)
    path = os.path.join(spec["scratch"], "train_gpt.py")
    with open(path, "w", encoding="utf-8") as f:
        f.write(spec["source"])
    try:
        mod = load_source(spec["source"], path)
    except BaseException as exc:  # SystemExit from argparse, missing modules, CUDA-only code...
        tb = traceback.extract_tb(exc.__traceback__)
        line = next((fr.lineno for fr in reversed(tb) if fr.filename == path), None)
        result.update(stage="import", error=f"{type(exc).__name__}: {str(exc)[:300]}" + (f" (train_gpt.py:{line})" if line else ""))
        _write(out, result)
        return 0

    if getattr(mod, "__pgolf_requoted__", False):
        result["stubs"].append("Python 3.12 f-strings -> re-quoted for this interpreter")
    result["stage"] = "discover"
    result["stubs"] += discover.silence_logging(mod)
    cfg_cls = discover.find_config_class(mod)
    try:
        cfg = discover.make_config(cfg_cls, vocab)
    except Exception as exc:
        cfg = None
        result["notes"].append(f"config class {cfg_cls.__name__} could not be built: {type(exc).__name__}: {exc}")
    result["config_class"] = cfg_cls.__name__ if cfg_cls else None
    best, errors = discover.build_model(mod, cfg, vocab)
    if errors and cfg_cls is not None:  # e.g. layer indices out of range at 2 layers: the configured depth
        try:
            cfg_deep = discover.make_config(cfg_cls, vocab, shrink_layers=False)
            deep, deep_errors = discover.build_model(mod, cfg_deep, vocab)
        except Exception:
            deep = None
        if deep is not None and len(deep_errors) < len(errors):
            best, errors, cfg = deep, deep_errors, cfg_deep
            result["notes"].append("the model was built at its configured depth (2 layers failed)")
    if best is None:
        result.update(error="no model class could be built from the script's own classes"
                      + (f" ({'; '.join(errors[:3])})" if errors else " (no nn.Module subclass with an embedding)"))
        _write(out, result)
        return 0
    model_name, model = best
    if errors:
        result["notes"].append("model classes that could not be built: " + "; ".join(e[:200] for e in errors[:4]))
    result["model_class"] = model_name
    result["model_params"] = int(sum(p.numel() for p in model.parameters()))
    torch.manual_seed(1)
    with torch.no_grad():  # wake up zero-initialised pieces (untied heads, gates) so every path carries signal
        for p in model.parameters():
            if p.is_floating_point():
                p.add_(torch.randn_like(p) * 0.05)
    model.eval()

    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=spec["tokenizer"])
    tables = None
    tables_fn = discover.find_tables_fn(mod)
    if tables_fn is not None:
        try:
            import inspect

            names = list(inspect.signature(tables_fn).parameters)
            args = [sp] + [vocab if n == "vocab_size" else None for n in names[1:2] if n in ("vocab_size",)]
            extra = {n: torch.device("cpu") for n in names if n == "device"}
            tables = tables_fn(*args, **extra)
        except Exception as exc:
            result["notes"].append(f"byte-table builder {tables_fn.__name__} failed: {type(exc).__name__}: {exc}")
    result["tables_fn"] = tables_fn.__name__ if tables_fn else None

    entries, skipped = discover.find_entries(mod)
    only = spec.get("entries")
    headline = list(spec.get("headline") or [])
    if only:
        entries = [e for e in entries if e.name in only]
    # a named entry, or the function that computes the headline, runs even when discovery
    # skipped it (called by another entry) or did not recognise its parameters
    have = {e.name for e in entries}
    for n in list(only or []) + headline:
        if n in have or not inspect.isfunction(getattr(mod, n, None)):
            continue
        fn = getattr(mod, n)
        try:
            src, line = inspect.getsource(fn), inspect.getsourcelines(fn)[1]
        except (OSError, TypeError):
            src, line = "", None
        entries.append(discover.Entry(n, fn, list(inspect.signature(fn).parameters),
                                      bool(discover.ISOLATION_RE.search(src)), line))
        have.add(n)
    entries.sort(key=lambda e: e.name not in headline)  # the headline's evaluation first
    result["skipped"] = {k: v for k, v in skipped.items() if k not in have}
    # the headline pipeline: main()'s steps between loading the weights and calling the entry
    # that touch validation tokens (pre-eval adaptation) run first, on the same model
    for i, e in enumerate(entries):
        try:
            pre = discover.pre_eval_steps(mod, e.name)
        except Exception as exc:
            result["notes"].append(f"{e.name}: main()'s steps before it could not be read: {type(exc).__name__}: {exc}")
            pre = None
        if pre is not None:
            entries[i] = discover.pipeline_entry(e, pre, mod, cfg)
    # a training function that runs as a pre-evaluation step of an entry is covered by that pipeline
    covered = {f: e.name for e in entries for f in (getattr(getattr(e, "pre", None), "functions", None) or [])}
    if covered and not only:
        for e in [e for e in entries if e.name in covered and e.name not in headline]:
            entries.remove(e)
            result["skipped"][e.name] = f"runs as a pre-evaluation step before {covered[e.name]}"
    result["headline"] = [n for n in headline if n in have]
    if not entries:
        result.update(error="no evaluation entry point found (a function taking a model and validation tokens)")
        _write(out, result)
        return 0
    result["planned"] = [e.name for e in entries]  # a timeout mid-entry still says what never finished
    probes.wrap_candidates(mod, {e.name for e in entries})

    stream = probes.make_stream(vocab, bos, n_tokens=int(spec.get("n_tokens", 7 * discover.SEQ + 1)), seed=int(spec.get("seed", 0)))
    n = len(stream)
    starts = probes.doc_starts(stream, bos)
    k = next(p for p in range(int(n * 0.6), n) if stream[p] != bos and stream[p - 1] != bos)
    flipped = stream.copy()
    flipped[k] = probes.other_token(int(stream[k]), vocab)
    d = len(starts) // 2
    doc = (starts[d], starts[d + 1])  # inputs doc[0]..doc[1]-1; targets doc[0]+1..doc[1]
    altered = stream.copy()
    for p in (doc[0] + 1, doc[1] - 1):
        altered[p] = probes.other_token(int(stream[p]), vocab)
    idx_base, idx_flip, idx_alt = probes.StreamIndex(stream), probes.StreamIndex(flipped), probes.StreamIndex(altered)
    result.update(stage="probe", vocab=vocab, n_tokens=n, flip_position=k, documents=len(starts), altered_doc=list(doc))
    pristine = model
    for entry in entries:
        if time.perf_counter() - started > deadline:
            result["out_of_time"] = True
            result["entries"].append({"name": entry.name, "line": entry.line, "status": "not_run",
                                      "reason": "the probe's time limit ran out before this entry"})
            continue

        def kwargs_fn(tokens, entry=entry):
            kwargs, why = discover.bind_entry(entry, model=copy.deepcopy(pristine), tokens=tokens, cfg=cfg,
                                              tables=tables, sp=sp, vocab=vocab, bos=bos, mod=mod,
                                              scratch=spec["scratch"])
            if why:
                raise LookupError(why)
            if getattr(entry, "pre", None) is not None:
                kwargs["__pgolf_tokens__"] = tokens
            return kwargs

        rec: dict = {"name": entry.name, "line": entry.line, "claims_isolation": entry.claims_isolation,
                     "headline": entry.name in headline}
        if getattr(entry, "pre", None) is not None:
            rec["pre_steps"] = {"lines": list(entry.pre.lines), "function": "main",
                                "calls": list(entry.pre.functions or [])}
        try:
            kwargs_fn(torch.from_numpy(stream))
        except LookupError as exc:
            rec.update(status="not_run", reason=str(exc))
            result["entries"].append(rec)
            _write(out, result)
            continue
        t0 = time.perf_counter()
        base = probes.run_entry(entry, kwargs_fn, stream, idx_base, c2=True, trace_file=path)
        rec["functions"] = base.functions
        if not base.ok:
            rec.update(status="not_run", reason=f"the entry raised {base.error}")
            result["entries"].append(rec)
            _write(out, result)
            continue
        use_exposed = not spec.get("intercept_only")
        pb = probes.per_position(base, n, use_exposed)
        rec.update(status="ok", source=pb["source"], verified=pb["verified"], loss_lines=base.loss_lines,
                   scalars=[[lab, val] for lab, val in base.scalars[:8]], run_s=round(base.seconds, 3))
        rec["c4"] = probes.probe_c4(pb, stream, bos)
        rec["c2"] = probes.probe_c2(base.c2)
        if pb["values"] is None:
            rec["c1"] = {"status": "not_run", "reason": "the entry neither exposes per-token losses nor calls "
                                                        "torch.nn.functional.cross_entropy"}
        else:
            fl = probes.run_entry(entry, kwargs_fn, flipped, idx_flip)
            if fl.ok:
                rec["c1"] = probes.probe_c1(pb, probes.per_position(fl, n, use_exposed), k,
                                            probes.every_computation_moved(base.elements, fl.elements, k),
                                            probes.computations_moved(base.elements, fl.elements, k))
            else:
                rec["c1"] = {"status": "not_run", "reason": f"the entry raised on the flipped stream: {fl.error}"}
        if not entry.claims_isolation:
            rec["bos"] = {"status": "not_applicable", "reason": "the entry does not claim document isolation "
                                                                "(no BOS/document handling in its code)"}
        elif pb["values"] is None:
            rec["bos"] = {"status": "not_run", "reason": "no per-token losses"}
        else:
            al = probes.run_entry(entry, kwargs_fn, altered, idx_alt)
            rec["bos"] = (probes.probe_bos(pb, probes.per_position(al, n, use_exposed), doc, stream, bos) if al.ok else
                          {"status": "not_run", "reason": f"the entry raised on the altered stream: {al.error}"})
        rec["seconds"] = round(time.perf_counter() - t0, 3)
        result["entries"].append(rec)
        _write(out, result)
    result["stage"] = "done"
    result["seconds"] = round(time.perf_counter() - started, 3)
    _write(out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
