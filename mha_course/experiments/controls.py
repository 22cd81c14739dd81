"""The random-init control: an *untrained* model of the same shape, the baseline against which a
trained model's heads are read (what the architecture and the input alone give).

    untrained = random_init_toy(model.config, seed=0)      # a ToyTransformer, eval mode
    untrained = random_init_minilm(minilm, seed=0)         # a MiniLM, same tokenizer and backend

One home for both: notebook 06's probes, the toy model's heads.json control
(`experiments.toy_training.random_init_control`) and any other experiment build their untrained
model here.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass

import numpy as np
import torch

from mha_course.models.minilm.model import MiniLM
from mha_course.models.toy_model import ToyConfig, ToyTransformer

__all__ = ["random_init_toy", "random_init_minilm", "BERT_INIT_STD"]

BERT_INIT_STD = 0.02  # BERT's initializer_range: weights N(0, 0.02^2)


def random_init_toy(config: ToyConfig, seed: int = 0) -> ToyTransformer:
    """An untrained `ToyTransformer` of the given config, in eval mode, with PyTorch's default
    initialisation drawn from `seed` (torch's global random state is left as it was)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return ToyTransformer(config).eval()


def _random_like(obj, rng, std: float, name: str = ""):
    """A copy of a params dataclass with BERT's initialisation: weights N(0, std^2), biases and
    LayerNorm betas 0, LayerNorm gammas 1 (NumPy arrays in, NumPy arrays out)."""
    if is_dataclass(obj):
        return type(obj)(**{f.name: _random_like(getattr(obj, f.name), rng, std, f.name)
                            for f in fields(obj)})
    if isinstance(obj, list):
        return [_random_like(item, rng, std, name) for item in obj]
    if obj is None:
        return None
    a = np.asarray(obj)
    if name.endswith("gamma"):
        return np.ones_like(a)
    if name.endswith("beta") or name.startswith("b_"):
        return np.zeros_like(a)
    return (rng.standard_normal(a.shape) * std).astype(a.dtype)


def random_init_minilm(model: MiniLM, seed: int = 0, std: float = BERT_INIT_STD) -> MiniLM:
    """A MiniLM of the same shape, tokenizer, backend, dtype and device with untrained weights
    (BERT's initialisation: N(0, std^2) weights, zero biases, unit LayerNorm), drawn from `seed`."""
    params = model.params
    if model.backend == "torch":
        params = params.map(lambda t: t.detach().cpu().numpy())
    params = _random_like(params, np.random.default_rng(seed), std)
    if model.backend == "torch":
        device = model.params.word_embeddings.device
        params = params.map(lambda a: torch.as_tensor(a, device=device))
    return MiniLM(model.config, params, model.tokenizer, model.backend, model.dtype)
