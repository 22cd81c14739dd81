"""MiniLM as a task for head-importance experiments: a proxy for what it is used for (sentence
embeddings), measured under any gating of its heads, with zero or mean ablation
(`mha_course.models.ablation`).

    task = MiniLMTask(minilm, texts)             # texts batched by length, the full model run once
    task.evaluate(head_gates)                    # {"similarity", "loss"}

`mha_course.experiments.pruning` runs such a task to get ablation tables and pruning curves. The
gradient score needs no proxy here: at xi = 1 the pruned and full embeddings coincide, where the
cosine is flat.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from mha_course.models.ablation import check_ablation, first_gated_layer, layer_gates
from mha_course.models.bert import np_bert, torch_bert
from mha_course.models.minilm.model import MiniLM
from mha_course.np_attention import padding_mask

__all__ = ["MiniLMTask", "length_batches"]


class MiniLMTask:
    """MiniLM with a proxy for its task: the cosine similarity between the gated model's sentence
    embeddings and the full model's (mean of the last hidden states over the pieces, [CLS] and
    [SEP] included, as sentence-transformers pools all-MiniLM-L6-v2), averaged over `texts`.
    1.0 means the pruned model embeds every sentence exactly as before.
    Metrics: "similarity" (mean cosine) and "loss" = 1 - similarity.
    """

    metrics = ("similarity", "loss")

    def __init__(self, model: MiniLM, texts, batch_size: int = 32, max_padding: float = 0.25):
        if isinstance(texts, str) or not texts:
            raise TypeError("texts must be a non-empty list of str")
        self.model = model
        encs = sorted((model.encode(t, where=f"texts[{i}]") for i, t in enumerate(texts)),
                      key=lambda e: len(e.tokens))  # similar lengths together: less padding
        self.batches = []
        for chunk in length_batches([len(e.tokens) for e in encs], batch_size, max_padding):
            chunk = [encs[i] for i in chunk]
            lengths = np.array([len(e.tokens) for e in chunk])  # (batch,)
            ids = np.zeros((len(chunk), lengths.max()), dtype=np.int64)  # (batch, n)
            for b, e in enumerate(chunk):
                ids[b, :lengths[b]] = e.input_ids
            self.batches.append((ids, lengths, padding_mask(lengths, ids.shape[1])))
        self._means = None
        # the full model's hidden states, (n_layers + 1, batch, n, d_model) per batch: entry l is
        # layer l's input, so that a head of layer l can be removed without running layers < l
        ones = np.ones((self.n_layers, self.n_heads))  # (n_layers, n_heads)
        self._layer_inputs = [model.forward(ids, mask=mask, head_gates=ones).hidden_states
                              for ids, _, mask in self.batches]
        self._reference = self.embeddings()  # (n_texts, d_model): the full model's embeddings

    n_layers = property(lambda self: self.model.config.n_layers)
    n_heads = property(lambda self: self.model.config.n_heads)

    def _params_with_bias_shift(self, gates) -> MiniLM:
        """The model with b^O + sum_h (1 - xi_h) mu_h W^O_h in every layer."""
        mu = self.head_means()  # (n_layers, n_heads, d_v)
        layers = []
        for index, layer in enumerate(self.model.params.layers):
            att = layer.attention
            W_O = _as_numpy(att.W_O)  # (n_heads * d_v, d_model)
            W = W_O.reshape(self.n_heads, -1, W_O.shape[1])  # (n_heads, d_v, d_model)
            shift = np.einsum("h,hv,hvd->d", 1.0 - gates[index], mu[index], W)  # (d_model,)
            b_O = _as_numpy(att.b_O) + shift.astype(_as_numpy(att.b_O).dtype)  # (d_model,)
            if isinstance(att.b_O, torch.Tensor):  # the torch backend
                b_O = torch.as_tensor(b_O, device=att.b_O.device)
            layers.append(replace(layer, attention=replace(att, b_O=b_O)))
        params = replace(self.model.params, layers=layers)
        m = self.model
        return MiniLM(m.config, params, m.tokenizer, m.backend, m.dtype)

    def head_means(self) -> np.ndarray:
        """(n_layers, n_heads, d_v): mu_h, each head's Z_h averaged over every piece of `texts`
        with the full model (computed once)."""
        if self._means is None:
            total, count = 0.0, 0
            for ids, lengths, mask in self.batches:
                Z = self.model.forward(ids, mask=mask).heads  # (n_layers, batch, n_heads, n, d_v)
                real = np.arange(ids.shape[1])[None] < lengths[:, None]  # (batch, n)
                real = real[None, :, None, :, None]  # (1, batch, 1, n, 1)
                total = total + (Z * real).sum(axis=(1, 3))  # (n_layers, n_heads, d_v)
                count += int(real.sum())
            self._means = total / count
        return self._means

    def embeddings(self, head_gates=None, ablation: str = "zero") -> np.ndarray:
        """(n_texts, d_model) unit-length sentence embeddings of the gated model (texts in the
        task's order, shortest first)."""
        check_ablation(ablation)
        gates = layer_gates(head_gates, self.n_layers, self.n_heads)  # (n_layers, n_heads)
        model = self._params_with_bias_shift(gates) if ablation == "mean" else self.model
        out = []
        for (ids, lengths, mask), inputs in zip(self.batches, self._layer_inputs):
            hidden = _last_hidden_state(model, inputs, mask, gates)  # (batch, n, d_model)
            real = np.arange(ids.shape[1])[None] < lengths[:, None]  # (batch, n)
            real = real.astype(hidden.dtype)[..., None]  # (batch, n, 1)
            mean = (hidden * real).sum(1) / lengths[:, None]  # (batch, d_model)
            out.append(mean / np.linalg.norm(mean, axis=-1, keepdims=True))
        return np.concatenate(out)  # (n_texts, d_model)

    def evaluate(self, head_gates=None, ablation: str = "zero") -> dict[str, float]:
        """Mean cosine similarity to the full model's embeddings, and 1 - that."""
        similarity = float(np.mean(np.sum(self.embeddings(head_gates, ablation)
                                          * self._reference, axis=-1)))
        return {"similarity": similarity, "loss": 1.0 - similarity}


def length_batches(lengths, batch_size: int, max_padding: float) -> list[list[int]]:
    """Indices of `lengths` (sorted, shortest first) cut into consecutive batches of at most
    `batch_size`, a new batch starting where the next sequence would make the padded batch
    (count x longest) exceed (1 + max_padding) x its real positions: one long sentence does not
    make seven short ones run at its length."""
    lengths = [int(n) for n in lengths]
    if lengths != sorted(lengths):
        raise ValueError("lengths must be sorted, shortest first")
    if batch_size < 1 or max_padding < 0:
        raise ValueError(f"batch_size must be >= 1 and max_padding >= 0; got {batch_size}, "
                         f"{max_padding}")
    batches, real = [], 0
    for i, n in enumerate(lengths):
        if batches and len(batches[-1]) < batch_size and \
                (len(batches[-1]) + 1) * n <= (1 + max_padding) * (real + n):
            batches[-1].append(i)
            real += n
        else:
            batches.append([i])
            real = n
    return batches


def _as_numpy(a) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def _last_hidden_state(model: MiniLM, layer_inputs, mask, gates) -> np.ndarray:
    """The last hidden states (batch, n, d_model) of `model` under `gates` (n_layers, n_heads),
    exactly as model.forward(..., head_gates=gates) computes them, but starting at the first layer
    with a gate that is not 1: the layers below it compute what the full model computes, so their
    output is read from `layer_inputs` (the full model's hidden states, (n_layers + 1, batch, n,
    d_model)). The layers run are the backend's own `encoder_layer`, with the same arguments."""
    start = first_gated_layer(gates)
    if start is None:
        return layer_inputs[-1]
    eps, layers = model.config.layer_norm_eps, model.params.layers
    if model.backend == "numpy":
        x = layer_inputs[start]  # (batch, n, d_model)
        for index in range(start, len(layers)):
            x, _ = np_bert.encoder_layer(x, layers[index], mask, eps, gates[index])
            # x: (batch, n, d_model)
        return x
    device = model.params.word_embeddings.device
    with torch.inference_mode():
        x, mask_t, gates_t = (torch.as_tensor(a, device=device)
                              for a in (layer_inputs[start], mask, gates))
        for index in range(start, len(layers)):
            x, _ = torch_bert.encoder_layer(x, layers[index], mask_t, eps, gates_t[index])
            # x: (batch, n, d_model)
    return x.cpu().numpy()
