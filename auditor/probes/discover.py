"""Find, in a loaded submission module, what the probes need: the hyperparameter
class, the model class, the byte-table builder and the evaluation entry points,
and bind an entry's parameters by name.

Shrinking: before the module is executed the child sets the SHRINK environment
(upper-case names: NUM_LAYERS=2, MODEL_DIM=64, VOCAB_SIZE=<tokenizer's>, ...), so
classes that read os.environ at definition time come out small; after the config
object is built the same names are set on it when present. Nothing else of the
configuration changes: the flags the logs show stay as they were.
"""

from __future__ import annotations

import inspect
import re
import types
from dataclasses import dataclass, is_dataclass

SEQ = 64

# attribute name -> value (or callable(old, vocab) -> value); applied only when present
def shrink_values(vocab: int) -> dict:
    return {
        "vocab_size": vocab, "num_layers": 2, "n_layer": 2, "n_layers": 2, "model_dim": 64, "n_embd": 64,
        "d_model": 64, "num_heads": 4, "n_head": 4, "num_kv_heads": 2, "n_kv_head": 2,
        "bigram_buckets": lambda v: 64 if v else v, "bigram_vocab_size": lambda v: 64 if v else v,
        "bigram_dim": lambda v: 16 if v else v, "xsa_last_n": lambda v: min(int(v), 1),
        "recur_layers": lambda v: "" if isinstance(v, str) else v,
        "rope_dims": lambda v: 0 if v and int(v) > 16 else v,
        "train_seq_len": SEQ, "eval_seq_len": SEQ, "seq_len": SEQ,
        "eval_stride": lambda v: SEQ // 2 if v else v, "stride": lambda v: SEQ // 2 if v else v,
        "eval_batch_seqs": 4, "ttt_chunk_tokens": 96, "ttt_chunk_size": 96, "lora_chunk_tokens": 24,
        "ttt_epochs": lambda v: min(int(v), 2), "slot_steps": lambda v: min(int(v), 2),
        "lora_steps": lambda v: min(int(v), 2), "train_batch_tokens": 512,
    }


def shrink_env(vocab: int) -> dict[str, str]:
    env = {}
    for key, value in shrink_values(vocab).items():
        if not callable(value):
            env[key.upper()] = str(value)
    return env


MODEL_PARAMS = {"model", "base_model", "net", "gpt", "eval_model", "m"}
TOKEN_PARAMS = {"tokens", "val_tokens", "val", "toks", "val_ids", "stream", "val_data", "validation_tokens"}
CFG_PARAMS = {"cfg", "args", "config", "hparams", "h", "hp", "hyper", "hps", "conf"}
ISOLATION_RE = re.compile(r"\bbos\b|bos_id|bos_token|doc_|_doc|docs?\b|isolate|varlen|cu_seqlens", re.I)


@dataclass
class Entry:
    name: str
    fn: object
    params: list[str]
    claims_isolation: bool
    line: int | None = None


def own(mod: types.ModuleType, obj) -> bool:
    return getattr(obj, "__module__", None) == mod.__name__


def find_config_class(mod):
    best, score = None, 0
    for name, obj in vars(mod).items():
        if not inspect.isclass(obj) or not own(mod, obj):
            continue
        s = 0
        if is_dataclass(obj):
            s += 2
        if re.search(r"config|hyper|hparam|args|settings", name, re.I):
            s += 3
        attrs = {a.lower() for a in dir(obj)}
        s += sum(a in attrs for a in ("vocab_size", "num_layers", "model_dim", "seed", "eval_seq_len", "train_seq_len"))
        if s > score and s >= 4:
            best, score = obj, s
    return best


def make_config(cls, vocab: int):
    if cls is None:
        return None
    obj = cls.from_env() if hasattr(cls, "from_env") else cls()
    for key, value in shrink_values(vocab).items():
        if hasattr(obj, key):
            old = getattr(obj, key)
            try:
                setattr(obj, key, value(old) if callable(value) else type(old)(value) if old is not None else value)
            except (TypeError, ValueError, AttributeError):
                pass
    return obj


def _bind_init(cls, cfg, vocab: int):
    sig = inspect.signature(cls.__init__)
    kwargs = {}
    for name, p in list(sig.parameters.items())[1:]:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if name.lower() in CFG_PARAMS and cfg is not None:
            kwargs[name] = cfg
        elif cfg is not None and hasattr(cfg, name):
            kwargs[name] = getattr(cfg, name)
        elif name == "vocab_size":
            kwargs[name] = vocab
        elif p.default is not p.empty:
            continue
        else:
            return None
    return kwargs


def build_model(mod, cfg, vocab: int):
    """The submission's own model class with the shrunk config: the constructible
    nn.Module subclass with the most parameters (the whole model, not a block)."""
    import torch

    best, best_n, errors = None, -1, []
    for name, obj in vars(mod).items():
        if not (inspect.isclass(obj) and own(mod, obj) and issubclass(obj, torch.nn.Module)):
            continue
        kwargs = _bind_init(obj, cfg, vocab)
        if kwargs is None:
            continue
        try:
            torch.manual_seed(0)
            model = obj(**kwargs)
        except Exception as exc:  # a block needing other arguments, etc.
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        n = sum(p.numel() for p in model.parameters())
        emb = any(isinstance(m, torch.nn.Embedding) for m in model.modules())
        if emb and n > best_n:
            best, best_n = (name, model), n
    return best, errors


def find_tables_fn(mod):
    for name, obj in vars(mod).items():
        if not (inspect.isfunction(obj) and own(mod, obj)):
            continue
        params = list(inspect.signature(obj).parameters)
        if params and params[0] in ("sp", "tokenizer", "sp_model", "spm") and re.search(r"byte|lut|table", name, re.I):
            return obj
    return None


def find_entries(mod) -> tuple[list[Entry], dict[str, str]]:
    found = []
    for name, obj in vars(mod).items():
        if not (inspect.isfunction(obj) and own(mod, obj)) or name.startswith("_"):
            continue
        params = list(inspect.signature(obj).parameters)
        lower = [p.lower() for p in params]
        if not (set(lower) & MODEL_PARAMS and set(lower) & TOKEN_PARAMS):
            continue
        if re.search(r"calib|hessian|gptq|quantiz", name, re.I):
            continue
        try:
            src = inspect.getsource(obj)
            line = inspect.getsourcelines(obj)[1]
        except (OSError, TypeError):
            src, line = "", None
        found.append(Entry(name, obj, params, bool(ISOLATION_RE.search(src)), line))
    # an entry called by another entry is a helper: probing the caller covers it
    sources = {}
    for e in found:
        try:
            sources[e.name] = inspect.getsource(e.fn)
        except (OSError, TypeError):
            sources[e.name] = ""
    skipped = {}
    entries = []
    for e in found:
        callers = [o.name for o in found if o.name != e.name and re.search(rf"\b{re.escape(e.name)}\s*\(", sources[o.name])]
        if callers:
            skipped[e.name] = f"called by {', '.join(callers)}"
        else:
            entries.append(e)
    return entries, skipped


def bind_entry(entry: Entry, *, model, tokens, cfg, tables, sp, vocab: int, bos: int):
    """Arguments for one call, by parameter name. Returns (kwargs, None) or (None, reason)."""
    import torch

    sig = inspect.signature(entry.fn)
    kwargs = {}
    table_parts = {}
    if isinstance(tables, (tuple, list)) and len(tables) == 3:
        table_parts = {"base": tables[0], "space": tables[1], "boundary": tables[2]}
    for name, p in sig.parameters.items():
        low = name.lower()
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if low in MODEL_PARAMS:
            kwargs[name] = model
        elif low in TOKEN_PARAMS:
            kwargs[name] = tokens
        elif low in CFG_PARAMS and cfg is not None:
            kwargs[name] = cfg
        elif low in ("tables", "luts", "byte_tables", "lut", "byte_luts"):
            if tables is None:
                return None, f"parameter {name!r} needs byte tables and no table builder was found"
            kwargs[name] = tables
        elif "lut" in low or "bytes" in low or "boundary" in low:
            part = next((v for k, v in table_parts.items() if k in low), None)
            if part is None:
                if p.default is not p.empty:
                    continue
                return None, f"cannot bind parameter {name!r}"
            kwargs[name] = part
        elif low in ("keep_nll", "return_nll", "per_token", "return_per_token"):
            kwargs[name] = True
        elif low in ("sp", "tokenizer", "sp_model"):
            kwargs[name] = sp
        elif low in ("device",):
            kwargs[name] = torch.device("cpu")
        elif low in ("rank", "local_rank"):
            kwargs[name] = 0
        elif low in ("world", "world_size", "nproc"):
            kwargs[name] = 1
        elif low in ("bos", "bos_id", "bos_token", "bos_token_id"):
            kwargs[name] = bos
        elif low == "vocab_size":
            kwargs[name] = vocab
        elif p.default is not p.empty:
            continue
        elif cfg is not None and hasattr(cfg, name):
            kwargs[name] = getattr(cfg, name)
        elif cfg is not None and hasattr(cfg, "eval_" + name):
            kwargs[name] = getattr(cfg, "eval_" + name)
        elif "seq_len" in low:
            kwargs[name] = SEQ
        elif "stride" in low:
            kwargs[name] = SEQ // 2
        elif "batch" in low:
            kwargs[name] = 4
        else:
            return None, f"cannot bind required parameter {name!r}"
    return kwargs, None
