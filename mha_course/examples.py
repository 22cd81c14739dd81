"""The running example, "The quick brown fox jumps over the lazy dog.", as tokens and embeddings.

The embeddings are hand-written word features (part of speech, animal, motion) plus a little seeded
noise, concatenated with sinusoidal position codes, so that a student can read meaning into every
column. Trained models (the toy model, MiniLM) come in later notebooks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

import numpy as np

__all__ = ["RunningExample", "running_example", "sinusoidal_positions"]


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
    """Vaswani et al.'s position codes: PE[t, 2i] = sin(t / 10000^(2i/d)), PE[t, 2i+1] = cos(...)."""
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
    raw = json.loads(resources.files("mha_course").joinpath("data/running_example.json").read_text())
    features = np.asarray(raw["features"], dtype=np.float64)  # (n, n_features)
    rng = np.random.default_rng(seed)
    words = features + noise * rng.standard_normal(features.shape)  # (n, n_features)
    X = np.concatenate([words, sinusoidal_positions(len(raw["tokens"]), d_pos)], axis=1)  # (n, d_model)
    return RunningExample(
        sentence=raw["sentence"], tokens=raw["tokens"], pos=raw["pos"], dep_head=raw["dep_head"],
        dep_rel=raw["dep_rel"], feature_names=raw["feature_names"], features=features, X=X,
    )
