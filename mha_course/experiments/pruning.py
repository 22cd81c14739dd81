"""Which heads matter? Run a model's task to get ablation tables, Michel et al.'s gradient score
and pruning curves.

A *task* knows how to run a gated model and measure it; the models ship theirs:

    task = ToyTask(model, sentences)         # models.toy_model.task: accuracy per sub-task, loss
    task = MiniLMTask(minilm, texts)         # models.minilm.task: cosine to the full embeddings
    effects = ablation_effects(task)          # {"zero": {metric: (n_layers, n_heads)}, "mean": ...}
    scores = gradient_importance(task)        # (n_layers, n_heads), ToyTask only
    curves = pruning_curves(task, scores, "accuracy", n_random=5)

Any object with n_layers, n_heads, metrics and evaluate(head_gates, ablation) works as a task
(zero and mean ablation: `mha_course.models.ablation`). The orders, the gradient score from given
gradients and the curves' arithmetic are `mha_course.analysis.pruning`.
"""

from __future__ import annotations

import numpy as np

from mha_course.analysis import pruning
from mha_course.analysis.pruning import PruningCurves
from mha_course.models import toy_language
from mha_course.models.ablation import ABLATIONS, check_ablation
from mha_course.models.toy_model import ToyTask

__all__ = ["ablation_effects", "gradient_importance", "pruning_curves", "toy_pruning",
           "curves_json"]


def ablation_effects(task, ablations=ABLATIONS, layers=None) -> dict[str, dict[str, np.ndarray]]:
    """Remove one head at a time: {ablation: {metric: (n_layers, n_heads)}}, each entry the
    metric with that head ablated minus the metric of the full model (for accuracy, negative =
    the head was needed; for loss, positive). n_layers * n_heads evaluations per ablation.
    layers: None (every layer), or the layers whose heads to measure (n_heads evaluations per
    layer and ablation); the rows of the other layers are NaN."""
    layers = range(task.n_layers) if layers is None else [int(layer) for layer in layers]
    bad = [layer for layer in layers if not 0 <= layer < task.n_layers]
    if bad:
        raise ValueError(f"layers must be in [0, {task.n_layers - 1}]; got {bad}")
    full = task.evaluate(None)
    out = {}
    for ablation in ablations:
        check_ablation(ablation)
        table = {m: np.full((task.n_layers, task.n_heads), np.nan) for m in full}
        for layer in layers:
            for head in range(task.n_heads):
                gates = np.ones((task.n_layers, task.n_heads))  # (n_layers, n_heads)
                gates[layer, head] = 0.0
                result = task.evaluate(gates, ablation)
                for m in full:
                    table[m][layer, head] = result[m] - full[m]
        out[ablation] = table
    return out


def gradient_importance(task, head_gates=None, normalise: bool = True) -> np.ndarray:
    """Michel et al. (2019): I_h = E_x |dL(x)/dxi_h| (n_layers, n_heads), the mean over
    evaluation items of the absolute gate gradient, at the given gates (None: all 1); with
    `normalise`, divided by each layer's L2 norm. Needs a task with `gate_gradients` (ToyTask:
    MiniLM's proxy is flat at xi = 1, where the pruned and full embeddings coincide). Items with
    no evaluated position (`task.has_positions()`, where the task has it) are left out."""
    if not hasattr(task, "gate_gradients"):
        raise TypeError(f"{type(task).__name__} has no gate_gradients; the gradient score needs a "
                        "differentiable loss (use ablation_effects for this task)")
    grads = task.gate_gradients(head_gates)  # (n_items, n_layers, n_heads)
    if hasattr(task, "has_positions"):
        grads = grads[task.has_positions()]  # (n_kept, n_layers, n_heads)
    return pruning.importance_from_gradients(grads, normalise)


def pruning_curves(task, importance, metric: str, *, n_random: int = 5, seed: int = 0,
                   steps=None, ablation: str = "zero", order=None) -> PruningCurves:
    """Accuracy (or any metric of the task) as heads are removed one after another.

    importance (n_layers, n_heads), higher = more important: the "importance" order removes the
    least important first, "reverse" the most important first, and `n_random` seeded random
    orders give the baseline's mean and spread (`analysis.pruning.pruning_orders`). `order`
    overrides the importance order (e.g. from `iterative_order`). steps: the numbers of removed
    heads to measure (default 0..n_total); at most (2 + n_random) * len(steps) evaluations, as
    the same set of removed heads is measured once.
    """
    check_ablation(ablation)
    n_total = task.n_layers * task.n_heads
    importance = np.asarray(importance, dtype=np.float64)
    if importance.shape != (task.n_layers, task.n_heads):
        raise ValueError(f"importance must be (n_layers, n_heads) = ({task.n_layers}, "
                         f"{task.n_heads}); got {importance.shape}")
    if metric not in task.metrics:
        raise ValueError(f"metric must be one of {task.metrics}; got {metric!r}")
    steps = np.arange(n_total + 1) if steps is None else np.asarray(steps, dtype=np.int64)
    if steps.ndim != 1 or steps.min() < 0 or steps.max() > n_total:
        raise ValueError(f"steps must be numbers of heads in [0, {n_total}]; got {steps}")
    orders = pruning.pruning_orders(importance, n_random=n_random, seed=seed, order=order)
    measured = {}  # each set of removed heads once (k = 0 and k = n_total come in every order)

    def measure(run, k):
        key = frozenset(run[:k].tolist())
        if key not in measured:
            n_layers, n_heads = task.n_layers, task.n_heads
            gates = pruning.gates_without(run[:k], n_layers, n_heads)  # (n_layers, n_heads)
            measured[key] = task.evaluate(gates, ablation)[metric]
        return measured[key]

    curves = {name: np.array([[measure(run, k) for k in steps] for run in runs],
                             dtype=np.float64).reshape(len(runs), len(steps))  # (n_runs, n_steps)
              for name, runs in orders.items()}
    return PruningCurves(n_removed=steps, n_total=n_total, metric=metric, ablation=ablation,
                         curves=curves, orders=orders)


def toy_pruning(model, n_sentences: int = 64, seed: int = 0, n_random: int = 5,
                ablation: str = "zero") -> tuple[np.ndarray, PruningCurves]:
    """The toy model's heads, pruned in the order of Michel et al.'s gradient score: (the score
    (n_layers, n_heads), the accuracy curves for the importance, random and reverse orders) on
    `n_sentences` fresh sentences drawn with `seed` (`python -m mha_course prune-toy`)."""
    if n_sentences < 1:
        raise ValueError(f"n_sentences must be >= 1; got {n_sentences}")
    task = ToyTask(model, toy_language.generate(n_sentences, seed=seed), seed=seed)
    importance = gradient_importance(task)  # (n_layers, n_heads)
    curves = pruning_curves(task, importance, "accuracy", n_random=n_random, seed=seed,
                            ablation=ablation)
    return importance, curves


def curves_json(importance: np.ndarray, curves: PruningCurves) -> dict:
    """The score and the curves as plain JSON data (lists of floats and ints)."""
    return {"metric": curves.metric, "ablation": curves.ablation, "n_total": curves.n_total,
            "n_removed": curves.n_removed.tolist(), "importance": importance.tolist(),
            "curves": {name: c.tolist() for name, c in curves.curves.items()},
            "orders": {name: np.asarray(o).tolist() for name, o in curves.orders.items()}}
