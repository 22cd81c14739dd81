"""The toy Transformer as a task for head-importance experiments: its seven sub-tasks measured under
any gating of its heads, with zero or mean ablation (`mha_course.models.ablation`), and the
gradient of each item's loss with respect to every gate.

    task = ToyTask(model, sentences)             # the sub-task batches, drawn once (seeded)
    task.evaluate(head_gates, "mean")            # {"accuracy", "loss", one accuracy per sub-task}
    task.gate_gradients()                        # (n_items, n_layers, n_heads): dL(x)/dxi_h

`mha_course.experiments.pruning` runs such a task to get ablation tables, gradient scores and
pruning curves.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from mha_course.models import toy_language as lang
from mha_course.models.ablation import check_ablation, first_gated_layer, layer_gates
from mha_course.torch_attention import padding_mask

__all__ = ["ToyTask"]


def _pad(a: np.ndarray, n: int) -> np.ndarray:
    return np.pad(a, ((0, 0), (0, n - a.shape[1])))  # (batch, n)


class ToyTask:
    """The toy Transformer on its seven sub-tasks (`toy_language.subtask_batch`), under any gating.

    The corrupted batches are drawn once (seeded) exactly as `toy_model.evaluate` draws them, so
    that every evaluation sees the same inputs and all gates at 1 give `evaluate`'s numbers.
    Metrics: "accuracy" (the mean over sub-tasks of the share of corrupted tokens restored),
    "loss" (cross-entropy of the clean token over every evaluated position), and one accuracy
    per sub-task. The model is put in eval mode; mean ablation shifts its output biases for the
    duration of a forward pass and puts them back.
    """

    def __init__(self, model, sentences, seed: int = 0, tasks=None, batch_size: int = 512):
        tasks = tuple(lang.SUBTASKS if tasks is None else tasks)
        rng = np.random.default_rng(seed)
        parts = [lang.subtask_batch(sentences, t, rng) for t in tasks]
        n = max(p[0].shape[1] for p in parts)
        self.model = model.eval()
        self.tasks = tasks
        inputs, targets, at = (np.concatenate([_pad(p[i], n) for p in parts]) for i in range(3))
        self.inputs = torch.from_numpy(inputs)  # (n_items, n)
        self.targets = torch.from_numpy(targets)  # (n_items, n)
        self.at = torch.from_numpy(at)  # (n_items, n)
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

    def _capture_block_inputs(self) -> list[tuple]:
        """Per chunk, the full model's residual stream (n_layers + 1, batch, n, d_model), entry l
        being what enters block l, and the padding mask (batch, 1, n): removing a head of layer l
        leaves the blocks below l as they are, so an evaluation can start at layer l."""
        ones = torch.ones(self.n_layers, self.n_heads)  # (n_layers, n_heads), as evaluate passes
        captured = []
        with torch.no_grad():
            for rows in self._chunks():
                inputs, lengths = self.inputs[rows], self.lengths[rows]
                residual = self.model(inputs, lengths, ones).residual
                mask = padding_mask(lengths, inputs.shape[1])  # (batch, 1, n), as the model's
                captured.append((residual, mask))
        return captured

    def head_means(self) -> np.ndarray:
        """(n_layers, n_heads, d_v): mu_h, each head's Z_h averaged over every real token of the
        evaluation inputs, with the full model (computed once)."""
        if self._means is None:
            total, count = 0.0, 0
            with torch.no_grad():
                for rows in self._chunks():
                    lengths = self.lengths[rows]
                    Z = self.model(self.inputs[rows], lengths).heads
                    # Z: (n_layers, batch, n_heads, n, d_v)
                    real = torch.arange(Z.shape[3])[None] < lengths[:, None]  # (batch, n)
                    real = real[None, :, None, :, None]  # (1, batch, 1, n, 1)
                    total = total + (Z * real).sum(dim=(1, 3))  # (n_layers, n_heads, d_v)
                    count += int(real.sum())
            self._means = (total / count).numpy()
        return self._means

    def _bias_shifts(self, gates):
        """Per layer, sum_h (1 - xi_h) mu_h W^O_h: the output-bias shift of mean ablation."""
        mu = torch.from_numpy(self.head_means())  # (n_layers, n_heads, d_v)
        shifts = []
        for layer, block in enumerate(self.model.blocks):
            W_O = block.attn.W_O.detach()  # (n_heads * d_v, d_model)
            W = W_O.reshape(self.n_heads, -1, block.attn.d_model)  # (n_heads, d_v, d_model)
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
        g = torch.as_tensor(gates, dtype=torch.float32)  # (n_layers, n_heads)
        start = first_gated_layer(gates)
        start = 0 if start is None else start
        residual, mask = self._block_inputs[index]
        x = residual[start]  # (batch, n, d_model): what the full model fed block `start`
        for layer in range(start, self.n_layers):
            x = self.model.blocks[layer](x, mask, g[layer])[0]  # (batch, n, d_model)
        final = self.model.ln_out(x[self.at[rows]])  # (n_at, d_model)
        return final @ self.model.tok_emb.weight.T  # (n_at, vocab_size)

    def _forward(self, index, rows, gates, ablation):
        """Logits (n_at, vocab_size) of the gated model at the evaluated positions; mean ablation
        shifts b^O meanwhile (by exactly 0 in layers whose gates are all 1, so their cached
        inputs still hold)."""
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
        check_ablation(ablation)
        gates = layer_gates(head_gates, self.n_layers, self.n_heads)  # (n_layers, n_heads)
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
        gates = torch.as_tensor(layer_gates(head_gates, self.n_layers, self.n_heads),
                                dtype=torch.float32)  # (n_layers, n_heads)
        out = []
        for rows in self._chunks():
            at, targets = self.at[rows], self.targets[rows]
            batch = len(at)
            g = gates[:, None, :].repeat(1, batch, 1)  # (n_layers, batch, n_heads)
            g.requires_grad_(True)
            logits = self.model(self.inputs[rows], self.lengths[rows], g).logits
            # logits: (batch, n, vocab_size)
            ce = F.cross_entropy(logits.transpose(1, 2), targets, reduction="none")  # (batch, n)
            per_item = (ce * at).sum(-1) / at.sum(-1).clamp(min=1)  # (batch,): L(x)
            (grad,) = torch.autograd.grad(per_item.sum(), g)  # (n_layers, batch, n_heads)
            out.append(grad.permute(1, 0, 2).numpy())  # (batch, n_layers, n_heads)
        return np.concatenate(out)  # (n_items, n_layers, n_heads)

    def has_positions(self) -> np.ndarray:
        """(n_items,) bool: items with at least one evaluated position."""
        return self.at.any(-1).numpy()
