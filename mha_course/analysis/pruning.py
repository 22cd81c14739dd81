"""Which heads matter? Ablation, Michel et al.'s gradient score, and pruning curves.

Every head h has a gate xi_h that multiplies its output before W^O (`head_gates` in the cores):

    out = Concat(xi_1 Z_1, ..., xi_h Z_h) W^O + b^O,     xi = 1: the trained model

- zero ablation: xi_h = 0, the head is gone;
- mean ablation: Z_h is replaced by its mean over the corpus, mu_h (what the head says "on
  average", so that only its token-specific information is removed). The same as xi_h = 0 plus
  a shift of the output bias: b^O + sum_h (1 - xi_h) mu_h W^O_h;
- gradient score (Michel et al. 2019): I_h = E_x |dL(x)/dxi_h| at xi = 1, one backward pass
  for every head at once, normalised by its layer's L2 norm;
- pruning curves: remove heads one after another in the order of a score (least important
  first), in random orders (several seeds: mean and spread) and in the reverse order, and
  measure the task each time. Voita et al. (2019) found that most heads can go at little cost and
  that the specialised heads are the last to go; the curves test that rather than assume it.

A *task* knows how to run a gated model and measure it:

    task = ToyTask(model, sentences)          # the toy's sub-tasks: accuracy per sub-task, loss
    task = MiniLMTask(minilm, texts)          # a proxy: cosine of pruned vs full sentence embeddings
    effects = ablation_effects(task)           # {"zero": {metric: (n_layers, n_heads)}, "mean": ...}
    scores = gradient_importance(task)         # (n_layers, n_heads), ToyTask only
    curves = pruning_curves(task, scores, "accuracy", n_random=5)

Any object with n_layers, n_heads, metrics and evaluate(head_gates, ablation) works as a task.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from mha_course.models.minilm import np_bert

__all__ = ["ABLATIONS", "ToyTask", "MiniLMTask", "ablation_effects", "gradient_importance",
           "normalise_per_layer", "PruningCurves", "prune_order", "pruning_curves",
           "iterative_order", "removal_step", "gates_without", "curve_table", "length_batches"]

ABLATIONS = ("zero", "mean")


def _check_ablation(ablation: str) -> None:
    if ablation not in ABLATIONS:
        raise ValueError(f"ablation must be one of {ABLATIONS}; got {ablation!r}")


def _ones(task) -> np.ndarray:
    return np.ones((task.n_layers, task.n_heads))  # (n_layers, n_heads)


def _check_gates(task, head_gates) -> np.ndarray:
    gates = _ones(task) if head_gates is None else np.asarray(head_gates, dtype=np.float64)
    if gates.shape != (task.n_layers, task.n_heads):
        raise ValueError(f"head_gates must be (n_layers, n_heads) = ({task.n_layers}, "
                         f"{task.n_heads}); got shape {gates.shape}")
    return gates


def gates_without(heads, n_layers: int, n_heads: int) -> np.ndarray:
    """(n_layers, n_heads) gates: 0 for the flat head indices in `heads`, 1 elsewhere
    (flat index = layer * n_heads + head)."""
    gates = np.ones(n_layers * n_heads)
    gates[np.asarray(heads, dtype=np.int64)] = 0.0
    return gates.reshape(n_layers, n_heads)  # (n_layers, n_heads)


# --------------------------------------------------------------------------- the toy model
class ToyTask:
    """The toy Transformer on its six sub-tasks (`toy_language.subtask_batch`), under any gating.

    The corrupted batches are drawn once (seeded) exactly as `toy_model.evaluate` draws them, so
    that every evaluation sees the same inputs and all gates at 1 give `evaluate`'s numbers.
    Metrics: "accuracy" (the mean over sub-tasks of the share of corrupted tokens restored),
    "loss" (cross-entropy of the clean token over every evaluated position), and one accuracy
    per sub-task. The model is put in eval mode; mean ablation shifts its output biases for the
    duration of a forward pass and puts them back.
    """

    def __init__(self, model, sentences, seed: int = 0, tasks=None, batch_size: int = 512):
        import torch

        from mha_course.models import toy_language as lang

        tasks = tuple(lang.SUBTASKS if tasks is None else tasks)
        rng = np.random.default_rng(seed)
        parts = [lang.subtask_batch(sentences, t, rng) for t in tasks]
        n = max(p[0].shape[1] for p in parts)
        pad = lambda a: np.pad(a, ((0, 0), (0, n - a.shape[1])))  # noqa: E731  (batch, n)
        self.model = model.eval()
        self.tasks = tasks
        self.inputs = torch.from_numpy(np.concatenate([pad(p[0]) for p in parts]))  # (n_items, n)
        self.targets = torch.from_numpy(np.concatenate([pad(p[1]) for p in parts]))  # (n_items, n)
        self.at = torch.from_numpy(np.concatenate([pad(p[2]) for p in parts]))  # (n_items, n)
        self.lengths = torch.from_numpy(np.concatenate([p[3] for p in parts]))  # (n_items,)
        self.task_of = np.repeat(np.arange(len(tasks)), [len(p[3]) for p in parts])  # (n_items,)
        self.batch_size = batch_size
        self._means = None
        self._block_inputs = self._capture_block_inputs()

    n_layers = property(lambda self: self.model.config.n_layers)
    n_heads = property(lambda self: self.model.config.n_heads)
    metrics = property(lambda self: ("accuracy", "loss") + self.tasks)

    def _chunks(self):
        for start in range(0, len(self.lengths), self.batch_size):
            yield slice(start, start + self.batch_size)

    def _capture_block_inputs(self) -> list[list[tuple]]:
        """Per chunk and layer, the full model's (x (batch, n, d_model), mask) as they enter the
        block: removing a head of layer l leaves the blocks below l as they are, so an evaluation
        can start at layer l (read by a forward pre-hook, so the embedding is the model's own)."""
        import torch

        captured = []
        hooks = [block.register_forward_pre_hook(lambda block, args: captured[-1].append(args[:2]))
                 for block in self.model.blocks]
        ones = torch.ones(self.n_layers, self.n_heads)  # as evaluate passes them: (n_layers, n_heads)
        try:
            with torch.no_grad():
                for rows in self._chunks():
                    captured.append([])
                    self.model(self.inputs[rows], self.lengths[rows], ones)
        finally:
            for hook in hooks:
                hook.remove()
        return captured

    def head_means(self) -> np.ndarray:
        """(n_layers, n_heads, d_v): mu_h, each head's Z_h averaged over every real token of the
        evaluation inputs, with the full model (computed once)."""
        import torch

        if self._means is None:
            total, count = 0.0, 0
            with torch.no_grad():
                for rows in self._chunks():
                    Z = self.model(self.inputs[rows], self.lengths[rows]).heads  # (n_layers, batch, n_heads, n, d_v)
                    real = (torch.arange(Z.shape[3])[None] < self.lengths[rows][:, None])  # (batch, n)
                    total = total + (Z * real[None, :, None, :, None]).sum(dim=(1, 3))  # (n_layers, n_heads, d_v)
                    count += int(real.sum())
            self._means = (total / count).numpy()
        return self._means

    def _bias_shifts(self, gates):
        """Per layer, sum_h (1 - xi_h) mu_h W^O_h: the output-bias shift of mean ablation."""
        import torch

        mu = torch.from_numpy(self.head_means())  # (n_layers, n_heads, d_v)
        shifts = []
        for layer, block in enumerate(self.model.blocks):
            W = block.attn.W_O.detach().reshape(self.n_heads, -1, block.attn.d_model)  # (n_heads, d_v, d_model)
            weight = torch.as_tensor(1.0 - gates[layer], dtype=W.dtype)  # (n_heads,)
            shifts.append(torch.einsum("h,hv,hvd->d", weight, mu[layer], W))  # (d_model,)
        return shifts

    def _logits(self, index, rows, gates):
        """Logits (n_at, vocab_size) at the evaluated positions of chunk `index` under gates
        (n_layers, n_heads): the model's blocks from the first gated layer on (every block when
        no gate is closed), then the model's head (ln_out and the tied embedding) at the
        evaluated positions only. The blocks below the first gated layer compute what the full
        model computed when the task was built, so their output is read from that cache: the
        task assumes the model's weights do not change after it is built."""
        import torch

        g = torch.as_tensor(gates, dtype=torch.float32)  # (n_layers, n_heads)
        start = _first_gated_layer(gates)
        start = 0 if start is None else start
        x, mask = self._block_inputs[index][start]  # (batch, n, d_model), the padding mask
        for layer in range(start, self.n_layers):
            x, _, _ = self.model.blocks[layer](x, mask, g[layer])  # (batch, n, d_model)
        final = self.model.ln_out(x[self.at[rows]])  # (n_at, d_model)
        return final @ self.model.tok_emb.weight.T  # (n_at, vocab_size)

    def _forward(self, index, rows, gates, ablation):
        """Logits (n_at, vocab_size) of the gated model at the evaluated positions; mean ablation shifts b^O meanwhile
        (by exactly 0 in layers whose gates are all 1, so their cached inputs still hold)."""
        import torch

        if ablation == "zero":
            return self._logits(index, rows, gates)
        shifts = self._bias_shifts(gates)
        saved = [block.attn.b_O.detach().clone() for block in self.model.blocks]
        try:
            with torch.no_grad():
                for block, shift in zip(self.model.blocks, shifts):
                    block.attn.b_O += shift
            return self._logits(index, rows, gates)
        finally:
            with torch.no_grad():
                for block, b in zip(self.model.blocks, saved):
                    block.attn.b_O.copy_(b)

    def evaluate(self, head_gates=None, ablation: str = "zero") -> dict[str, float]:
        """Metrics of the model with gates xi (n_layers, n_heads) (None: all 1). ablation="mean"
        replaces each gated-off share (1 - xi_h) of a head by its corpus mean instead of 0."""
        import torch
        from torch.nn import functional as F

        _check_ablation(ablation)
        gates = _check_gates(self, head_gates)
        correct = np.zeros(len(self.tasks))
        counted = np.zeros(len(self.tasks))
        loss_sum = 0.0
        with torch.no_grad():
            for index, rows in enumerate(self._chunks()):
                logits = self._forward(index, rows, gates, ablation)  # (n_at, vocab_size)
                at, targets = self.at[rows], self.targets[rows]
                loss_sum += float(F.cross_entropy(logits, targets[at], reduction="sum"))
                hit = torch.zeros_like(at)  # (batch, n)
                hit[at] = logits.argmax(-1) == targets[at]
                task = self.task_of[rows]
                np.add.at(correct, task, hit.sum(-1).numpy())
                np.add.at(counted, task, at.sum(-1).numpy())
        per_task = np.divide(correct, counted, out=np.full(len(self.tasks), np.nan),
                             where=counted > 0)
        out = {"accuracy": float(np.nanmean(per_task)), "loss": float(loss_sum / counted.sum())}
        out.update({t: float(a) for t, a in zip(self.tasks, per_task)})
        return out

    def gate_gradients(self, head_gates=None) -> np.ndarray:
        """(n_items, n_layers, n_heads): dL(x)/dxi_h for every evaluation item x (one sentence of
        one sub-task), L(x) its mean cross-entropy over its evaluated positions. One backward
        pass per chunk: each item gets its own copy of the gates, so autograd separates them.
        Items with no evaluated position give zeros."""
        import torch
        from torch.nn import functional as F

        gates = torch.as_tensor(_check_gates(self, head_gates), dtype=torch.float32)
        out = []
        for rows in self._chunks():
            at, targets = self.at[rows], self.targets[rows]
            batch = len(at)
            g = gates[:, None, :].repeat(1, batch, 1).requires_grad_(True)  # (n_layers, batch, n_heads)
            logits = self.model(self.inputs[rows], self.lengths[rows], g).logits  # (batch, n, vocab)
            ce = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")  # (batch, n)
            per_item = (ce * at).sum(-1) / at.sum(-1).clamp(min=1)  # (batch,): L(x)
            (grad,) = torch.autograd.grad(per_item.sum(), g)  # (n_layers, batch, n_heads)
            out.append(grad.permute(1, 0, 2).numpy())  # (batch, n_layers, n_heads)
        return np.concatenate(out)  # (n_items, n_layers, n_heads)

    def has_positions(self) -> np.ndarray:
        """(n_items,) bool: items with at least one evaluated position."""
        return self.at.any(-1).numpy()


# --------------------------------------------------------------------------- MiniLM
class MiniLMTask:
    """MiniLM with a proxy for its task: the cosine similarity between the gated model's sentence
    embeddings and the full model's (mean of the last hidden states over the pieces, [CLS] and
    [SEP] included, as sentence-transformers pools all-MiniLM-L6-v2), averaged over `texts`.
    1.0 means the pruned model embeds every sentence exactly as before.
    Metrics: "similarity" (mean cosine) and "loss" = 1 - similarity.
    """

    metrics = ("similarity", "loss")

    def __init__(self, model, texts, batch_size: int = 32, max_padding: float = 0.25):
        from mha_course.np_attention import padding_mask

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
        self._layer_inputs = [model.forward(ids, mask=mask, head_gates=_ones(self)).hidden_states
                              for ids, _, mask in self.batches]
        self._reference = self.embeddings()  # (n_texts, d_model): the full model's embeddings

    n_layers = property(lambda self: self.model.config.n_layers)
    n_heads = property(lambda self: self.model.config.n_heads)

    def _params_with_bias_shift(self, gates):
        """The model's parameters with b^O + sum_h (1 - xi_h) mu_h W^O_h in every layer."""
        from mha_course.models.minilm.model import MiniLM

        mu = self.head_means()  # (n_layers, n_heads, d_v)
        layers = []
        for l, layer in enumerate(self.model.params.layers):
            att = layer.attention
            W = _as_numpy(att.W_O).reshape(self.n_heads, -1, att.W_O.shape[1])  # (n_heads, d_v, d_model)
            shift = np.einsum("h,hv,hvd->d", 1.0 - gates[l], mu[l], W)  # (d_model,)
            b_O = _as_numpy(att.b_O) + shift.astype(_as_numpy(att.b_O).dtype)
            if not isinstance(att.b_O, np.ndarray):  # the torch backend
                import torch
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
                total = total + (Z * real[None, :, None, :, None]).sum(axis=(1, 3))  # (n_layers, n_heads, d_v)
                count += int(real.sum())
            self._means = total / count
        return self._means

    def embeddings(self, head_gates=None, ablation: str = "zero") -> np.ndarray:
        """(n_texts, d_model) unit-length sentence embeddings of the gated model (texts in the
        task's order, shortest first)."""
        _check_ablation(ablation)
        gates = _check_gates(self, head_gates)
        model = self._params_with_bias_shift(gates) if ablation == "mean" else self.model
        out = []
        for (ids, lengths, mask), inputs in zip(self.batches, self._layer_inputs):
            hidden = _last_hidden_state(model, inputs, mask, gates)  # (batch, n, d_model)
            real = (np.arange(ids.shape[1])[None] < lengths[:, None]).astype(hidden.dtype)  # (batch, n)
            mean = (hidden * real[..., None]).sum(1) / lengths[:, None]  # (batch, d_model)
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
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)


def _first_gated_layer(gates) -> int | None:
    """The first layer (gates (n_layers, n_heads)) with a gate that is not 1, or None: the layers
    below it compute what the full model computes, so an evaluation can start there."""
    changed = np.flatnonzero((np.asarray(gates) != 1.0).any(axis=1))  # layers with a gated head
    return int(changed[0]) if len(changed) else None


def _last_hidden_state(model, layer_inputs, mask, gates) -> np.ndarray:
    """The last hidden states (batch, n, d_model) of `model` under `gates` (n_layers, n_heads),
    exactly as model.forward(..., head_gates=gates) computes them, but starting at the first layer
    with a gate that is not 1: the layers below it compute what the full model computes, so their
    output is read from `layer_inputs` (the full model's hidden states, (n_layers + 1, batch, n,
    d_model)). The layers run are the backend's own `encoder_layer`, with the same arguments."""
    start = _first_gated_layer(gates)
    if start is None:
        return layer_inputs[-1]
    eps, layers = model.config.layer_norm_eps, model.params.layers
    if model.backend == "numpy":
        x = layer_inputs[start]  # (batch, n, d_model)
        for l in range(start, len(layers)):
            x, _ = np_bert.encoder_layer(x, layers[l], mask, eps, gates[l])  # (batch, n, d_model)
        return x
    import torch

    from mha_course.models.minilm import torch_bert

    device = model.params.word_embeddings.device
    with torch.inference_mode():
        x, mask_t, gates_t = (torch.as_tensor(a, device=device)
                              for a in (layer_inputs[start], mask, gates))
        for l in range(start, len(layers)):
            x, _ = torch_bert.encoder_layer(x, layers[l], mask_t, eps, gates_t[l])  # (batch, n, d_model)
    return x.cpu().numpy()


# --------------------------------------------------------------------------- importance
def ablation_effects(task, ablations=ABLATIONS, layers=None) -> dict[str, dict[str, np.ndarray]]:
    """Remove one head at a time: {ablation: {metric: (n_layers, n_heads)}}, each entry the
    metric with that head ablated minus the metric of the full model (for accuracy, negative =
    the head was needed; for loss, positive). n_layers * n_heads evaluations per ablation.
    layers: None (every layer), or the layers whose heads to measure (n_heads evaluations per
    layer and ablation); the rows of the other layers are NaN."""
    layers = range(task.n_layers) if layers is None else [int(l) for l in layers]
    bad = [l for l in layers if not 0 <= l < task.n_layers]
    if bad:
        raise ValueError(f"layers must be in [0, {task.n_layers - 1}]; got {bad}")
    full = task.evaluate(None)
    out = {}
    for ablation in ablations:
        _check_ablation(ablation)
        table = {m: np.full((task.n_layers, task.n_heads), np.nan) for m in full}
        for l in layers:
            for h in range(task.n_heads):
                gates = _ones(task)
                gates[l, h] = 0.0
                result = task.evaluate(gates, ablation)
                for m in full:
                    table[m][l, h] = result[m] - full[m]
        out[ablation] = table
    return out


def normalise_per_layer(scores) -> np.ndarray:
    """scores (n_layers, n_heads) divided by each layer's L2 norm (Michel et al. 2019), so that
    layers whose gradients are larger overall do not take every top place. A zero layer stays 0."""
    scores = np.asarray(scores, dtype=np.float64)
    norm = np.linalg.norm(scores, axis=1, keepdims=True)  # (n_layers, 1)
    return np.divide(scores, norm, out=np.zeros_like(scores), where=norm > 0)


def gradient_importance(task, head_gates=None, normalise: bool = True) -> np.ndarray:
    """Michel et al. (2019): I_h = E_x |dL(x)/dxi_h| (n_layers, n_heads), the mean over
    evaluation items of the absolute gate gradient, at the given gates (None: all 1); with
    `normalise`, divided by each layer's L2 norm. Needs a task with `gate_gradients` (ToyTask:
    MiniLM's proxy is flat at xi = 1, where the pruned and full embeddings coincide)."""
    if not hasattr(task, "gate_gradients"):
        raise TypeError(f"{type(task).__name__} has no gate_gradients; the gradient score needs a "
                        "differentiable loss (use ablation_effects for this task)")
    grads = task.gate_gradients(head_gates)  # (n_items, n_layers, n_heads)
    keep = task.has_positions() if hasattr(task, "has_positions") else slice(None)
    scores = np.abs(grads[keep]).mean(axis=0)  # (n_layers, n_heads)
    return normalise_per_layer(scores) if normalise else scores


# --------------------------------------------------------------------------- pruning
def prune_order(importance) -> np.ndarray:
    """Flat head indices (layer * n_heads + head), least important first (stable for ties)."""
    return np.argsort(np.asarray(importance, dtype=np.float64).ravel(), kind="stable")


def iterative_order(score_fn, n_layers: int, n_heads: int) -> np.ndarray:
    """Flat head indices in the order of greedy pruning with re-scoring: at each step, score the
    heads with the current gates (score_fn(gates) -> (n_layers, n_heads)) and remove the least
    important head still in place. n_layers * n_heads calls of score_fn."""
    gates = np.ones((n_layers, n_heads))
    order = []
    for _ in range(n_layers * n_heads):
        scores = np.array(score_fn(gates.copy()), dtype=np.float64).ravel()  # a copy: edited below
        scores[np.asarray(order, dtype=np.int64)] = np.inf  # already removed
        head = int(np.argmin(scores))
        order.append(head)
        gates.flat[head] = 0.0
    return np.asarray(order)


def removal_step(order, n_layers: int, n_heads: int) -> np.ndarray:
    """(n_layers, n_heads): the step at which each head is removed (0 = first to go)."""
    step = np.empty(n_layers * n_heads, dtype=np.int64)
    step[np.asarray(order)] = np.arange(len(order))
    return step.reshape(n_layers, n_heads)  # (n_layers, n_heads)


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
        ok = (curve >= curve[0] - tolerance) if higher_is_better else (curve <= curve[0] + tolerance)
        bad = np.flatnonzero(~ok)
        last_ok = len(curve) - 1 if len(bad) == 0 else bad[0] - 1
        return float(self.fraction[last_ok])


def curve_table(curves: PruningCurves, at: int, tolerances=(0.01, 0.05)) -> str:
    """A text table, one row per order (importance, random, reverse): the share of heads that
    can go while the metric stays within each tolerance of the full model's
    (`removable_fraction`), and the metric with `at` heads removed (a step of the curves)."""
    where = np.flatnonzero(curves.n_removed == at)
    if len(where) == 0:
        raise ValueError(f"at must be one of the measured steps {curves.n_removed.tolist()}; got {at}")
    metric = f"{curves.metric}, {at} removed"
    lines = [f"{'order':<12}" + "".join(f"{f'within {t:g}':>12}" for t in tolerances)
             + f"{metric:>{len(metric) + 4}}"]
    for name in ("importance", "random", "reverse"):
        lines.append(f"{name:<12}" + "".join(f"{curves.removable_fraction(name, t):12.2f}"
                                             for t in tolerances)
                     + f"{curves.mean(name)[where[0]]:{len(metric) + 4}.3f}")
    return "\n".join(lines)


def pruning_curves(task, importance, metric: str, *, n_random: int = 5, seed: int = 0,
                   steps=None, ablation: str = "zero", order=None) -> PruningCurves:
    """Accuracy (or any metric of the task) as heads are removed one after another.

    importance (n_layers, n_heads), higher = more important: the "importance" order removes the
    least important first, "reverse" the most important first, and `n_random` seeded random
    orders give the baseline's mean and spread. `order` overrides the importance order (e.g. from
    `iterative_order`). steps: the numbers of removed heads to measure (default 0..n_total);
    (2 + n_random) * len(steps) evaluations in all.
    """
    _check_ablation(ablation)
    n_total = task.n_layers * task.n_heads
    importance = np.asarray(importance, dtype=np.float64)
    if importance.shape != (task.n_layers, task.n_heads):
        raise ValueError(f"importance must be (n_layers, n_heads) = ({task.n_layers}, "
                         f"{task.n_heads}); got {importance.shape}")
    if metric not in task.metrics:
        raise ValueError(f"metric must be one of {task.metrics}; got {metric!r}")
    steps = np.arange(n_total + 1) if steps is None else np.asarray(steps, dtype=np.int64)
    if steps.ndim != 1 or steps.min() < 0 or steps.max() > n_total:
        raise ValueError(f"steps must be numbers of heads in [0, {n_total}]; got {steps}")
    first = prune_order(importance) if order is None else np.asarray(order, dtype=np.int64)
    if sorted(first.tolist()) != list(range(n_total)):
        raise ValueError(f"order must be a permutation of the {n_total} flat head indices")
    rng = np.random.default_rng(seed)
    orders = {"importance": first[None], "reverse": prune_order(-importance)[None],  # (1, n_total)
              "random": np.stack([rng.permutation(n_total) for _ in range(n_random)])
              if n_random else np.zeros((0, n_total), dtype=np.int64)}
    measured = {}  # the same set of removed heads is measured once (k = 0 and k = n_total in every order)

    def measure(run, k):
        key = frozenset(run[:k].tolist())
        if key not in measured:
            measured[key] = task.evaluate(gates_without(run[:k], task.n_layers, task.n_heads),
                                          ablation)[metric]
        return measured[key]

    curves = {name: np.array([[measure(run, k) for k in steps] for run in runs],
                             dtype=np.float64).reshape(len(runs), len(steps))  # (n_runs, n_steps)
              for name, runs in orders.items()}
    return PruningCurves(n_removed=steps, n_total=n_total, metric=metric, ablation=ablation,
                         curves=curves, orders=orders)
