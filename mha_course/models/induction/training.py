"""Training the induction model: next-token loss on repeated sequences (`data`), AdamW with a
linear warm-up, the per-position loss on held-out doubled sequences.

`train` only trains and measures losses; what it logs at each snapshot is up to the caller
(`snapshot`): `mha_course.experiments.induction_training` adds the heads' scores.
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from mha_course.models.induction import data
from mha_course.models.induction.config import InductionConfig
from mha_course.models.induction.model import AttnOnlyTransformer

__all__ = ["train", "next_token_losses", "held_out_sequences", "HELD_OUT_SEED", "N_HELD_OUT",
           "LOSS_EVERY"]

HELD_OUT_SEED = 10_000  # a run with seed s trains on rng(s), measures on rng(s + this)
N_HELD_OUT = 128  # held-out doubled sequences
LOSS_EVERY = 10  # the training loss is recorded every this many steps


def held_out_sequences(config: InductionConfig, seed: int = 0) -> np.ndarray:
    """(N_HELD_OUT, n_ctx) doubled sequences (`data.doubled_sequences`) of a run with `seed`."""
    rng = np.random.default_rng(seed + HELD_OUT_SEED)
    return data.doubled_sequences(N_HELD_OUT, config.n_ctx, config.vocab_size, rng)


@torch.no_grad()
def next_token_losses(model: AttnOnlyTransformer, tokens, head_gates=None) -> np.ndarray:
    """(batch, n - 1) float: the cross-entropy of predicting token i + 1 at position i."""
    ids = torch.as_tensor(np.asarray(tokens), dtype=torch.int64)  # (batch, n)
    was_training = model.training
    model.eval()
    try:
        gates = None if head_gates is None else torch.as_tensor(np.asarray(head_gates),
                                                                dtype=torch.float32)
        logits = model(ids, gates).logits[:, :-1]  # (batch, n - 1, vocab_size)
    finally:
        model.train(was_training)
    losses = F.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
    return losses.numpy()  # (batch, n - 1)


def _loss(model: AttnOnlyTransformer, ids: torch.Tensor) -> torch.Tensor:
    logits = model(ids).logits[:, :-1]  # (batch, n - 1, vocab_size): predict the next token
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))


def train(config: InductionConfig | None = None, seed: int = 0, steps: int | None = None,
          progress: bool = True, log_every: int = 0,
          snapshot=None) -> tuple[AttnOnlyTransformer, dict]:
    """Train a fresh `AttnOnlyTransformer(config)` for `steps` steps (None: config.steps).

    Deterministic for a seed, a step count and a number of torch threads: the weights come from
    torch.manual_seed(seed), the batches from np.random.default_rng(seed). Returns the model (in
    eval mode) and a report: config, seed, steps, seconds, ms_per_step, threads, the training
    loss every LOSS_EVERY steps (`loss_history`: [step, loss]), and `position_loss` (n_ctx - 1,),
    at position i the mean held-out loss of predicting token i + 1, on
    `held_out_sequences(config, seed)` (positions 0 .. n_ctx // 2 - 1 predict the first half's
    random tokens, the rest the repeat).
    `log_every` > 0 adds report["history"]: every that many steps (and at the end)
    {"step", "seconds", "position_loss"} plus what `snapshot(model, held_out, step, seconds)`
    returns (a dict), if given; the time spent there is not counted in `seconds`.
    """
    config = config or InductionConfig()
    if steps is not None:
        config = replace(config, steps=steps)
    if log_every < 0:
        raise ValueError(f"log_every must be >= 0; got {log_every}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = AttnOnlyTransformer(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    held_out = held_out_sequences(config, seed)
    loss_history, history = [], []
    spent = 0.0  # training seconds, snapshots excluded
    bar = tqdm(total=config.steps, desc="training", unit="step", disable=not progress)

    def log(step):
        model.eval()
        entry = {"step": step, "seconds": round(spent, 2),
                 "position_loss": _rounded(next_token_losses(model, held_out).mean(axis=0))}
        if snapshot is not None:
            entry.update(snapshot(model, held_out, step, spent))
        history.append(entry)
        model.train()

    model.train()
    for step in range(config.steps):
        start = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = config.lr * min(1.0, (step + 1) / max(1, config.warmup))
        batch = data.repeated_sequences(config.batch_size, config.n_ctx, config.vocab_size, rng,
                                        config.min_segment, config.max_segment,
                                        config.periodic)
        loss = _loss(model, torch.from_numpy(batch))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        spent += time.perf_counter() - start
        if step % LOSS_EVERY == 0 or step == config.steps - 1:
            loss_history.append([step + 1, round(loss.item(), 4)])
        bar.update(1)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if log_every and ((step + 1) % log_every == 0 or step == config.steps - 1):
            log(step + 1)
    bar.close()
    model.eval()
    report = {"config": asdict(config), "seed": seed, "steps": config.steps,
              "seconds": round(spent, 2),
              "ms_per_step": round(1000 * spent / max(1, config.steps), 2),
              "threads": torch.get_num_threads(), "loss_history": loss_history,
              "position_loss": _rounded(next_token_losses(model, held_out).mean(axis=0)),
              "history": history}
    return model, report


def _rounded(a: np.ndarray) -> list:
    return np.round(np.asarray(a, dtype=float), 4).tolist()
