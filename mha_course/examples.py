"""The running example, "The quick brown fox jumps over the lazy dog.", as tokens and embeddings.

The embeddings are hand-written word features (part of speech, animal, motion) plus a little seeded
noise, concatenated with sinusoidal position codes, so that a student can read meaning into every
column. Trained models (the toy model, MiniLM) come in later notebooks.

Also here: the small experiments notebook 01 runs on the running example and on random scores
(a shorter sentence from the same words, a zero-padded batch, and how a softmax saturates when
scores are not divided by sqrt(d_k)).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import numpy as np

from mha_course.np_attention import softmax, softmax_backward

__all__ = [
    "RunningExample",
    "pad_batch",
    "running_example",
    "sinusoidal_positions",
    "softmax_saturation",
    "sub_sentence",
]


@dataclass(frozen=True)
class RunningExample:
    sentence: str
    tokens: list[str]
    pos: list[str]  # part of speech per token
    dep_head: list[int]  # index of each token's syntactic head, -1 for the root
    dep_rel: list[str]
    feature_names: list[str]
    features: np.ndarray  # (n, n_features) the hand-written word features
    X: np.ndarray  # (n, d_model) = [features + noise | positions]

    @property
    def n(self) -> int:
        return len(self.tokens)


def sinusoidal_positions(n: int, d: int) -> np.ndarray:
    """Vaswani et al.'s position codes: PE[t, 2i] = sin(t / 10000^(2i/d)),
    PE[t, 2i+1] = cos(t / 10000^(2i/d)); (n, d)."""
    if d % 2:
        raise ValueError(f"sinusoidal_positions needs an even dimension d; got d={d}")
    t = np.arange(n)[:, None]  # (n, 1)
    freq = 10000.0 ** (-np.arange(0, d, 2) / d)  # (d / 2,)
    pe = np.empty((n, d))
    pe[:, 0::2] = np.sin(t * freq)  # (n, d / 2)
    pe[:, 1::2] = np.cos(t * freq)  # (n, d / 2)
    return pe


def running_example(d_pos: int = 8, noise: float = 0.1, seed: int = 0) -> RunningExample:
    """Load the running example; X has d_model = n_features (8) + d_pos columns."""
    path = resources.files("mha_course").joinpath("data/running_example.json")
    raw = json.loads(path.read_text(encoding="utf-8"))
    features = np.asarray(raw["features"], dtype=np.float64)  # (n, n_features)
    rng = np.random.default_rng(seed)
    words = features + noise * rng.standard_normal(features.shape)  # (n, n_features)
    positions = sinusoidal_positions(len(raw["tokens"]), d_pos)  # (n, d_pos)
    X = np.concatenate([words, positions], axis=1)  # (n, d_model)
    return RunningExample(
        sentence=raw["sentence"], tokens=raw["tokens"], pos=raw["pos"], dep_head=raw["dep_head"],
        dep_rel=raw["dep_rel"], feature_names=raw["feature_names"], features=features, X=X,
    )


def sub_sentence(example: RunningExample, tokens: Sequence[str]) -> np.ndarray:
    """X for a shorter sentence of the running example's words, e.g. ["The", "dog", "jumps", "."].

    Each token keeps the word features (noise included) of its first occurrence in the example;
    the position columns are recomputed for the new positions 0..len(tokens)-1.
    Returns an array (len(tokens), d_model).
    """
    missing = [t for t in tokens if t not in example.tokens]
    if missing:
        raise ValueError(f"sub_sentence takes tokens of the running example {example.tokens}; "
                         f"got {missing}, which it does not contain")
    n_features = len(example.feature_names)
    rows = [example.tokens.index(t) for t in tokens]
    d_pos = example.X.shape[1] - n_features
    return np.concatenate([example.X[rows, :n_features], sinusoidal_positions(len(rows), d_pos)],
                          axis=1)  # (len(tokens), d_model)


def pad_batch(sentences: Sequence[np.ndarray],
              n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Stack sentences X_b (n_b, d_model) into one zero-padded batch.

    Returns (X_batch (batch, n, d_model), lengths (batch,) of the n_b); n defaults to the
    longest sentence. Rows n_b..n-1 of sentence b are zeros (padding).
    """
    if not sentences:
        raise ValueError("pad_batch needs at least one sentence; got none")
    widths = {np.shape(x)[-1] for x in sentences}
    if any(np.ndim(x) != 2 for x in sentences) or len(widths) != 1:
        raise ValueError("pad_batch needs 2-D sentences (n_b, d_model) with one d_model; "
                         f"got shapes {[np.shape(x) for x in sentences]}")
    lengths = np.array([len(x) for x in sentences])
    n = int(lengths.max()) if n is None else n
    if lengths.max() > n:
        raise ValueError(f"pad_batch: a sentence of length {lengths.max()} does not fit in n={n}")
    X_batch = np.zeros((len(sentences), n, widths.pop()))  # (batch, n, d_model)
    for b, x in enumerate(sentences):
        X_batch[b, :len(x)] = x
    return X_batch, lengths


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
            entropy = -(a * np.log(np.where(a > 0, a, 1))).sum(axis=-1)  # (n_queries,)
            grad = np.linalg.norm(softmax_backward(a, g), axis=-1)  # (n_queries,)
            measures[d_k, name] = (float(a.max(axis=-1).mean()), float(entropy.mean()),
                                   float(grad.mean()))
    return measures
