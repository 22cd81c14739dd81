"""Circuits of a causal (decoder) Transformer: the previous-token head, the induction head that
uses it, and the weight matrices through which one reads them (Elhage et al. 2021, "A
Mathematical Framework for Transformer Circuits"; Olsson et al. 2022, "In-context Learning and
Induction Heads").

Two kinds of functions, NumPy only, none of which runs a model:

- scores of attention patterns: attention in the Cache layout (n_layers, batch, n_heads, n, n)
  (rows = queries, columns = keys; one sequence's (n_layers, n_heads, n, n) with tokens (n,) is
  accepted too) and integer tokens (batch, n); each returns one score per head, (n_layers,
  n_heads). Every position is taken to be real (no padding): the induction data has none.
- circuits of weights, in the course's row-vector convention (x is a row, a head reads x W_Q):
  a head's attention score from query x_q to key x_k is x_q W_Q W_K^T x_k^T / sqrt(d_head), so
  W_QK = W_Q W_K^T; what it writes for an attended x is x W_V W_O, so W_OV = W_V W_O (both
  d_model x d_model, rank <= d_head). Elhage et al. write column vectors: their W_QK is ours,
  their W_OV is our W_OV^T. Biases are left out (the course's attention has none by default).

Low-rank products are `FactoredMatrix` objects (left (m, r) @ right (r, k)): norms and
eigenvalues come from r x r matrices, never from the m x k product.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "previous_token_score", "prefix_matching_score", "duplicate_token_score",
    "in_context_learning_score", "FactoredMatrix", "qk_matrix", "ov_matrix", "qk_circuit",
    "ov_circuit", "ov_copying_score", "diagonal_dominance", "k_composition_score",
    "q_composition_score", "v_composition_score", "composition_scores",
]

# Rows of a circuit that `diagonal_dominance` materialises at once (memory: _ROW_BLOCK x vocab).
_ROW_BLOCK = 1024


# ---------------------------------------------------------------------------------- patterns
def _as_batched(attention, tokens=None) -> tuple[np.ndarray, np.ndarray | None]:
    """attention (n_layers, batch, n_heads, n, n) and tokens (batch, n), checked; a single
    sequence's (n_layers, n_heads, n, n) and (n,) become a batch of one."""
    A = np.asarray(attention, dtype=float)
    if A.ndim == 4:
        A = A[:, None]  # (n_layers, 1, n_heads, n, n)
        if tokens is not None:
            tokens = np.asarray(tokens)[None]  # (1, n)
    if A.ndim != 5 or A.shape[-1] != A.shape[-2]:
        raise ValueError("attention must be (n_layers, batch, n_heads, n, n) (the Cache layout) or "
                         "one sequence's (n_layers, n_heads, n, n); got shape "
                         f"{np.shape(attention)}")
    if tokens is None:
        return A, None
    T = np.asarray(tokens)
    batch, n = A.shape[1], A.shape[-1]
    if T.shape != (batch, n) or not np.issubdtype(T.dtype, np.integer):
        raise ValueError(f"tokens must be integer ids of shape (batch, n) = ({batch}, {n}) to "
                         f"match attention {A.shape}; got {T.dtype} of shape {T.shape}")
    return A, T


def _mean_mass(A: np.ndarray, keys: np.ndarray, what: str) -> np.ndarray:
    """Mean over the queries that have a key in `keys` of the weight on those keys.

    A (n_layers, batch, n_heads, n, n); keys (batch, n, n) bool, keys[b, i, k] = key k counts for
    query i of sequence b. Returns (n_layers, n_heads); ValueError when no query qualifies."""
    queries = keys.any(axis=-1)  # (batch, n)
    if not queries.any():
        raise ValueError(f"no query qualifies for the {what}; give sequences in which tokens "
                         "repeat")
    mass = (A * keys[None, :, None]).sum(axis=-1)  # (n_layers, batch, n_heads, n)
    total = (mass * queries[None, :, None]).sum(axis=(1, 3))  # (n_layers, n_heads)
    return total / queries.sum()


def previous_token_score(attention) -> np.ndarray:
    """Mean weight on the previous position, mean over queries i >= 1 (and sequences) of
    A[i, i - 1]: 1 for a head that always looks one back. (n_layers, n_heads)."""
    A, _ = _as_batched(attention)
    if A.shape[-1] < 2:
        raise ValueError(f"the previous-token score needs n >= 2 positions; got n = {A.shape[-1]}")
    below = np.diagonal(A, offset=-1, axis1=-2, axis2=-1)  # (n_layers, batch, n_heads, n - 1)
    return below.mean(axis=(1, 3))


def _same_token(T: np.ndarray) -> np.ndarray:
    """same[b, i, j]: token j of sequence b equals token i and comes strictly before it."""
    n = T.shape[-1]
    earlier = np.tril(np.ones((n, n), dtype=bool), k=-1)  # (n, n): j < i
    return (T[:, :, None] == T[:, None, :]) & earlier  # (batch, n, n)


def prefix_matching_score(attention, tokens) -> np.ndarray:
    """The induction (prefix-matching) score of every head, (n_layers, n_heads).

    For query i with token t_i, the targets are the keys k = j + 1 that follow an earlier
    occurrence j of t_i (t_j = t_i, j < i) and come before the query (k < i, so a token that
    repeats at once, j = i - 1, does not send the query to itself). The score is the weight on
    the targets, sum_{k in targets(i)} A[i, k], averaged over the queries that have a target (and
    over sequences). On `[A B C D A B C D]` the second A's target is the first B: an induction
    head, which predicts B, scores 1. Every earlier occurrence counts, not only the latest: with
    a small vocabulary a token may also occur by chance inside the repeated segment, and the
    head attends after each occurrence. ValueError when no token repeats (no query qualifies).
    """
    A, T = _as_batched(attention, tokens)
    same = _same_token(T)  # (batch, n, n): j earlier occurrence of t_i
    targets = np.zeros_like(same)
    targets[:, :, 1:] = same[:, :, :-1]  # (batch, n, n): k = j + 1
    n = T.shape[-1]
    targets &= np.tril(np.ones((n, n), dtype=bool), k=-1)  # k < i
    return _mean_mass(A, targets, "prefix-matching score: no token recurs after a gap")


def duplicate_token_score(attention, tokens) -> np.ndarray:
    """Weight on earlier occurrences of the query's own token, sum_{j < i, t_j = t_i} A[i, j],
    averaged over the queries whose token occurred before: (n_layers, n_heads), 1 for a pure
    duplicate-token head. The attention *mass*, on token ids; `heads.duplicate_score` is the
    fraction of top keys, on annotated sentences. ValueError when no token repeats."""
    A, T = _as_batched(attention, tokens)
    return _mean_mass(A, _same_token(T), "duplicate-token score: no token occurs twice")


def _positions(window, n: int, name: str) -> np.ndarray:
    """The positions a window (an int, a slice or a sequence of ints) picks out of n."""
    index = [window] if isinstance(window, (int, np.integer)) else window
    try:
        picked = np.arange(n)[index]  # (n_picked,)
    except IndexError as error:
        raise ValueError(f"{name} window {window!r} is outside the n = {n} positions") from error
    if picked.ndim != 1 or picked.size == 0:
        raise ValueError(f"{name} window {window!r} picks no position of n = {n}")
    return picked


def in_context_learning_score(losses, early=None, late=None):
    """Mean loss over a late window of positions minus mean loss over an early one.

    losses (..., n): the next-token loss at each position (mean over sequences), e.g. one row per
    training checkpoint. Negative = later tokens are predicted better because the model uses the
    context. Returns a float for one row, an array of shape losses.shape[:-1] otherwise.
    early, late: an int, a slice or a sequence of positions. Olsson et al. (2022) take token 500
    minus token 50 of 512-token contexts (~10% and ~98% of the context). Our contexts are tens of
    tokens, where one position's loss is noisy, so the defaults average over quarters of the
    context, as far apart as it allows: early = positions 1 to n//4 - 1, at least position 1
    (position 0 has no context: its loss is the unigram guess), late = the last n//4 positions.
    """
    L = np.asarray(losses, dtype=float)
    if L.ndim < 1 or (L.shape[-1] < 4 and (early is None or late is None)):
        raise ValueError("losses must be (..., n), with n >= 4 positions where a window is left "
                         f"to its default; got shape {L.shape}")
    n = L.shape[-1]
    quarter = n // 4
    early_at = _positions(slice(1, max(quarter, 2)) if early is None else early, n, "early")
    late_at = _positions(slice(n - quarter, n) if late is None else late, n, "late")
    score = L[..., late_at].mean(axis=-1) - L[..., early_at].mean(axis=-1)  # (...)
    return float(score) if score.ndim == 0 else score


# ---------------------------------------------------------------------------------- weights
def _matrix(name: str, a, shape: str) -> np.ndarray:
    a = np.asarray(a, dtype=float)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a matrix {shape} (one head: index a stacked array as "
                         f"W[layer, head]); got shape {a.shape}")
    return a


def _factored(name: str, m) -> FactoredMatrix:
    if not isinstance(m, FactoredMatrix):
        raise TypeError(f"{name} must be a FactoredMatrix (e.g. from ov_circuit); got "
                        f"{type(m).__name__}")
    return m


@dataclass(frozen=True, eq=False)
class FactoredMatrix:
    """The m x k matrix left @ right, kept as its factors left (m, r) and right (r, k).

    With r small (a head's d_head), norms and eigenvalues cost r x r work:
    ||L R||_F^2 = trace(R^T L^T L R) = sum((L^T L) * (R R^T)), and the nonzero eigenvalues of
    L R (m x m) are those of R L (r x r)."""
    left: np.ndarray
    right: np.ndarray

    def __post_init__(self):
        left = _matrix("left", self.left, "(m, r)")
        right = _matrix("right", self.right, "(r, k)")
        if left.shape[1] != right.shape[0]:
            raise ValueError(f"left (m, r) and right (r, k) must share r; got left {left.shape} "
                             f"and right {right.shape}")
        object.__setattr__(self, "left", left)
        object.__setattr__(self, "right", right)

    shape = property(lambda self: (self.left.shape[0], self.right.shape[1]))
    rank_bound = property(lambda self: self.left.shape[1])  # r: the rank is at most r

    def full(self) -> np.ndarray:
        """The product itself, (m, k)."""
        return self.left @ self.right  # (m, k)

    @property
    def T(self) -> FactoredMatrix:
        """The transpose, right^T @ left^T, still factored."""
        return FactoredMatrix(self.right.T, self.left.T)

    def __matmul__(self, other: FactoredMatrix) -> FactoredMatrix:
        """self @ other, factored through the smaller of the two inner sizes."""
        other = _factored("the right operand of @", other)
        if self.shape[1] != other.shape[0]:
            raise ValueError(f"cannot multiply {self.shape} by {other.shape}")
        middle = self.right @ other.left  # (r1, r2)
        if self.rank_bound <= other.rank_bound:
            return FactoredMatrix(self.left, middle @ other.right)  # (m, r1) @ (r1, k)
        return FactoredMatrix(self.left @ middle, other.right)  # (m, r2) @ (r2, k)

    def frobenius(self) -> float:
        """||left @ right||_F from the r x r Gram matrices."""
        gram_left = self.left.T @ self.left  # (r, r)
        gram_right = self.right @ self.right.T  # (r, r)
        return float(np.sqrt(max(np.sum(gram_left * gram_right), 0.0)))

    def eigenvalues(self) -> np.ndarray:
        """The r eigenvalues of right @ left (complex, (r,)): the nonzero eigenvalues of the square
        left @ right, whose other m - r eigenvalues are 0."""
        if self.shape[0] != self.shape[1]:
            raise ValueError(f"eigenvalues need a square matrix; got shape {self.shape}")
        return np.linalg.eigvals(self.right @ self.left).astype(complex)  # (r,)


def qk_matrix(W_Q, W_K) -> FactoredMatrix:
    """W_QK = W_Q W_K^T (d_model, d_model) of one head: W_Q, W_K (d_model, d_head)."""
    W_Q = _matrix("W_Q", W_Q, "(d_model, d_head)")
    W_K = _matrix("W_K", W_K, "(d_model, d_head)")
    if W_Q.shape != W_K.shape:
        raise ValueError(f"W_Q and W_K must both be (d_model, d_head); got {W_Q.shape} and "
                         f"{W_K.shape}")
    return FactoredMatrix(W_Q, W_K.T)  # (d_model, d_head) @ (d_head, d_model)


def ov_matrix(W_V, W_O) -> FactoredMatrix:
    """W_OV = W_V W_O (d_model, d_model) of one head: W_V (d_model, d_head) and the head's slice
    W_O (d_head, d_model) of W^O (rows h*d_head:(h+1)*d_head of the (n_heads*d_head, d_model))."""
    W_V = _matrix("W_V", W_V, "(d_model, d_head)")
    W_O = _matrix("W_O", W_O, "(d_head, d_model)")
    if W_V.shape[::-1] != W_O.shape:
        raise ValueError(f"W_V must be (d_model, d_head) and W_O (d_head, d_model); got W_V "
                         f"{W_V.shape} and W_O {W_O.shape}")
    return FactoredMatrix(W_V, W_O)  # (d_model, d_head) @ (d_head, d_model)


def _embedding(name: str, E, d_model: int) -> np.ndarray:
    E = _matrix(name, E, f"(rows, d_model = {d_model})")
    if E.shape[1] != d_model:
        raise ValueError(f"{name} must be (rows, d_model) with d_model = {d_model} (the head's "
                         f"weights); got shape {E.shape}")
    return E


def qk_circuit(E_q, W_Q, W_K, E_k=None) -> FactoredMatrix:
    """The QK circuit E_q W_Q W_K^T E_k^T (rows_q, rows_k) of one head: entry [a, b] is the
    attention score (before the 1/sqrt(d_head) scale and the softmax) of a query whose residual is
    row a of E_q on a key whose residual is row b of E_k.

    E_q = E_k = W_E (vocab, d_model): the token circuit (vocab x vocab); E_q = E_k = W_pos
    (n_ctx, d_model): the positional circuit (a previous-token head's is bright just below the
    diagonal). E_k=None means E_k = E_q. W_Q, W_K (d_model, d_head)."""
    W_QK = qk_matrix(W_Q, W_K)
    E_q = _embedding("E_q", E_q, W_QK.shape[0])
    E_k = E_q if E_k is None else _embedding("E_k", E_k, W_QK.shape[0])
    left = E_q @ W_QK.left  # (rows_q, d_head)
    return FactoredMatrix(left, W_QK.right @ E_k.T)  # (rows_q, d_head) @ (d_head, rows_k)


def ov_circuit(W_E, W_V, W_O, W_U) -> FactoredMatrix:
    """The OV circuit W_E W_V W_O W_U (vocab, vocab) of one head: entry [a, b] is how much
    attending to token a raises the logit of token b (through this head alone). A copying head
    (an induction head) has a large positive diagonal. W_E (vocab, d_model), W_V (d_model,
    d_head), W_O (d_head, d_model) the head's slice of W^O, W_U (d_model, vocab)."""
    W_OV = ov_matrix(W_V, W_O)
    W_E = _embedding("W_E", W_E, W_OV.shape[0])
    W_U = _matrix("W_U", W_U, "(d_model, vocab)")
    if W_U.shape[0] != W_OV.shape[1]:
        raise ValueError(f"W_U must be (d_model, vocab) with d_model = {W_OV.shape[1]}; got "
                         f"shape {W_U.shape}")
    return FactoredMatrix(W_E @ W_OV.left, W_OV.right @ W_U)  # (vocab, d_head) @ (d_head, vocab)


def ov_copying_score(ov: FactoredMatrix) -> float:
    """Elhage et al.'s copying score sum(lambda) / sum(|lambda|) over the eigenvalues of the OV
    circuit (the real part; the sum of a real matrix's eigenvalues is its trace, real anyway):
    1 when every eigenvalue is positive (a copier: the identity scores 1), -1 when every one is
    negative (anti-copying). ValueError for a circuit whose eigenvalues are all 0."""
    lam = _factored("ov", ov).eigenvalues()  # (r,)
    size = np.abs(lam).sum()
    if size == 0:
        raise ValueError("the OV circuit has no nonzero eigenvalue: the copying score is undefined")
    return float(lam.sum().real / size)


def diagonal_dominance(ov: FactoredMatrix) -> float:
    """Share of rows (tokens a) whose diagonal entry ov[a, a] is strictly larger than every other
    entry of the row: attending to a raises a's own logit most. 1 for the identity, 0 for
    -identity and for an all-zero matrix. Computed in blocks of rows (the full row is needed)."""
    ov = _factored("ov", ov)
    m, k = ov.shape
    if m != k:
        raise ValueError(f"diagonal dominance needs a square circuit; got shape {ov.shape}")
    wins = 0
    for start in range(0, m, _ROW_BLOCK):
        rows = ov.left[start:start + _ROW_BLOCK] @ ov.right  # (block, k)
        index = np.arange(rows.shape[0])  # (block,)
        diagonal = rows[index, start + index]  # (block,)
        rows[index, start + index] = -np.inf
        wins += int((diagonal > rows.max(axis=1)).sum())
    return wins / m


# ---------------------------------------------------------------------------------- composition
def _composition(product: FactoredMatrix, a: FactoredMatrix, b: FactoredMatrix) -> float:
    size = a.frobenius() * b.frobenius()
    if size == 0:
        raise ValueError("a composition score needs two nonzero matrices; one of them is 0")
    return product.frobenius() / size


def _square(name: str, m, d_model: int | None = None) -> FactoredMatrix:
    m = _factored(name, m)
    if m.shape[0] != m.shape[1] or d_model is not None and m.shape[0] != d_model:
        want = "(d_model, d_model)" if d_model is None else f"({d_model}, {d_model})"
        raise ValueError(f"{name} must be a {want} matrix of the residual stream (e.g. "
                         f"qk_matrix(W_Q, W_K) or ov_matrix(W_V, W_O)); got shape {m.shape}")
    return m


def k_composition_score(W_QK_later: FactoredMatrix, W_OV_earlier: FactoredMatrix) -> float:
    """How much a later head's keys read what an earlier head writes:

        ||W_QK^{h1} (W_OV^{h0})^T||_F / (||W_QK^{h1}||_F ||W_OV^{h0}||_F)

    with W_QK = W_Q W_K^T and W_OV = W_V W_O (d_model, d_model; `qk_matrix`, `ov_matrix`). Why:
    a key whose residual holds the earlier head's output x W_OV^{h0} gets the score
    x_q W_QK^{h1} (x W_OV^{h0})^T = x_q [W_QK^{h1} (W_OV^{h0})^T] x^T. It is Elhage et al.'s
    ||W_QK^{h1} W_OV^{h0}|| in their column-vector convention, where W_OV is our transpose.
    0 when the earlier head writes only into directions the later head's keys ignore; at most 1.
    An induction head K-composes with the previous-token head. Two heads with independent
    random (isotropic) weights score about 1/sqrt(d_model): compare with that, not with 0."""
    W_QK = _square("W_QK_later", W_QK_later)
    W_OV = _square("W_OV_earlier", W_OV_earlier, W_QK.shape[0])
    return _composition(W_QK @ W_OV.T, W_QK, W_OV)


def q_composition_score(W_QK_later: FactoredMatrix, W_OV_earlier: FactoredMatrix) -> float:
    """The same for the later head's queries: ||W_OV^{h0} W_QK^{h1}||_F / (||W_OV|| ||W_QK||)
    (a query whose residual holds x W_OV^{h0} scores x W_OV^{h0} W_QK^{h1} x_k^T)."""
    W_QK = _square("W_QK_later", W_QK_later)
    W_OV = _square("W_OV_earlier", W_OV_earlier, W_QK.shape[0])
    return _composition(W_OV @ W_QK, W_QK, W_OV)


def v_composition_score(W_OV_later: FactoredMatrix, W_OV_earlier: FactoredMatrix) -> float:
    """The same for the later head's values: ||W_OV^{h0} W_OV^{h1}||_F / (||W_OV^{h0}||
    ||W_OV^{h1}||) (the later head moves x W_OV^{h0} on: x W_OV^{h0} W_OV^{h1})."""
    later = _square("W_OV_later", W_OV_later)
    earlier = _square("W_OV_earlier", W_OV_earlier, later.shape[0])
    return _composition(earlier @ later, later, earlier)


_COMPOSITIONS = {"k": k_composition_score, "q": q_composition_score, "v": v_composition_score}


def composition_scores(weights, kind: str = "k", earlier_layer: int = 0,
                       later_layer: int = 1) -> np.ndarray:
    """Every pair (earlier head h0, later head h1) of two layers: scores[h0, h1], shaped
    (n_heads, n_heads), of the kind "k", "q" or "v" (`k_composition_score` and its siblings).

    weights: a mapping with W_Q, W_K, W_V (n_layers, n_heads, d_model, d_head) and W_O
    (n_layers, n_heads, d_head, d_model), as the induction model's `weights()` returns them."""
    if kind not in _COMPOSITIONS:
        raise ValueError(f"kind must be one of {sorted(_COMPOSITIONS)}; got {kind!r}")
    W = {name: np.asarray(weights[name], dtype=float) for name in ("W_Q", "W_K", "W_V", "W_O")}
    if W["W_Q"].ndim != 4:
        raise ValueError("weights['W_Q'] must be (n_layers, n_heads, d_model, d_head); got shape "
                         f"{W['W_Q'].shape}")
    n_layers, n_heads = W["W_Q"].shape[:2]
    if not (0 <= earlier_layer < later_layer < n_layers):
        raise ValueError(f"need 0 <= earlier_layer < later_layer < n_layers = {n_layers}; got "
                         f"earlier_layer={earlier_layer}, later_layer={later_layer}")
    scores = np.empty((n_heads, n_heads))  # (n_heads earlier, n_heads later)
    for h0 in range(n_heads):
        W_OV = ov_matrix(W["W_V"][earlier_layer, h0], W["W_O"][earlier_layer, h0])
        for h1 in range(n_heads):
            later = (ov_matrix(W["W_V"][later_layer, h1], W["W_O"][later_layer, h1])
                     if kind == "v" else qk_matrix(W["W_Q"][later_layer, h1],
                                                   W["W_K"][later_layer, h1]))
            scores[h0, h1] = _COMPOSITIONS[kind](later, W_OV)
    return scores
