"""Small single-file scripts for the probe tests, written here (never copied from submissions).

GENERIC: the shapes real records use and the reference does not: an env-var
Hyperparameters class, flash-attention imported at the top, `.cuda()` calls,
`torch.compile`, byte lookup tables passed as three arguments, a sliding-window
evaluation returning (val_loss, val_bpb) from a `reduction="sum"` cross-entropy.
`GENERIC_LEAKY` is the same script whose scoring fits a bias on the window it scores.
"""

GENERIC = r'''
import math, os
import torch
import torch.nn as nn
import torch.nn.functional as F
from flash_attn_interface import flash_attn_func


class Hyperparameters:
    vocab_size = int(os.environ.get("VOCAB_SIZE", 8192))
    num_layers = int(os.environ.get("NUM_LAYERS", 11))
    model_dim = int(os.environ.get("MODEL_DIM", 512))
    num_heads = int(os.environ.get("NUM_HEADS", 8))
    eval_seq_len = int(os.environ.get("EVAL_SEQ_LEN", 2048))
    eval_stride = int(os.environ.get("EVAL_STRIDE", 64))
    leak_steps = int(os.environ.get("LEAK_STEPS", 0))


def build_sentencepiece_luts(sp, vocab_size, device):
    n = int(sp.vocab_size())
    base = torch.zeros(vocab_size, dtype=torch.int64)
    space = torch.zeros(vocab_size, dtype=torch.bool)
    boundary = torch.ones(vocab_size, dtype=torch.bool)
    for i in range(n):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            continue
        boundary[i] = False
        if sp.is_byte(i):
            base[i] = 1
            continue
        piece = sp.id_to_piece(i)
        if piece.startswith("\u2581"):
            space[i] = True
            piece = piece[1:]
        base[i] = len(piece.encode("utf-8"))
    return base, space, boundary


class CausalSelfAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.h = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.h, D // self.h).unbind(2)
        y = flash_attn_func(q, k, v, causal=True)
        return self.out(y.reshape(B, T, D))


class TinyGPT(nn.Module):
    def __init__(self, args):
        super().__init__()
        self.emb = nn.Embedding(args.vocab_size, args.model_dim)
        self.blocks = nn.ModuleList(CausalSelfAttention(args.model_dim, args.num_heads) for _ in range(args.num_layers))
        self.head = nn.Linear(args.model_dim, args.vocab_size, bias=False)
        nn.init.zeros_(self.head.weight)

    def forward(self, ids):
        x = self.emb(ids)
        for b in self.blocks:
            x = x + b(F.rms_norm(x, (x.size(-1),)))
        return self.head(F.rms_norm(x, (x.size(-1),)))


def eval_val_sliding(args, model, val_tokens, base_bytes_lut, has_leading_space_lut, is_boundary_token_lut):
    model = torch.compile(model).cuda()
    seq, stride = args.eval_seq_len, args.eval_stride
    n = val_tokens.numel() - 1
    loss_sum, tok_count, byte_count = 0.0, 0, 0
    done = 0
    start = 0
    while done < n:
        end = min(start + seq, n)
        lo = max(0, end - seq)
        x = val_tokens[lo:end][None].cuda()
        y = val_tokens[lo + 1:end + 1][None].cuda()
        bias = torch.zeros(args.vocab_size, requires_grad=True)
        for _ in range(args.leak_steps):  # fitted on the very targets it then scores
            g, = torch.autograd.grad(F.cross_entropy((model(x) + bias)[0], y[0]), bias)
            bias = (bias - 1.0 * g).detach().requires_grad_(True)
        with torch.no_grad():
            logits = model(x) + bias.detach()
            fresh = end - done
            loss_sum += F.cross_entropy(logits[0, -fresh:], y[0, -fresh:], reduction="sum").item()
        tgt, prev = y[0, -fresh:], x[0, -fresh:]
        tok_count += fresh
        byte_count += int((base_bytes_lut[tgt] + (has_leading_space_lut[tgt] & ~is_boundary_token_lut[prev])).sum())
        done = end
        start += stride
    val_loss = loss_sum / tok_count
    return val_loss, val_loss / math.log(2) * tok_count / byte_count


def main():
    args = Hyperparameters()
    raise SystemExit("training needs data and a GPU")


if __name__ == "__main__":
    main()
'''

GENERIC_LEAKY = GENERIC.replace('int(os.environ.get("LEAK_STEPS", 0))', 'int(os.environ.get("LEAK_STEPS", 2))')

SLEEPS_AT_IMPORT = "import time\ntime.sleep(600)\n"

NETWORK_AT_IMPORT = "import urllib.request\nurllib.request.urlopen('http://example.com/weights.bin', timeout=5)\n"

NO_ENTRY = "import torch\n\nclass Net(torch.nn.Module):\n    def __init__(self):\n        super().__init__()\n        self.e = torch.nn.Embedding(10, 4)\n"

# MODERN: the shapes of later records, none of which the probe handled at first:
# - triton imported at the top (not installed on CPU), a @triton.jit kernel used only
#   on a training-mode path, and one entry that launches it (cannot run on CPU);
# - world_size/rank/grad_accum_steps set on the config by main(), not in the class;
# - log() reading a module global that main() sets (set_logging_hparams);
# - a ValidationData(h, device) holder passed as `val_data`, whose __init__ reads files;
# - `forward_ttt_train` passed in by main() (the model's forward_ttt);
# - a fused AdamW (torch must not take the triton stub for a real triton);
# - layer indices in the config that are out of range at 2 layers (LOOP_LAYERS=3,4);
# - Python 3.12 f-strings reusing the enclosing quote;
# - evaluation lengths given as parameter defaults (eval_seq_len=2048, stride=64) and a
#   grad_accum_steps parameter.
MODERN = r'''
import math, os
import torch
import torch.nn as nn
import torch.nn.functional as F
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor
from flash_attn_interface import flash_attn_func


@triton.jit
def _square_kernel(x_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs, mask=offs < n)
    tl.store(y_ptr + offs, x * x, mask=offs < n)


def fused_square(x):
    y = torch.empty_like(x)
    _square_kernel[(triton.cdiv(x.numel(), 1024),)](x, y, x.numel(), BLOCK=1024)
    return y


class Hyperparameters:
    vocab_size = int(os.environ.get("VOCAB_SIZE", 8192))
    num_layers = int(os.environ.get("NUM_LAYERS", 6))
    model_dim = int(os.environ.get("MODEL_DIM", 512))
    num_heads = int(os.environ.get("NUM_HEADS", 8))
    loop_layers = os.environ.get("LOOP_LAYERS", "3,4")
    eval_seq_len = int(os.environ.get("EVAL_SEQ_LEN", 2048))
    val_batch_tokens = int(os.environ.get("VAL_BATCH_TOKENS", 524288))
    ttt_chunk_tokens = int(os.environ.get("TTT_CHUNK_TOKENS", 32768))
    ttt_lr = float(os.environ.get("TTT_LR", 0.01))
    val_files = os.environ.get("VAL_FILES", "./data/fineweb_val_*.bin")
    tokenizer_path = os.environ.get("TOKENIZER_PATH", "./data/tokenizer.model")


_hparams = None


def set_logging_hparams(h):
    global _hparams
    _hparams = h


def log(msg):
    if _hparams.rank == 0:
        print(msg)


def load_validation_tokens(pattern, seq_len):
    raise FileNotFoundError(pattern)


def build_sentencepiece_luts(sp, vocab_size, device):
    base = torch.zeros(vocab_size, dtype=torch.int64)
    space = torch.zeros(vocab_size, dtype=torch.bool)
    boundary = torch.ones(vocab_size, dtype=torch.bool)
    for i in range(int(sp.vocab_size())):
        if sp.is_control(i) or sp.is_unknown(i) or sp.is_unused(i):
            continue
        boundary[i] = False
        piece = sp.id_to_piece(i)
        space[i] = piece.startswith("\u2581")
        base[i] = 1 if sp.is_byte(i) else len(piece.lstrip("\u2581").encode("utf-8"))
    return base, space, boundary


class ValidationData:
    def __init__(self, h, device):
        import sentencepiece as spm
        self.sp = spm.SentencePieceProcessor(model_file=h.tokenizer_path)
        self.val_tokens = load_validation_tokens(h.val_files, h.eval_seq_len)
        (
            self.base_bytes_lut,
            self.has_leading_space_lut,
            self.is_boundary_token_lut,
        ) = build_sentencepiece_luts(self.sp, h.vocab_size, device)


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.h = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        self.fc = nn.Linear(dim, 2 * dim, bias=False)
        self.proj = nn.Linear(2 * dim, dim, bias=False)
        self.use_fused = True

    def forward(self, x):
        B, T, D = x.shape
        q, k, v = self.qkv(F.rms_norm(x, (D,))).view(B, T, 3, self.h, D // self.h).unbind(2)
        x = x + self.out(flash_attn_func(q, k, v, causal=True).reshape(B, T, D))
        u = self.fc(F.rms_norm(x, (D,)))
        u = fused_square(u) if self.training and self.use_fused else u.square()
        return x + self.proj(u)


class GPT(nn.Module):
    def __init__(self, h):
        super().__init__()
        self.loop = [int(i) for i in h.loop_layers.split(",") if i]
        if any(i >= h.num_layers for i in self.loop):
            raise ValueError(f"loop layers {self.loop} out of range [0, {h.num_layers})")
        self.emb = nn.Embedding(h.vocab_size, h.model_dim)
        self.blocks = nn.ModuleList(Block(h.model_dim, h.num_heads) for _ in range(h.num_layers))
        self.head = nn.Linear(h.model_dim, h.vocab_size, bias=False)

    def forward_logits(self, ids):
        x = self.emb(ids)
        for i, b in enumerate(self.blocks):
            x = b(x)
            if i in self.loop:
                x = b(x)
        return self.head(F.rms_norm(x, (x.size(-1),)))

    def forward_ttt(self, ids, targets, bias):
        logits = self.forward_logits(ids) + bias
        return F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1),
                               reduction="none").reshape(targets.shape)

    def forward(self, ids, targets):
        return self.forward_ttt(ids, targets, 0.0).mean()


def _bpb(loss_sum, n, nbytes):
    return loss_sum / n, loss_sum / n / math.log(2.0) * n / max(nbytes, 1)


def _bytes(val_data, x, y):
    return int((val_data.base_bytes_lut[y] + (val_data.has_leading_space_lut[y]
                                              & ~val_data.is_boundary_token_lut[x])).sum())


def eval_val(h, device, val_data, model, forward_logits_fn=None):
    seq = h.eval_seq_len
    local_batch_tokens = h.val_batch_tokens // (h.world_size * h.grad_accum_steps)
    if local_batch_tokens < seq:
        raise ValueError(f"VAL_BATCH_TOKENS too small: {local_batch_tokens}")
    batch_seqs = local_batch_tokens // seq
    fwd = model.forward_logits if forward_logits_fn is None else forward_logits_fn
    toks = val_data.val_tokens
    total = (toks.numel() - 1) // seq
    loss_sum, n, nbytes = 0.0, 0, 0
    model.eval()
    with torch.no_grad():
        for s in range(0, total, batch_seqs):
            e = min(s + batch_seqs, total)
            chunk = toks[s * seq:e * seq + 1]
            x, y = chunk[:-1].reshape(-1, seq), chunk[1:].reshape(-1, seq)
            logits = fwd(x)
            loss_sum += F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1),
                                        reduction="sum").item()
            n += y.numel()
            nbytes += _bytes(val_data, x, y)
    log(f"eval_val: {", ".join(str(v) for v in (n, nbytes))} tokens/bytes, mode={"eval" if not model.training else "train"}")
    return _bpb(loss_sum, n, nbytes)


def eval_val_ttt(h, base_model, device, val_data, forward_ttt_train):
    """Score-first: each chunk is scored under no_grad, then a bias adapter steps on it."""
    base_model.eval()
    for p in base_model.parameters():
        p.requires_grad_(False)
    bias = torch.zeros(h.vocab_size, requires_grad=True)
    opt = torch.optim.AdamW([bias], lr=h.ttt_lr, fused=True)
    toks = val_data.val_tokens
    last = toks.numel() - 1
    loss_sum, n, nbytes = 0.0, 0, 0
    for s in range(0, last, h.ttt_chunk_tokens):
        e = min(s + h.ttt_chunk_tokens, last)
        x, y = toks[s:e][None], toks[s + 1:e + 1][None]
        with torch.no_grad():
            ptl = forward_ttt_train(x, y, bias)
        loss_sum += ptl.sum().item()
        n += ptl.numel()
        nbytes += _bytes(val_data, x, y)
        if e < last:
            forward_ttt_train(x, y, bias).mean().backward()
            opt.step()
            opt.zero_grad()
    log(f"ttt: {"done"} after {n} tokens")
    return _bpb(loss_sum, n, nbytes)


def eval_val_fused(h, model, device, val_data):
    model.train()  # the fused kernel path: cannot run on CPU
    x = val_data.val_tokens[:-1][None]
    with torch.no_grad():
        return F.cross_entropy(model.forward_logits(x)[0], val_data.val_tokens[1:]).item()


def eval_val_sliding(model, val_tokens, base_bytes_lut, has_leading_space_lut, is_boundary_token_lut,
                     grad_accum_steps, eval_seq_len=2048, stride=64):
    n = val_tokens.numel() - 1
    loss_sum, count, nbytes = 0.0, 0, 0
    done, start = 0, 0
    model.eval()
    with torch.no_grad():
        while done < n:
            end = min(start + eval_seq_len, n)
            lo = max(0, end - eval_seq_len)
            x, y = val_tokens[lo:end][None], val_tokens[lo + 1:end + 1][None]
            fresh = end - done
            logits = model.forward_logits(x)
            loss_sum += F.cross_entropy(logits[0, -fresh:], y[0, -fresh:], reduction="sum").item()
            tgt, prev = y[0, -fresh:], x[0, -fresh:]
            nbytes += int((base_bytes_lut[tgt] + (has_leading_space_lut[tgt] & ~is_boundary_token_lut[prev])).sum())
            count += fresh
            done = end
            start += stride
    return _bpb(loss_sum, count, nbytes)


def main():
    h = Hyperparameters()
    h.world_size = int(os.environ.get("WORLD_SIZE", "1"))
    h.rank = int(os.environ.get("RANK", "0"))
    h.grad_accum_steps = 8 // h.world_size
    set_logging_hparams(h)
    raise SystemExit("training needs data and a GPU")


if __name__ == "__main__":
    main()
'''

# a record that ships its code in a sibling file and execs it (uncounted code, PR #1412):
# the probe still runs what the record runs
EXEC_SIBLING = 'exec(open(__file__.replace("train_gpt.py", "train_gpt_decode.py")).read())\n'
