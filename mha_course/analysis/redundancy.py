"""Are some heads copies of others? Pairwise head similarity, a clustered ordering, a 2-D map.

Two views of "the same head":
- where it looks: the Jensen-Shannon distance between two heads' attention distributions,
  per query row, averaged over rows and sentences (Clark et al. 2019 used the JS divergence);
      JSD(p, q) = 1/2 KL(p || m) + 1/2 KL(q || m),  m = (p + q) / 2,   distance = sqrt(JSD / ln 2)
  in [0, 1]: 0 for identical rows, 1 for rows with disjoint support;
- what it writes: linear CKA (Kornblith et al. 2019) between two heads' outputs over all tokens,
      CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)   (X, Y centred over tokens)
  in [0, 1]: 1 when one output is a rotation and scaling of the other, whatever d_v is.

    D = js_distance_matrix(acts.attentions)   # (n_total, n_total), n_total = n_layers * n_heads
    S = cka_matrix(acts.heads)                # (n_total, n_total)
    order = cluster_order(D)                  # heads, similar ones side by side
    xy = mds_embedding(D, seed=0)             # (n_total, 2), colour by head_labels(...)[1]

Heads are numbered layer by layer: flat index = layer * n_heads + head.
"""

from __future__ import annotations

import inspect

import numpy as np
from scipy.cluster.hierarchy import leaves_list, linkage, optimal_leaf_ordering
from scipy.spatial.distance import squareform
from scipy.special import entr
from sklearn.manifold import MDS

__all__ = ["js_distance_matrix", "linear_cka", "cka_matrix", "cluster_order", "mds_embedding",
           "head_labels", "layer_separation", "close_pairs"]


def _flat_heads(A: np.ndarray) -> np.ndarray:
    """(n_layers, n_heads, ...) -> (n_layers * n_heads, ...)."""
    return A.reshape(A.shape[0] * A.shape[1], *A.shape[2:])  # (n_layers * n_heads, ...)


def js_distance_matrix(attentions, query_masks=None) -> np.ndarray:
    """(n_total, n_total) mean Jensen-Shannon distance between every pair of heads.

    attentions: one (n_layers, n_heads, n, n) array per sentence, rows summing to 1;
    query_masks: None (every row), or one (n,) boolean per sentence, the query rows to compare
    (e.g. words only). The distance is computed row by row (base 2, in [0, 1]) and averaged over
    all compared rows of all sentences, each row weighing the same.
    """
    if not isinstance(attentions, (list, tuple)) or not attentions:
        raise TypeError("attentions must be a non-empty list of (n_layers, n_heads, n, n) arrays")
    total, rows = None, 0
    for k, A in enumerate(attentions):
        A = np.asarray(A, dtype=np.float64)
        if A.ndim != 4 or A.shape[-1] != A.shape[-2]:
            raise ValueError(f"attentions[{k}] must be (n_layers, n_heads, n, n); got {A.shape}")
        P = _flat_heads(A)  # (n_total, n, n)
        if query_masks is not None:
            P = P[:, np.asarray(query_masks[k], dtype=bool)]  # (n_total, n_rows, n)
        # JSD(p, q) = H(m) - (H(p) + H(q)) / 2 with entropies H in nats; one head against the
        # heads after it at a time keeps memory at (n_total, n_rows, n). The formula is symmetric
        # term by term, so row i's entries j > i are also column i's, bit for bit.
        H = entr(P).sum(-1)  # (n_total, n_rows)
        dist = np.zeros((len(P), len(P)))  # (n_total, n_total)
        for i in range(len(P)):
            H_mid = entr((P[i] + P[i:]) / 2).sum(-1)  # (n_total - i, n_rows)
            jsd = (H_mid - (H[i] + H[i:]) / 2) / np.log(2)  # (n_total - i, n_rows), in bits
            dist[i, i:] = dist[i:, i] = np.sqrt(np.clip(jsd, 0, 1)).sum(-1)  # summed over rows
        total = dist if total is None else total + dist
        rows += P.shape[1]
    if rows == 0:
        raise ValueError("no query rows to compare (every query mask is empty)")
    D = total / rows  # (n_total, n_total)
    np.fill_diagonal(D, 0.0)
    return (D + D.T) / 2  # exactly symmetric


def linear_cka(X, Y) -> float:
    """Linear CKA between two sets of outputs over the same n tokens: X (n, d_x), Y (n, d_y).

    CKA(X, Y) = ||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F) after centring each column; 1 when
    Y = X R for an orthogonal R times a scalar, near 0 for unrelated outputs. Invariant to
    isotropic scaling and rotation, not to arbitrary linear maps. A constant output gives NaN.
    """
    X, Y = np.asarray(X, dtype=np.float64), np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or Y.ndim != 2 or len(X) != len(Y):
        raise ValueError(f"X and Y must be (n, d_x) and (n, d_y) over the same n tokens; got "
                         f"{X.shape} and {Y.shape}")
    X, Y = X - X.mean(axis=0), Y - Y.mean(axis=0)
    cross = np.linalg.norm(Y.T @ X) ** 2  # ||Y^T X||_F^2
    norm = np.linalg.norm(X.T @ X) * np.linalg.norm(Y.T @ Y)
    return float(cross / norm) if norm > 0 else float("nan")


def cka_matrix(heads) -> np.ndarray:
    """(n_total, n_total) linear CKA between every pair of heads' outputs Z_i.

    heads (n_layers, n_heads, n_tokens, d_v), e.g. `Activations.heads`. One covariance matrix of
    all heads side by side gives every ||Z_j^T Z_i||_F at once.
    """
    Z = np.asarray(heads, dtype=np.float64)
    if Z.ndim != 4:
        raise ValueError(f"heads must be (n_layers, n_heads, n_tokens, d_v); got {Z.shape}")
    Z = _flat_heads(Z)  # (n_total, n_tokens, d_v)
    n_total, n_tokens, d_v = Z.shape
    Z = Z - Z.mean(axis=1, keepdims=True)  # centred over tokens
    side = Z.transpose(1, 0, 2).reshape(n_tokens, n_total * d_v)  # (n_tokens, n_total * d_v)
    C = side.T @ side  # (n_total * d_v, n_total * d_v)
    C = C.reshape(n_total, d_v, n_total, d_v)  # block (i, j) = Z_i^T Z_j
    fro2 = (C ** 2).sum(axis=(1, 3))  # (n_total, n_total): ||Z_i^T Z_j||_F^2
    self_norm = np.sqrt(np.diag(fro2))  # (n_total,): ||Z_i^T Z_i||_F
    with np.errstate(invalid="ignore", divide="ignore"):
        S = fro2 / np.outer(self_norm, self_norm)  # (n_total, n_total)
    return np.where(np.outer(self_norm, self_norm) > 0, S, np.nan)


def _check_square(name: str, M) -> np.ndarray:
    M = np.asarray(M, dtype=np.float64)
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ValueError(f"{name} must be a square (n_total, n_total) matrix; got {M.shape}")
    if not np.isfinite(M).all():
        raise ValueError(f"{name} contains NaN or inf (a constant head gives NaN CKA): drop that "
                         "head or fill the entry before clustering")
    return M


def cluster_order(distance, method: str = "average") -> np.ndarray:
    """(n_total,) an order of the heads that puts similar heads side by side: the leaves of a
    hierarchical clustering (scipy, `method` linkage, optimal leaf ordering) of the symmetric
    `distance` matrix. For a similarity S in [0, 1] (CKA) pass 1 - S.
    Reorder a matrix with M[np.ix_(order, order)]."""
    D = _check_square("distance", distance)
    if len(D) < 2:
        return np.arange(len(D))
    condensed = squareform((D + D.T) / 2, checks=False)  # (n_total * (n_total - 1) / 2,)
    Z = linkage(condensed, method=method)
    return leaves_list(optimal_leaf_ordering(Z, condensed))


def mds_embedding(distance, seed: int = 0, n_init: int = 4) -> np.ndarray:
    """(n_total, 2): metric MDS (scikit-learn, seeded) of the precomputed head distances, so that
    heads close on the plane are heads with similar attention (or outputs, with 1 - CKA)."""
    D = _check_square("distance", distance)
    D = (D + D.T) / 2
    np.fill_diagonal(D, 0.0)
    params = inspect.signature(MDS).parameters
    if "metric_mds" in params:  # scikit-learn >= 1.8 renamed dissimilarity -> metric
        mds = MDS(n_components=2, metric="precomputed", metric_mds=True, init="random",
                  n_init=n_init, random_state=seed)
    else:
        mds = MDS(n_components=2, dissimilarity="precomputed", n_init=n_init, random_state=seed)
    return mds.fit_transform(D)


def head_labels(n_layers: int, n_heads: int) -> tuple[list[str], np.ndarray]:
    """Names "L{layer}H{head}" and layer indices (n_total,) of the flat head order."""
    names = [f"L{layer}H{head}" for layer in range(n_layers) for head in range(n_heads)]
    return names, np.repeat(np.arange(n_layers), n_heads)


def layer_separation(distance, n_layers: int, n_heads: int) -> dict[str, float]:
    """Mean distance between heads of the same layer and of different layers (off-diagonal):
    Clark et al. (2019) saw heads of one layer cluster together, i.e. within < between."""
    D = _check_square("distance", distance)
    if D.shape != (n_layers * n_heads,) * 2:
        raise ValueError(f"distance must be ({n_layers * n_heads}, {n_layers * n_heads}) for "
                         f"{n_layers} layers x {n_heads} heads; got {D.shape}")
    _, layer = head_labels(n_layers, n_heads)
    same = layer[:, None] == layer[None, :]  # (n_total, n_total)
    off = ~np.eye(len(D), dtype=bool)
    within = float(D[same & off].mean()) if (same & off).any() else float("nan")
    between = float(D[~same].mean()) if (~same).any() else float("nan")
    return {"within_layer": within, "between_layers": between, "ratio": within / between}


def close_pairs(distance, threshold: float) -> np.ndarray:
    """(n_pairs, 2) flat head indices (i < j) of every pair whose distance is below `threshold`,
    the closest pair first (ties in index order)."""
    D = _check_square("distance", distance)
    i, j = np.nonzero(np.triu(D < threshold, k=1))  # (n_pairs,) each, i < j
    order = np.argsort(D[i, j], kind="stable")  # closest first
    return np.stack([i[order], j[order]], axis=1).astype(np.int64)  # (n_pairs, 2)
