"""What the models' task adapters share (`toy_model.task.ToyTask`, `minilm.task.MiniLMTask`): the
two ways to remove a head, the check of a gate table, and the first layer a gate changes.

Every head h has a gate xi_h that multiplies its output before W^O (`head_gates` in the cores):

    out = Concat(xi_1 Z_1, ..., xi_h Z_h) W^O + b^O,     xi = 1: the trained model

- zero ablation: xi_h = 0, the head is gone;
- mean ablation: Z_h is replaced by its mean over the corpus, mu_h (what the head says "on
  average", so that only its token-specific information is removed). The same as xi_h = 0 plus
  a shift of the output bias: b^O + sum_h (1 - xi_h) mu_h W^O_h.
"""

from __future__ import annotations

import numpy as np

from mha_course.params import check_head_gates

__all__ = ["ABLATIONS", "check_ablation", "layer_gates", "first_gated_layer"]

ABLATIONS = ("zero", "mean")


def check_ablation(ablation: str) -> None:
    if ablation not in ABLATIONS:
        raise ValueError(f"ablation must be one of {ABLATIONS}; got {ablation!r}")


def layer_gates(head_gates, n_layers: int, n_heads: int) -> np.ndarray:
    """head_gates, one gate per head of the model (checked by `params.check_head_gates`), as a
    float array (n_layers, n_heads); None: every gate 1."""
    if head_gates is None:
        return np.ones((n_layers, n_heads))  # (n_layers, n_heads)
    check_head_gates(head_gates, n_layers, n_heads, batch=())
    return np.asarray(head_gates, dtype=np.float64)  # (n_layers, n_heads)


def first_gated_layer(gates) -> int | None:
    """The first layer (gates (n_layers, n_heads)) with a gate that is not 1, or None: the layers
    below it compute what the full model computes, so an evaluation can start there."""
    changed = np.flatnonzero((np.asarray(gates) != 1.0).any(axis=1))  # layers with a gated head
    return int(changed[0]) if len(changed) else None
