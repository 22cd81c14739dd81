"""Why attention divides by sqrt(d_k): how a softmax over random scores saturates without it
(notebook 01).

    measures = softmax_saturation([4, 64, 512])   # {(d_k, "unscaled" | "scaled"): 3 means}
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mha_course.analysis.heads import row_entropy
from mha_course.np_attention import softmax, softmax_backward

__all__ = ["softmax_saturation"]


def softmax_saturation(d_ks: Sequence[int], *, n_queries: int = 2000, n_keys: int = 10,
                       seed: int = 2) -> dict[tuple[int, str], tuple[float, float, float]]:
    """How a softmax over random scores behaves with and without the 1/sqrt(d_k).

    For each d_k: n_queries random queries q and n_keys random keys k per query, entries N(0, 1),
    scores s = q . k ("unscaled") or q . k / sqrt(d_k) ("scaled"), weights a = softmax(s), and a
    random upstream gradient g = dL/da. Returns {(d_k, "unscaled" | "scaled"): (mean max weight,
    mean entropy H(a) = -sum_j a_j log a_j in nats, mean norm of dL/ds = softmax_backward(a, g))}.
    """
    rng = np.random.default_rng(seed)
    measures = {}
    for d_k in d_ks:
        q = rng.standard_normal((n_queries, 1, d_k))  # (n_queries, 1, d_k)
        k = rng.standard_normal((n_queries, n_keys, d_k))  # (n_queries, n_keys, d_k)
        g = rng.standard_normal((n_queries, n_keys))  # (n_queries, n_keys)
        dots = (q * k).sum(axis=-1)  # (n_queries, n_keys)
        for name, s in (("unscaled", dots), ("scaled", dots / np.sqrt(d_k))):
            a = softmax(s, axis=-1)  # (n_queries, n_keys)
            entropy = row_entropy(a)  # (n_queries,)
            grad = np.linalg.norm(softmax_backward(a, g), axis=-1)  # (n_queries,)
            measures[d_k, name] = (float(a.max(axis=-1).mean()), float(entropy.mean()),
                                   float(grad.mean()))
    return measures
