"""How W^O combines the heads: the layer's output as a sum of per-head contributions, and the
size of each one (Kobayashi et al. 2020, "Attention is not only a weight").

Split W^O (n_heads * d_v, d_model) into row blocks W^O_i (d_v, d_model), one per head. Then

    Concat(Z_1, ..., Z_h) W^O + b^O = sum_i Z_i W^O_i + b^O
    Z_i W^O_i = sum_j alpha_ij f_i(x_j),    f_i(x) = (x W^V_i + b^V_i) W^O_i

so head i adds the vector Z_i W^O_i to every token, and that vector is the attention-weighted sum
of transformed value vectors f_i(x_j). A large weight alpha_ij on a key whose f_i(x_j) is short
moves nothing: the weight alone overstates what the head does. Kobayashi et al. read
||alpha_ij f_i(x_j)|| instead of alpha_ij, and found that the heavy attention on [CLS], [SEP]
and punctuation mostly carries short vectors.

    summary = head_summary(acts)    # sharpness and contribution per head (n_layers, n_heads)
    sharp_but_small(summary)        # heads that look decisive on a heatmap but add little
"""

from __future__ import annotations

import numpy as np

from mha_course.np_attention import project

__all__ = ["head_contributions", "contribution_norms", "value_vectors", "weighted_vector_norms",
           "norm_based_attention", "corpus_contribution_norms", "head_summary", "sharp_but_small",
           "describe_sharp_heads"]


def _w_o_blocks(W_O, n_heads: int, d_v: int) -> np.ndarray:
    W_O = np.asarray(W_O)
    if W_O.ndim != 2 or W_O.shape[0] != n_heads * d_v:
        raise ValueError(f"W_O must be (n_heads * d_v, d_model) = ({n_heads * d_v}, d_model) for "
                         f"{n_heads} heads of d_v = {d_v}; got {W_O.shape}")
    return W_O.reshape(n_heads, d_v, W_O.shape[1])  # (n_heads, d_v, d_model): block i = W^O_i


def head_contributions(heads, W_O, head_gates=None) -> np.ndarray:
    """Each head's share of the layer output, xi_i Z_i W^O_i.

    heads (..., n_heads, n, d_v): Z_i (e.g. MHAOutput.heads); W_O (n_heads * d_v, d_model);
    head_gates None or (n_heads,) / (..., n_heads). Returns (..., n_heads, n, d_model); summed
    over the head axis and plus b^O it is the attention output `out`.
    """
    heads = np.asarray(heads)
    if heads.ndim < 3:
        raise ValueError(f"heads must be (..., n_heads, n, d_v); got shape {heads.shape}")
    n_heads, d_v = heads.shape[-3], heads.shape[-1]
    blocks = _w_o_blocks(W_O, n_heads, d_v).astype(heads.dtype, copy=False)
    # (..., n_heads, n, d_v) @ (n_heads, d_v, d_model):
    out = heads @ blocks  # (..., n_heads, n, d_model)
    if head_gates is not None:
        gates = np.asarray(head_gates, dtype=out.dtype)[..., None, None]  # (..., n_heads, 1, 1)
        out = out * gates  # (..., n_heads, n, d_model)
    return out


def contribution_norms(heads, W_O) -> np.ndarray:
    """||Z_i W^O_i|| per head and token: heads (..., n_heads, n, d_v) -> (..., n_heads, n)."""
    return np.linalg.norm(head_contributions(heads, W_O), axis=-1)


def value_vectors(X, params) -> np.ndarray:
    """f_i(x_j) = (x_j W^V_i + b^V_i) W^O_i, every head's transformed value of every token:
    X (..., n, d_model), the attention's input; params an MHAParams (NumPy). Returns
    (..., n_heads, n, d_model)."""
    V = project(np.asarray(X), np.asarray(params.W_V),
                None if params.b_V is None else np.asarray(params.b_V))  # (..., n_heads, n, d_v)
    return head_contributions(V, params.W_O)


def weighted_vector_norms(weights, X, params) -> np.ndarray:
    """||alpha_ij f_i(x_j)|| = alpha_ij ||f_i(x_j)||: weights (..., n_heads, n_q, n_k), X
    (..., n_k, d_model), the attention's input -> (..., n_heads, n_q, n_k). Summing the vectors
    (not the norms) over j gives Z_i W^O_i."""
    f_norm = np.linalg.norm(value_vectors(X, params), axis=-1)  # (..., n_heads, n_k)
    return np.asarray(weights) * f_norm[..., None, :]  # (..., n_heads, n_q, n_k)


def norm_based_attention(weights, X, params) -> np.ndarray:
    """Kobayashi's norm-based map: ||alpha_ij f_i(x_j)|| divided by its row sum, so that it
    reads like an attention map (rows sum to 1) and can be drawn next to alpha itself."""
    N = weighted_vector_norms(weights, X, params)  # (..., n_heads, n_q, n_k)
    row = N.sum(axis=-1, keepdims=True)  # (..., n_heads, n_q, 1)
    return np.divide(N, row, out=np.zeros_like(N), where=row > 0)


def _sentence_slices(acts) -> list[slice]:
    """The rows of each sentence in an `Activations` (sentences are contiguous)."""
    bounds = np.flatnonzero(np.diff(acts.sentence)) + 1
    starts = np.concatenate([[0], bounds])
    stops = np.concatenate([bounds, [acts.n_tokens]])
    return [slice(int(a), int(b)) for a, b in zip(starts, stops)]


def corpus_contribution_norms(acts) -> np.ndarray:
    """(n_layers, n_heads, n_tokens): ||Z_i W^O_i|| for every token of an `Activations`, one
    layer at a time (the contributions themselves would be n_layers * n_heads * n_tokens * d_model
    numbers)."""
    return np.stack([contribution_norms(acts.heads[layer], acts.params[layer].W_O)
                     for layer in range(acts.n_layers)])  # (n_layers, n_heads, n_tokens)


def head_summary(acts) -> dict[str, np.ndarray]:
    """Per head (n_layers, n_heads), over every query token of an `Activations`:

    sharpness: mean over query rows of max_j alpha_ij (1: each row puts all its weight on one key);
    contribution: mean ||Z_i W^O_i||; contribution_share: mean over tokens of
    ||Z_i W^O_i|| / sum_h ||Z_h W^O_h|| (the head's share of its layer; 1/n_heads if equal);
    top_key_norm: mean over rows of ||f_i(x_j*)|| at the most-attended key j*, divided by the
    sentence's mean ||f_i(x_j)|| (below 1: the head's favourite keys carry short vectors).
    The value norms are exact on token (or piece) level activations; on words pooled from pieces
    (`collect_minilm` with pooling) they are those of the pooled inputs, an approximation.
    """
    norms = corpus_contribution_norms(acts)  # (n_layers, n_heads, n_tokens)
    total = norms.sum(axis=1, keepdims=True)  # (n_layers, 1, n_tokens)
    share = np.divide(norms, total, out=np.zeros_like(norms), where=total > 0)
    sharp, top_ratio, rows = 0.0, 0.0, 0
    for A, where in zip(acts.attentions, _sentence_slices(acts)):
        X = acts.attn_in[:, where]  # (n_layers, n, d_model)
        f_norm = np.stack([np.linalg.norm(value_vectors(X[layer], acts.params[layer]), axis=-1)
                           for layer in range(acts.n_layers)])  # (n_layers, n_heads, n)
        top = A.argmax(axis=-1)  # (n_layers, n_heads, n): the most-attended key of each query
        typical = f_norm.mean(axis=-1, keepdims=True)  # (n_layers, n_heads, 1)
        ratio = np.divide(np.take_along_axis(f_norm, top, axis=-1), typical,
                          out=np.ones_like(f_norm), where=typical > 0)  # (n_layers, n_heads, n)
        sharp = sharp + A.max(axis=-1).sum(axis=-1)  # (n_layers, n_heads)
        top_ratio = top_ratio + ratio.sum(axis=-1)  # (n_layers, n_heads)
        rows += A.shape[-1]
    return {"sharpness": sharp / rows, "contribution": norms.mean(axis=-1),
            "contribution_share": share.mean(axis=-1), "top_key_norm": top_ratio / rows}


def sharp_but_small(summary: dict, min_sharpness: float = 0.5,
                    max_share: float | None = None) -> list[dict]:
    """Heads whose attention is sharp (sharpness >= min_sharpness) but whose contribution is small
    (contribution_share <= max_share; default half an equal share, 0.5 / n_heads), sorted by
    sharpness / share, the most misleading heatmap first. Rows: layer, head, sharpness,
    contribution_share, contribution."""
    sharpness = np.asarray(summary["sharpness"])
    share = np.asarray(summary["contribution_share"])
    if sharpness.shape != share.shape or sharpness.ndim != 2:
        raise ValueError(f"summary tables must be (n_layers, n_heads) alike; got "
                         f"{sharpness.shape} and {share.shape}")
    max_share = 0.5 / sharpness.shape[1] if max_share is None else max_share
    contribution = np.asarray(summary["contribution"])  # (n_layers, n_heads)
    found = np.nonzero((sharpness >= min_sharpness) & (share <= max_share))
    rows = [{"layer": int(layer), "head": int(head), "sharpness": float(sharpness[layer, head]),
             "contribution_share": float(share[layer, head]),
             "contribution": float(contribution[layer, head])}
            for layer, head in zip(*found)]
    return sorted(rows, key=lambda r: -r["sharpness"] / max(r["contribution_share"], 1e-12))


def describe_sharp_heads(summary: dict, top: int = 3, min_sharpness: float = 0.5) -> str:
    """Text for a `head_summary`: how many heads are sharp but small (`sharp_but_small` with its
    default share, half an equal share), then the `top` sharp heads with the smallest share for
    their sharpness, each with its sharpness, its share and `top_key_norm` (the value norm at its
    favourite key, relative to the sentence's typical one)."""
    if top < 1:
        raise ValueError(f"top must be at least 1; got {top}")
    n_heads = np.asarray(summary["sharpness"]).shape[1]
    strict = sharp_but_small(summary, min_sharpness)
    ranked = sharp_but_small(summary, min_sharpness, max_share=1.0)  # every sharp head
    lines = [f"{len(strict)} head(s) with sharpness >= {min_sharpness:g} and share <= "
             f"{0.5 / n_heads:.3f}; the sharp heads with the smallest share for their sharpness "
             f"(equal share {1 / n_heads:.3f}):"]
    for r in ranked[:top]:
        layer, head = r["layer"], r["head"]
        lines.append(f"    L{layer}H{head}: sharpness {r['sharpness']:.2f}, share "
                     f"{r['contribution_share']:.3f}, value norm at its favourite key "
                     f"{np.asarray(summary['top_key_norm'])[layer, head]:.2f} of the typical")
    return "\n".join(lines)
