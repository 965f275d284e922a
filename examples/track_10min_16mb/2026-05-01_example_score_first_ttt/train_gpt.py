"""Example record script: tiny GPT, sliding-window eval, score-first chunk TTT.

Written for pgolf-auditor's examples; it shows the shapes the auditor reads
(env-var hyperparameters, evaluation that scores before it adapts). The logs
next to it are synthetic illustrations, not measurements.
"""
import math
import os

import torch
import torch.nn.functional as F


class Hyperparameters:
    seed = int(os.environ.get("SEED", 1337))
    vocab_size = int(os.environ.get("VOCAB_SIZE", 8192))
    seq_len = int(os.environ.get("TRAIN_SEQ_LEN", 1024))
    eval_stride = int(os.environ.get("EVAL_STRIDE", 64))
    ttt_enabled = bool(int(os.environ.get("TTT_ENABLED", "1")))
    ttt_chunk_tokens = int(os.environ.get("TTT_CHUNK_TOKENS", 32768))
    ttt_epochs = int(os.environ.get("TTT_EPOCHS", 3))
    ttt_lr = float(os.environ.get("TTT_LR", 1e-4))


def score_chunk(model, tokens, seq_len):
    """Summed NLL (nats) and count of every target in one chunk, no grad."""
    nll_sum, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, tokens.numel() - 1, seq_len):
            x = tokens[start:start + seq_len][None]
            y = tokens[start + 1:start + seq_len + 1][None]
            x = x[:, : y.shape[1]]
            logits = model(x)
            nll = F.cross_entropy(logits.flatten(0, 1).float(), y.flatten(), reduction="sum")
            nll_sum += nll.item()
            count += y.numel()
    return nll_sum, count


def eval_score_first_ttt(model, val_tokens, args):
    """Score chunk i, then adapt on chunk i; the last chunk is never trained on."""
    optimizer = torch.optim.SGD(model.parameters(), lr=args.ttt_lr)
    chunks = list(torch.split(val_tokens, args.ttt_chunk_tokens))
    total_nll, total_count = 0.0, 0
    for i, chunk in enumerate(chunks):
        nll, count = score_chunk(model, chunk, args.seq_len)
        total_nll += nll
        total_count += count
        if i == len(chunks) - 1:
            break
        for _ in range(args.ttt_epochs):
            x, y = chunk[:-1][None], chunk[1:][None]
            loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return total_nll / total_count


def main():
    args = Hyperparameters()
    torch.manual_seed(args.seed)
    print(f"seed:{args.seed}")
    model = torch.nn.Sequential(torch.nn.Embedding(args.vocab_size, 64), torch.nn.Linear(64, args.vocab_size))
    val_tokens = torch.randint(0, args.vocab_size, (4096,))
    loss = eval_score_first_ttt(model, val_tokens, args)
    print(f"legal_ttt_exact val_loss:{loss:.8f} val_bpb:{loss / math.log(2) * 0.4:.8f}")


if __name__ == "__main__":
    main()
