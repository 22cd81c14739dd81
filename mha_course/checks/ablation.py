"""Checks for exercise 13 (ex05): head importance by ablation on the shipped toy model."""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from mha_course.checks._framework import (
    Exercise,
    first_match,
    max_diff,
    pair,
    run_public,
    shape_problem,
)
from mha_course.models import toy_language, toy_model

__all__ = ["check_head_importance", "EXERCISES"]


# ----------------------------------------------------------------------------------------------
# 13. head ablation importance


def _ablation_cases(rng, hidden):
    n, seed = (16, 5) if not hidden else (30, int(rng.integers(1 << 30)))
    task = "agreement" if not hidden else ["agreement", "coreference"][int(rng.integers(2))]
    return [{"n_sentences": n, "seed": seed, "subtask": task,
             "about": f"{'hidden: ' if hidden else ''}the shipped toy model, {n} sentences of the "
                      f"'{task}' sub-task"}]


def _ablation_batch(case):
    sentences = toy_language.generate(case["n_sentences"], seed=case["seed"])
    return toy_language.subtask_batch(sentences, case["subtask"],
                                      np.random.default_rng(case["seed"]))


def _parameters_digest(model) -> list[float]:
    return [float(p.detach().double().sum()) for p in model.parameters()]


def _call_ablation(fns, case):
    model = toy_model.load()
    before = _parameters_digest(model)
    importance = fns[0](model, *(a.copy() for a in _ablation_batch(case)))
    return [importance, before == _parameters_digest(model)]


def _ablation_losses(case, zero: str = "values", cumulative: bool = False):
    """Loss increase when each head is removed, computed here independently: by zeroing the head's
    value projection (Z_i = A_i V_i = 0), not its rows of W_O. `zero="columns"` and `cumulative`
    reproduce two typical mistakes."""
    model = toy_model.load()
    inputs, targets, at, lengths = (torch.from_numpy(a) for a in _ablation_batch(case))

    @torch.no_grad()
    def loss():
        logits = model(inputs, lengths).logits  # (batch, n, vocab)
        return float(F.cross_entropy(logits[at], targets[at]))

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches: one thread is much faster than several that compete
    try:
        return _remove_each_head(model, loss, zero, cumulative)
    finally:
        torch.set_num_threads(threads)


def _remove_each_head(model, loss, zero: str, cumulative: bool) -> np.ndarray:
    base = loss()
    n_layers, n_heads = model.config.n_layers, model.config.n_heads
    out = np.zeros((n_layers, n_heads))
    for layer, block in enumerate(model.blocks):
        attn = block.attn
        for head in range(n_heads):
            if zero == "values":
                saved = attn.W_V.data[head].clone(), attn.b_V.data[head].clone()
                attn.W_V.data[head] = 0
                attn.b_V.data[head] = 0
            else:  # the columns head*d_v:(head+1)*d_v of W_O, which are not head `head`'s block
                cols = slice(head * attn.d_v, (head + 1) * attn.d_v)
                saved = attn.W_O.data[:, cols].clone()
                attn.W_O.data[:, cols] = 0
            out[layer, head] = loss() - base
            if not cumulative:
                if zero == "values":
                    attn.W_V.data[head], attn.b_V.data[head] = saved
                else:
                    attn.W_O.data[:, cols] = saved
    return out


def _expected_ablation(case):
    return [_ablation_losses(case), True]


def _diagnose_ablation(case, got, expected):
    problem = pair(got, 2, "importance")
    if problem:
        return problem
    importance, unchanged = got
    expected_importance = expected[0]
    problem = shape_problem(importance, expected_importance.shape, "importance (n_layers, n_heads)")
    if problem:
        return problem
    tol = 2e-4
    if not unchanged:
        return ("your function left the model changed: restore each head's rows of W_O after "
                "measuring it (the model is shared with the rest of the notebook)")
    if np.allclose(importance, expected_importance, atol=tol, rtol=1e-3):
        return None
    if np.allclose(importance, -expected_importance, atol=tol, rtol=1e-3):
        return ("the sign is flipped: importance = loss without the head - loss with every head "
                "(positive when the head helps)")
    if np.abs(importance).max() < tol:
        return ("every importance is ~0: zero the rows of the model's own W_O in place (under "
                "torch.no_grad()), not a copy of it")
    found = first_match(importance, {
        "you zeroed columns of W_O; head i's block is the rows i*d_v:(i+1)*d_v (W_O is "
        "(n_heads * d_v, d_model))": lambda: _ablation_losses(case, zero="columns"),
        "restore each head before removing the next: your importances add up the heads removed "
        "so far": lambda: _ablation_losses(case, cumulative=True),
    }, tol=1e-3)
    return found or (f"differs from the loss increases measured by removing each head, by up to "
                     f"{max_diff(importance, expected_importance):.2e}")


def check_head_importance(head_importance) -> None:
    """head_importance(model, inputs, targets, at, lengths) -> (n_layers, n_heads) loss
    increases."""
    run_public(_BY_ID["ablation"], [head_importance])

EXERCISES: list[Exercise] = [
    Exercise("ablation", "head_importance", ("head_importance",), _ablation_cases,
             _call_ablation, _expected_ablation, _diagnose_ablation),
]
_BY_ID = {ex.id: ex for ex in EXERCISES}
