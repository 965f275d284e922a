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
