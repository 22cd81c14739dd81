"""A small Transformer encoder trained to denoise the toy language, and its training loop.

The attention in every layer is the course's own `torch_attention.MultiHeadAttention`, so the
weights W_Q[i], W_K[i], W_V[i] of head i are the ones the earlier notebooks built by hand.

What it is trained to predict: the clean sentence from a corrupted one (denoising, the main loss),
plus two small read-outs from the last layer, added so that two of the literature's heads have a
reason to exist in a model this small: every word names its left neighbour's lemma
(`neighbour_loss`, a reason for a local head) and its sentence's closing delimiter
(`closer_loss`, a reason for a delimiter head). They are output objectives: no loss ever looks
at an attention weight, and no mask goes beyond padding. The roles that the heads take on are
measured afterwards, on clean sentences, by `mha_course.analysis.heads`;
`python -m mha_course train-toy-ablation` trains the recipe without the read-outs (notebook 04
shows what changes).

    x_0 = E[token] + P[position]
    x <- LN(x + MHA(x))          (post-LN block, once per layer, as in BERT)
    x <- LN(x + FFN(x))
    logits = LN(x) E^T           (output embedding tied to the input embedding)

`ToyConfig(post_ln=False)` gives the pre-LN block, x <- x + MHA(LN(x)), x <- x + FFN(LN(x)).
In research/toy_lab_log.md (session 4), with pre-LN and neither the three registers nor the
closer read-out, the best delimiter head stayed below 0.7 in 20 of 21 runs (0.23-0.68; the
exception, 3 layers x 4 heads, reached 0.73 in one seed). Each of the three
changes alone gives a delimiter head >= 0.7 in some seeds only (post-LN 3 of 5, the closer
read-out 2 of 5, three registers 2 of 5); together, with the lemma neighbour target, it reaches
0.85-1.00 in all five seeds.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from mha_course import toy_language as lang
from mha_course.analysis import heads as head_metrics
from mha_course.torch_attention import MultiHeadAttention, padding_mask

__all__ = ["ToyConfig", "ToyOutput", "ToyTransformer", "train", "evaluate", "random_init_control",
           "load", "load_report", "rescore", "save", "attend_text"]


@dataclass
class ToyConfig:
    """Model shape and training settings; saved as config.json next to the weights.

    The defaults are the configuration of research/toy_lab_log.md (session 4): 2 post-LN layers x
    8 heads of size 16, so that roles need not share heads; 2200 steps take about 85 s on 2 CPU
    cores. The objective's knobs are explained in `toy_language.corrupt_batch`. Two auxiliary
    read-outs make a relation needed at every word (output objectives, not attention supervision):
    "neighbour" names the word to its left (without its number, so that a verb cannot learn its
    subject's number through the word after the subject), "closer" names the sentence's
    closing delimiter.
    """
    n_layers: int = 2
    n_heads: int = 8
    d_model: int = 64
    d_k: int | None = 16  # per-head query/key/value size; None = d_model // n_heads
    d_ff: int = 256
    post_ln: bool = True  # LN after each residual sum (BERT); False: LN before each sub-layer
    max_len: int = 32
    vocab_size: int = len(lang.VOCAB)
    # training
    steps: int = 2200
    batch_size: int = 64
    lr: float = 5e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    # the denoising objective (see toy_language.corrupt_batch)
    corrupt_rate: float = 0.3  # word-level: [MASK] / one-feature swap / random word
    swap_share: float = 1 / 3  # of the word-level corruptions, the share that are swaps
    sentence_flip: float = 0.2  # sentence-wide world flip (and case flip unless case_flip is set)
    case_flip: float | None = 0.5  # sentence-wide case flip: only the closing delimiter knows
    case_flip_share: float = 1.0  # share of a flipped sentence's words that change case
    swap_case: bool = False  # one-feature swaps may also change a single word's case
    transpose: float = 1.5  # expected number of neighbour swaps per sentence
    relation_swap: float = 0.3  # each verb / pronoun takes the wrong number / pronoun
    protect_governors: bool = True  # subjects and antecedents are never one-feature swapped
    neighbour_loss: float = 0.25  # weight of "also name the token to your left" (0: off)
    neighbour_target: str = "lemma"  # "token" (its identity), "lemma" (without number), "pos"
    closer_loss: float = 0.25  # weight of "also name your sentence's closing delimiter" (0: off)
    n_train_sentences: int = 20000  # a fixed pool, freshly corrupted every step
    n_eval_sentences: int = 400


class ToyOutput(NamedTuple):
    logits: torch.Tensor  # (batch, n, vocab_size)
    weights: torch.Tensor  # (n_layers, batch, n_heads, n, n)
    heads: torch.Tensor  # (n_layers, batch, n_heads, n, d_v), each head's output Z_i
    final: torch.Tensor  # (batch, n, d_model), LN of the last residual stream


class Block(nn.Module):
    """One encoder layer. Post-LN: LN(x + MHA(x)), then LN(x + FFN(x)); pre-LN: x + MHA(LN(x)),
    then x + FFN(LN(x))."""

    def __init__(self, config: ToyConfig):
        super().__init__()
        self.ln_attn = nn.LayerNorm(config.d_model)
        self.attn = MultiHeadAttention(config.d_model, config.n_heads, d_k=config.d_k,
                                       d_v=config.d_k, bias=True)
        self.ln_ffn = nn.LayerNorm(config.d_model)
        self.ffn = nn.Sequential(nn.Linear(config.d_model, config.d_ff), nn.GELU(),
                                 nn.Linear(config.d_ff, config.d_model))
        self.post_ln = config.post_ln

    def forward(self, x, mask, head_gates=None):
        """head_gates: None, or xi (n_heads,) / (batch, n_heads) scaling each Z_i before W^O."""
        if self.post_ln:
            a = self.attn(x, mask=mask, head_gates=head_gates)  # out (batch, n, d_model)
            x = self.ln_attn(x + a.out)
            x = self.ln_ffn(x + self.ffn(x))
        else:
            a = self.attn(self.ln_attn(x), mask=mask, head_gates=head_gates)  # out (batch, n, d_model)
            x = x + a.out
            x = x + self.ffn(self.ln_ffn(x))
        return x, a.weights, a.heads


class ToyTransformer(nn.Module):
    """Token + learned position embeddings, n_layers post-LN (or pre-LN) blocks, tied output embedding."""

    def __init__(self, config: ToyConfig):
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.pos_emb = nn.Embedding(config.max_len, config.d_model)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layers))
        self.ln_out = nn.LayerNorm(config.d_model)
        if config.neighbour_loss > 0:  # a second read-out: what stands to my left?
            n_out = len(lang.POS_TAGS) if config.neighbour_target == "pos" else config.d_model
            self.neighbour_out = nn.Linear(config.d_model, n_out)
        if config.closer_loss > 0:  # a third read-out: how does my sentence end ('.', '?', '!')?
            self.closer_out = nn.Linear(config.d_model, len(lang.CLOSERS))
        for emb in (self.tok_emb, self.pos_emb):
            nn.init.normal_(emb.weight, std=0.02)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor | None = None,
                head_gates=None) -> ToyOutput:
        """ids (batch, n); lengths (batch,) masks the padding keys (None: no padding);
        head_gates: None (all 1), or xi (n_layers, n_heads) / (n_layers, batch, n_heads), one
        multiplicative gate per head on Z_i before W^O (0 removes the head; a tensor that
        requires grad gives dL/dxi)."""
        batch, n = ids.shape
        if n > self.config.max_len:
            raise ValueError(f"sequence of {n} tokens is longer than max_len={self.config.max_len}")
        gate_shape = None if head_gates is None else tuple(np.shape(head_gates))
        if gate_shape is not None and (len(gate_shape) < 2 or gate_shape[0] != self.config.n_layers):
            raise ValueError(f"head_gates must be (n_layers, n_heads) = ({self.config.n_layers}, "
                             f"{self.config.n_heads}) or (n_layers, batch, n_heads); got shape "
                             f"{gate_shape}")
        x = self.tok_emb(ids) + self.pos_emb(torch.arange(n, device=ids.device))  # (batch, n, d_model)
        mask = None if lengths is None else padding_mask(lengths, n, device=ids.device)  # (batch, 1, n)
        weights, heads = [], []
        for layer, block in enumerate(self.blocks):
            gates = None if head_gates is None else head_gates[layer]  # (n_heads,) or (batch, n_heads)
            x, A, Z = block(x, mask, gates)  # A (batch, n_heads, n, n), Z (batch, n_heads, n, d_v)
            weights.append(A)
            heads.append(Z)
        final = self.ln_out(x)  # (batch, n, d_model)
        logits = final @ self.tok_emb.weight.T  # (batch, n, vocab_size)
        return ToyOutput(logits, torch.stack(weights), torch.stack(heads), final)

    @torch.no_grad()
    def attention(self, sentence) -> np.ndarray:
        """Attention weights over sentence.tokens (a Sentence or a token list):
        (n_layers, n_heads, n, n)."""
        tokens = sentence.tokens if hasattr(sentence, "tokens") else list(sentence)
        ids = torch.tensor([lang.encode(tokens)])  # (1, n)
        return self(ids).weights[:, 0].numpy()  # (n_layers, n_heads, n, n)

    @torch.no_grad()
    def attentions(self, sentences, batch_size: int = 256) -> list[np.ndarray]:
        """attention() for many sentences at once, each (n_layers, n_heads, n_s, n_s)."""
        out = []
        for start in range(0, len(sentences), batch_size):
            chunk = sentences[start:start + batch_size]
            ids, lengths = lang.pad_batch(chunk)
            W = self(torch.from_numpy(ids), torch.from_numpy(lengths)).weights.numpy()
            out += [W[:, b, :, :n, :n] for b, n in enumerate(lengths)]
        return out


# ----------------------------------------------------------------------------------------------
# Training


def _lr_at(step: int, config: ToyConfig) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    t = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def _loss(model, inputs, targets, loss_mask, lengths) -> torch.Tensor:
    """Cross-entropy of the clean token at every word position (plus, optionally, of the clean
    token to its left, read out through `neighbour_out`)."""
    out = model(inputs, lengths)
    ignore = -100  # positions outside the mask (cheaper than indexing the logits with a boolean mask)
    loss = F.cross_entropy(out.logits.flatten(0, 1),  # (batch * n, vocab_size)
                           targets.masked_fill(~loss_mask, ignore).flatten(), ignore_index=ignore)
    weight = model.config.neighbour_loss
    if weight > 0:
        at = loss_mask[:, 1:]  # word positions i >= 1; target: the clean token at i - 1
        left_targets = targets[:, :-1]  # (batch, n-1)
        if model.config.neighbour_target in ("token", "lemma"):
            left = model.neighbour_out(out.final[:, 1:]) @ model.tok_emb.weight.T  # (batch, n-1, vocab)
            if model.config.neighbour_target == "lemma":  # a neighbour's number is not asked for
                left_targets = _LEMMA_IDS[left_targets]
        else:  # only its part of speech: a neighbour's number cannot ride along to a verb
            left = model.neighbour_out(out.final[:, 1:])  # (batch, n-1, n_pos)
            left_targets = _POS_IDS[left_targets]
        loss = loss + weight * F.cross_entropy(left.flatten(0, 1),  # (batch * (n-1), n_out)
                                               left_targets.masked_fill(~at, ignore).flatten(),
                                               ignore_index=ignore)
    if model.config.closer_loss > 0:
        rows = torch.arange(len(targets))
        closer = _CLOSER_INDEX[targets[rows, lengths - 2]]  # (batch,) the token before [SEP]
        per_word = closer[:, None].expand_as(targets)  # (batch, n)
        logits = model.closer_out(out.final)  # (batch, n, n_closers)
        # boolean indexing here (3 classes: cheap) keeps the sums of the session-4 sweep, so the
        # shipped checkpoint and research/toy_lab_log.md's table reproduce bit for bit
        loss = loss + model.config.closer_loss * F.cross_entropy(logits[loss_mask], per_word[loss_mask])
    return loss


_POS_IDS = torch.from_numpy(lang.POS_IDS)  # token id -> part-of-speech id
_LEMMA_IDS = torch.from_numpy(lang.LEMMA_IDS)  # token id -> its number-free (singular) form
_CLOSER_INDEX = torch.full((len(lang.VOCAB),), -100, dtype=torch.long)  # token id -> CLOSERS index
_CLOSER_INDEX[[lang.TOKEN_TO_ID[c] for c in lang.CLOSERS]] = torch.arange(len(lang.CLOSERS))


@torch.no_grad()
def evaluate(model: ToyTransformer, sentences, seed: int = 0) -> dict:
    """Accuracy of every sub-task (restoring a corrupted token) and the loss on clean input."""
    model.eval()
    rng = np.random.default_rng(seed)
    result = {}
    for task in lang.SUBTASKS:
        inputs, targets, at, lengths = lang.subtask_batch(sentences, task, rng)
        logits = model(torch.from_numpy(inputs), torch.from_numpy(lengths)).logits
        predicted = logits.argmax(-1).numpy()  # (batch, n)
        result[task] = float((predicted[at] == targets[at]).mean()) if at.any() else float("nan")
    return result


def train(config: ToyConfig | None = None, seed: int = 0, out_dir=None, seconds: float | None = None,
          steps: int | None = None, progress: bool = True, log_every: int = 0
          ) -> tuple[ToyTransformer, dict]:
    """Train a model from scratch; return it and a report (time, steps, accuracies, head roles,
    and the same scores for a random-init model of the same shape: the control).

    Deterministic for a seed (same data, same corruption, same initialisation) when it runs for
    a fixed number of steps (`steps`, default `config.steps`); `seconds` stops earlier at a
    wall-clock budget, which depends on the machine. `log_every` > 0 adds a snapshot of the
    scores every that many steps to report["history"] (roles emerging during training).
    With `out_dir`, writes model.safetensors, config.json and heads.json there.
    """
    config = config or ToyConfig()
    if steps is not None:
        config = replace(config, steps=steps)  # the schedule (cosine decay) follows the step count
    start = time.perf_counter()  # the budget includes making the data
    torch.manual_seed(seed)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        return _train(config, seed, out_dir, seconds, progress, log_every, start)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)


def _train(config, seed, out_dir, seconds, progress, log_every, start):
    rng = np.random.default_rng(seed)
    pool = lang.generate(config.n_train_sentences, seed=seed)
    held_out = lang.generate(config.n_eval_sentences, seed=10_000 + seed)
    model = ToyTransformer(config)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "emb" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "emb" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
    history = []
    bar = _progress_bar(config.steps, progress)
    step = 0
    model.train()
    for step in range(config.steps):
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, config)
        batch = [pool[i] for i in rng.integers(len(pool), size=config.batch_size)]
        other = (1 - config.swap_share) / 2
        arrays = lang.corrupt_batch(batch, rng, config.corrupt_rate,
                                    kinds=(other, config.swap_share, other),
                                    sentence_flip=config.sentence_flip, transpose=config.transpose,
                                    relation_swap=config.relation_swap,
                                    protect_governors=config.protect_governors,
                                    case_flip=config.case_flip, swap_case=config.swap_case,
                                    case_flip_share=config.case_flip_share)
        tensors = [torch.from_numpy(a) for a in arrays]  # inputs, targets, loss_mask, lengths
        loss = _loss(model, *tensors)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        bar.update(1)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if log_every and (step + 1) % log_every == 0:
            history.append(_snapshot(model, held_out, step + 1, time.perf_counter() - start))
            model.train()
        if seconds is not None and time.perf_counter() - start > seconds:
            break
    bar.close()
    elapsed = time.perf_counter() - start
    report = _snapshot(model, held_out, step + 1, elapsed)
    report["ms_per_step"] = round(1000 * elapsed / (step + 1), 2)
    report["threads"] = torch.get_num_threads()
    report["history"] = history
    report["control"] = random_init_control(config, held_out, seed)
    if out_dir is not None:
        save(model, out_dir, report)
    return model, report


def random_init_control(config: ToyConfig, sentences, seed: int = 0) -> dict:
    """The best score per role of an *untrained* model of the same shape: what chance gives."""
    with torch.random.fork_rng():
        torch.manual_seed(seed + 1)  # not the trained model's initialisation
        model = ToyTransformer(config).eval()
    scores = head_metrics.head_scores(model.attentions(sentences), sentences)
    best = head_metrics.best_heads(scores)  # NaN for a role the sentences cannot measure
    return {r: round(best[r]["score"], 4) for r in head_metrics.ROLES}


def _snapshot(model, sentences, steps: int, seconds: float) -> dict:
    """Accuracies and head scores on held-out clean sentences."""
    model.eval()
    scores = head_metrics.head_scores(model.attentions(sentences), sentences)
    offset, baseline = head_metrics.fixed_offset_baseline(sentences)
    return {
        "steps": steps, "seconds": round(seconds, 2),
        "accuracy": evaluate(model, sentences),
        "best": head_metrics.best_heads(scores),
        "syntactic_baseline": {"offset": offset, "score": baseline},
        "scores": {k: np.round(np.asarray(v, dtype=float), 4).tolist() for k, v in scores.items()},
    }


def _progress_bar(total: int, enabled: bool):
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a course dependency
        tqdm = None
    if tqdm is None or not enabled:
        return _NoBar()
    return tqdm(total=total, desc="training", unit="step")


class _NoBar:
    def update(self, n): pass
    def set_postfix(self, **kw): pass
    def close(self): pass


# ----------------------------------------------------------------------------------------------
# Saving and loading

DEFAULT_CHECKPOINT = "toy_model"  # folder under mha_course/data/


def save(model: ToyTransformer, out_dir, report: dict | None = None) -> Path:
    """Write model.safetensors, config.json and (with a report) heads.json to out_dir."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(out / "model.safetensors"))
    (out / "config.json").write_text(json.dumps(asdict(model.config), indent=2))
    if report is not None:
        (out / "heads.json").write_text(json.dumps(_heads_json(report), indent=1))
    return out


def _heads_json(report: dict) -> dict:
    scores = report["scores"]
    roles = head_metrics.classify_heads({k: np.asarray(v, dtype=float) for k, v in scores.items()},
                                        syntactic_baseline=report["syntactic_baseline"]["score"])
    per_head = [{"layer": r["layer"], "head": r["head"], "role": r["role"],
                 **{k: scores[k][r["layer"]][r["head"]] for k in scores}} for r in roles]
    return {"heads": per_head, "best": report["best"],
            "syntactic_baseline": report["syntactic_baseline"],
            "accuracy": report["accuracy"], "training_seconds": report["seconds"],
            "training_steps": report["steps"], "ms_per_step": report.get("ms_per_step"),
            "threads": report.get("threads"), "control": report.get("control"),
            "history": report.get("history", [])}


def load(path=None) -> ToyTransformer:
    """A trained model from a folder written by `save` (None: the checkpoint shipped in the package)."""
    from safetensors.torch import load_file

    path = _checkpoint_dir(path)
    settings = json.loads((path / "config.json").read_text())
    settings.setdefault("post_ln", False)  # checkpoints written before post_ln existed are pre-LN
    config = ToyConfig(**settings)
    model = ToyTransformer(config)
    model.load_state_dict(load_file(str(path / "model.safetensors")))
    return model.eval()


def _checkpoint_dir(path=None) -> Path:
    if path is None:
        from importlib import resources
        path = resources.files("mha_course") / "data" / DEFAULT_CHECKPOINT
    return Path(str(path))


def rescore(path=None, seed: int = 0) -> dict:
    """Measure a saved checkpoint's heads again with today's metrics (`analysis.heads`) on the
    held-out sentences of its training run (`seed`: the seed it was trained with) and rewrite its
    heads.json; the training fields (time, steps, threads, history) are kept. Returns the new
    heads.json content. For when the metrics change and the weights do not."""
    path = _checkpoint_dir(path)
    model = load(path)
    old = load_report(path)
    held_out = lang.generate(model.config.n_eval_sentences, seed=10_000 + seed)
    report = _snapshot(model, held_out, old["training_steps"], old["training_seconds"])
    report.update(ms_per_step=old.get("ms_per_step"), threads=old.get("threads"),
                  history=old.get("history", []),
                  control=random_init_control(model.config, held_out, seed))
    content = _heads_json(report)
    (path / "heads.json").write_text(json.dumps(content, indent=1))
    return content


def load_report(path=None) -> dict:
    """heads.json of a checkpoint (None: the shipped one): every head's role scores and role, the
    best head of each role, the offset baseline, sub-task accuracies, training time, the control."""
    return json.loads((_checkpoint_dir(path) / "heads.json").read_text())


def attend_text(model: ToyTransformer):
    """A function text -> (tokens, weights (n_layers, n_heads, n, n)) for the head explorer."""
    def attend(text: str):
        tokens = lang.tokenize(text)
        return tokens, model.attention(tokens)
    return attend
