"""The running example, "The quick brown fox jumps over the lazy dog.", as tokens and embeddings.

The embeddings are hand-written word features (part of speech, animal, motion) plus a little seeded
noise, concatenated with sinusoidal position codes, so that a student can read meaning into every
column. Trained models (the toy model, MiniLM) come in later notebooks.

Also here: what notebook 01 builds from the running example (a shorter sentence from the same
words, a zero-padded batch). How a softmax over random scores saturates without the
1/sqrt(d_k) is `mha_course.analysis.saturation`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import numpy as np

__all__ = [
    "RunningExample",
    "pad_batch",
    "running_example",
    "sinusoidal_positions",
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
