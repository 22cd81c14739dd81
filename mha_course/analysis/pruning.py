"""Which heads matter, on arrays: pruning orders, gate tables, Michel et al.'s gradient score from
given gate gradients, and pruning curves once measured.

Every head h has a gate xi_h that multiplies its output before W^O (`head_gates` in the cores):

    out = Concat(xi_1 Z_1, ..., xi_h Z_h) W^O + b^O,     xi = 1: the trained model

Heads are numbered by a flat index, layer * n_heads + head (the order of `importance.ravel()`).

- gradient score (Michel et al. 2019): I_h = E_x |dL(x)/dxi_h| at xi = 1, normalised by its
  layer's L2 norm (`importance_from_gradients`);
- pruning orders: least important first (`prune_order`), greedy with re-scoring after every
  removal (`iterative_order`), and the orders a pruning curve compares (`pruning_orders`: the
  importance order, its reverse, seeded random orders);
- `PruningCurves`: a metric after removing the first k heads of each order; `curve_table` sums
  it up. Voita et al. (2019) found that most heads can go at little cost and that the specialised
  heads are the last to go; the curves test that rather than assume it.

What runs a model to get these numbers (ablation tables, gate gradients, the measured curves) is
`mha_course.experiments.pruning`, on the models' tasks (`models.toy_model.task.ToyTask`,
`models.minilm.task.MiniLMTask`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["gates_without", "normalise_per_layer", "importance_from_gradients", "prune_order",
           "iterative_order", "removal_step", "pruning_orders", "PruningCurves", "curve_table"]


def gates_without(heads, n_layers: int, n_heads: int) -> np.ndarray:
    """(n_layers, n_heads) gates: 0 for the flat head indices in `heads`, 1 elsewhere
    (flat index = layer * n_heads + head)."""
    gates = np.ones(n_layers * n_heads)  # (n_layers * n_heads,)
    gates[np.asarray(heads, dtype=np.int64)] = 0.0
    return gates.reshape(n_layers, n_heads)  # (n_layers, n_heads)


# --------------------------------------------------------------------------- importance
def normalise_per_layer(scores) -> np.ndarray:
    """scores (n_layers, n_heads) divided by each layer's L2 norm (Michel et al. 2019), so that
    layers whose gradients are larger overall do not take every top place. A zero layer stays 0."""
    scores = np.asarray(scores, dtype=np.float64)
    norm = np.linalg.norm(scores, axis=1, keepdims=True)  # (n_layers, 1)
    return np.divide(scores, norm, out=np.zeros_like(scores), where=norm > 0)


def importance_from_gradients(gate_gradients, normalise: bool = True) -> np.ndarray:
    """Michel et al. (2019): I_h = E_x |dL(x)/dxi_h|, (n_layers, n_heads), from the gate gradients
    (n_items, n_layers, n_heads) of the evaluation items; with `normalise`, divided by each
    layer's L2 norm (`normalise_per_layer`)."""
    grads = np.asarray(gate_gradients)  # averaged in their own dtype (float32 from a model)
    if grads.ndim != 3 or len(grads) == 0:
        raise ValueError("gate_gradients must be (n_items, n_layers, n_heads) with n_items >= 1; "
                         f"got shape {grads.shape}")
    scores = np.abs(grads).mean(axis=0).astype(np.float64)  # (n_layers, n_heads)
    return normalise_per_layer(scores) if normalise else scores


# --------------------------------------------------------------------------- orders
def prune_order(importance) -> np.ndarray:
    """Flat head indices (layer * n_heads + head), least important first (stable for ties)."""
    return np.argsort(np.asarray(importance, dtype=np.float64).ravel(), kind="stable")


def iterative_order(score_fn, n_layers: int, n_heads: int) -> np.ndarray:
    """Flat head indices in the order of greedy pruning with re-scoring: at each step, score the
    heads with the current gates (score_fn(gates) -> (n_layers, n_heads)) and remove the least
    important head still in place. n_layers * n_heads calls of score_fn (on a model, each call
    is a run of it: see `experiments.pruning`)."""
    gates = np.ones((n_layers, n_heads))  # (n_layers, n_heads)
    order = []
    for _ in range(n_layers * n_heads):
        scores = np.array(score_fn(gates.copy()), dtype=np.float64).ravel()  # (n_layers * n_heads,)
        scores[np.asarray(order, dtype=np.int64)] = np.inf  # already removed
        head = int(np.argmin(scores))
        order.append(head)
        gates.flat[head] = 0.0
    return np.asarray(order)  # (n_layers * n_heads,)


def removal_step(order, n_layers: int, n_heads: int) -> np.ndarray:
    """(n_layers, n_heads): the step at which each head is removed (0 = first to go)."""
    step = np.empty(n_layers * n_heads, dtype=np.int64)  # (n_layers * n_heads,)
    step[np.asarray(order)] = np.arange(len(order))
    return step.reshape(n_layers, n_heads)  # (n_layers, n_heads)


def pruning_orders(importance, *, n_random: int = 5, seed: int = 0,
                   order=None) -> dict[str, np.ndarray]:
    """The orders a pruning curve compares, {name: (n_runs, n_total) flat head indices}:
    "importance" (least important first, or `order` when given, e.g. from `iterative_order`),
    "reverse" (most important first) and `n_random` seeded random orders."""
    importance = np.asarray(importance, dtype=np.float64)
    if importance.ndim != 2:
        raise ValueError(f"importance must be (n_layers, n_heads); got {importance.shape}")
    n_total = importance.size
    first = prune_order(importance) if order is None else np.asarray(order, dtype=np.int64)
    if sorted(first.tolist()) != list(range(n_total)):
        raise ValueError(f"order must be a permutation of the {n_total} flat head indices")
    rng = np.random.default_rng(seed)
    random = (np.stack([rng.permutation(n_total) for _ in range(n_random)]) if n_random
              else np.zeros((0, n_total), dtype=np.int64))  # (n_random, n_total)
    return {"importance": first[None], "reverse": prune_order(-importance)[None],  # (1, n_total)
            "random": random}


# --------------------------------------------------------------------------- curves
@dataclass
class PruningCurves:
    """metric after removing the first k heads of an order, for k in n_removed.

    curves: {"importance", "reverse", "random"} -> (n_runs, n_steps) (one run for the first two,
    n_random for "random"); orders: the same keys -> (n_runs, n_total) flat head indices in the
    order of removal; metric, ablation: what was measured and how heads were removed.
    """
    n_removed: np.ndarray
    n_total: int
    metric: str
    ablation: str
    curves: dict
    orders: dict

    @property
    def fraction(self) -> np.ndarray:
        """(n_steps,) share of heads removed."""
        return self.n_removed / self.n_total

    def mean(self, name: str = "random") -> np.ndarray:
        """(n_steps,) mean over runs."""
        return self.curves[name].mean(axis=0)

    def spread(self, name: str = "random") -> np.ndarray:
        """(n_steps,) standard deviation over runs (0 for a single run)."""
        return self.curves[name].std(axis=0)

    def removable_fraction(self, name: str = "importance", tolerance: float = 0.01,
                           higher_is_better: bool = True) -> float:
        """The largest share of heads removed, in the order `name` (mean over runs), at which
        the metric is still within `tolerance` of the full model's (n_removed[0] must be 0)."""
        curve = self.mean(name)
        if self.n_removed[0] != 0:
            raise ValueError("the curves do not start from the full model (n_removed[0] != 0)")
        if higher_is_better:
            ok = curve >= curve[0] - tolerance  # (n_steps,)
        else:
            ok = curve <= curve[0] + tolerance  # (n_steps,)
        bad = np.flatnonzero(~ok)
        last_ok = len(curve) - 1 if len(bad) == 0 else bad[0] - 1
        return float(self.fraction[last_ok])


def curve_table(curves: PruningCurves, at: int, tolerances=(0.01, 0.05)) -> str:
    """A text table, one row per order (importance, random, reverse): the share of heads that
    can go while the metric stays within each tolerance of the full model's
    (`removable_fraction`), and the metric with `at` heads removed (a step of the curves)."""
    where = np.flatnonzero(curves.n_removed == at)
    if len(where) == 0:
        raise ValueError(f"at must be one of the measured steps {curves.n_removed.tolist()}; "
                         f"got {at}")
    metric = f"{curves.metric}, {at} removed"
    lines = [f"{'order':<12}" + "".join(f"{f'within {t:g}':>12}" for t in tolerances)
             + f"{metric:>{len(metric) + 4}}"]
    for name in ("importance", "random", "reverse"):
        lines.append(f"{name:<12}" + "".join(f"{curves.removable_fraction(name, t):12.2f}"
                                             for t in tolerances)
                     + f"{curves.mean(name)[where[0]]:{len(metric) + 4}.3f}")
    return "\n".join(lines)
