"""Where a toy-training run spends its time, and what the issue-15 read-outs saved, in one run.

    .venv/bin/python bench/toy_training.py [--threads 2] [--steps 40]

Times, on the shipped recipe (`ToyConfig()`), in this process:
- making the training pool (`toy_language.generate(n_train_sentences)`), once;
- one batch of the denoising objective (`corrupt_batch`), median over the steps;
- one optimisation step (forward, backward, AdamW) with the course's loss
  (`toy_model.training._loss`: sentences packed several to a row, read-outs only at word
  positions, the neighbour's lemma scored over the lemmas, and the world and subject read-outs
  on top), and with the loss as it was before (every read-out at every position of the padded
  batch, the lemma scored over the whole vocabulary, no world or subject read-out), interleaved
  step by step on the same batches so that both see the same machine;
- the projected `train-toy` time, pool + steps x (batch + step), against the 60 s goal.
The ratio is what to compare across machines; the seconds depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from torch.nn import functional as F

from mha_course.models import toy_language as lang
from mha_course.models.toy_model import ToyConfig, ToyTransformer
from mha_course.models.toy_model import training as toy_training


def loss_before(model, inputs, targets, loss_mask, lengths, governors=None) -> torch.Tensor:
    """The loss before issue 15: logits at every position of the padded batch; the neighbour and
    closer read-outs only (the world and subject read-outs came with issue 15)."""
    out = model(inputs, lengths)
    ignore = -100
    loss = F.cross_entropy(out.logits.flatten(0, 1),  # (batch * n, vocab_size)
                           targets.masked_fill(~loss_mask, ignore).flatten(), ignore_index=ignore)
    at = loss_mask[:, 1:]
    left = model.neighbour_out(out.final[:, 1:]) @ model.tok_emb.weight.T  # (batch, n-1, vocab)
    left_targets = torch.from_numpy(lang.LEMMA_IDS)[targets[:, :-1]]  # (batch, n-1)
    loss = loss + model.config.neighbour_loss * F.cross_entropy(
        left.flatten(0, 1), left_targets.masked_fill(~at, ignore).flatten(), ignore_index=ignore)
    rows = torch.arange(len(targets))
    closer = toy_training._CLOSER_INDEX[targets[rows, lengths - 2]]  # (batch,)
    logits = model.closer_out(out.final)  # (batch, n, n_closers)
    per_word = closer[:, None].expand_as(targets)  # (batch, n)
    return loss + model.config.closer_loss * F.cross_entropy(logits[loss_mask],
                                                             per_word[loss_mask])


def batches(config: ToyConfig, pool, rng, n: int) -> tuple[list, list]:
    """n corrupted batches as tensors, and the seconds each took to make."""
    out, seconds = [], []
    for _ in range(n):
        start = time.perf_counter()
        batch, arrays = toy_training.draw_batch(config, pool, rng)
        governors = toy_training.governor_positions(batch, arrays[0].shape[1])
        out.append([torch.from_numpy(a) for a in arrays] + [torch.from_numpy(governors)])
        seconds.append(time.perf_counter() - start)
    return out, seconds


def step_seconds(loss_fn, model, optimizer, tensors) -> float:
    start = time.perf_counter()
    *arrays, governors = tensors
    loss = loss_fn(model, *arrays, governors=governors)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40, help="timed steps per loss (default 40)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = ToyConfig()
    start = time.perf_counter()
    pool = lang.generate(config.n_train_sentences, seed=0, grammar=config.grammar)
    pool_seconds = time.perf_counter() - start
    data, batch_seconds = batches(config, pool, np.random.default_rng(0), args.steps + 5)
    torch.manual_seed(0)
    models = {name: ToyTransformer(config) for name in ("now", "before")}
    optimizers = {name: torch.optim.AdamW(m.parameters(), lr=config.lr) for name, m in
                  models.items()}
    losses = {"now": toy_training._loss, "before": loss_before}
    times: dict[str, list] = {"now": [], "before": []}
    for k, tensors in enumerate(data):
        for name in ("now", "before") if k % 2 else ("before", "now"):  # alternate the order
            seconds = step_seconds(losses[name], models[name], optimizers[name], tensors)
            if k >= 5:  # the first steps warm up allocators and caches
                times[name].append(seconds)
    ms = {name: 1000 * statistics.median(t) for name, t in times.items()}
    batch_ms = 1000 * statistics.median(batch_seconds)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), batch "
          f"{config.batch_size}, {config.steps} steps, vocabulary {config.vocab_size}")
    print(f"training pool ({config.n_train_sentences} sentences): {pool_seconds:.1f} s")
    print(f"one corrupted batch: {batch_ms:.1f} ms")
    print(f"one step, read-outs at word positions (now): {ms['now']:.1f} ms")
    print(f"one step, read-outs everywhere (before):      {ms['before']:.1f} ms")
    print(f"ratio now / before: {ms['now'] / ms['before']:.2f}")
    projected = pool_seconds + config.steps * (batch_ms + ms["now"]) / 1000
    print(f"projected train-toy (pool + steps x (batch + step)): {projected:.0f} s (goal <= 60 s; "
          "role scoring and the control come on top)")


if __name__ == "__main__":
    main()
