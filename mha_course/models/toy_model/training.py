"""Training the toy Transformer: the denoising loss (with its read-outs and penalties), the
learning-rate schedule, the training loop and the sub-task accuracies. `train` only trains and
measures accuracy; what it logs at each snapshot is up to the caller (`snapshot`):
`mha_course.experiments.toy_training` adds the heads' role scores, the control and heads.json."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import NamedTuple

import numpy as np
import torch
from torch.nn import functional as F
from tqdm.auto import tqdm

from mha_course.models import toy_language as lang
from mha_course.models.toy_model.config import ToyConfig
from mha_course.models.toy_model.model import ToyTransformer

__all__ = ["train", "pack", "Packed", "governor_positions", "evaluate", "held_out_sentences",
           "head_overlap", "head_entropy", "packed_loss", "training_batches", "draw_batch",
           "accuracy_snapshot", "HELD_OUT_SEED"]

HELD_OUT_SEED = 10_000  # a run with seed s trains on generate(..., seed=s), measures on s + this


def _lr_at(step: int, config: ToyConfig) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    t = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


class Packed(NamedTuple):
    """Sentences packed several to a row (`pack`); all (rows, capacity) but `mask`."""
    ids: torch.Tensor  # token ids, [PAD] after the last sentence of a row
    targets: torch.Tensor  # the clean token ids
    loss_mask: torch.Tensor  # True at word positions (the loss is there)
    closer: torch.Tensor  # index in CLOSERS of each token's sentence's closer
    world: torch.Tensor  # index in WORLDS of each token's sentence's world
    subject: torch.Tensor  # at a verb, the lemma class (_LEMMAS) of its subject; -1 elsewhere
    positions: torch.Tensor  # position of each token in its own sentence
    mask: torch.Tensor  # (rows, capacity, capacity): True = same sentence (may attend)


def pack(inputs, targets, loss_mask, lengths, capacity: int, governors=None) -> Packed:
    """Pack a padded batch (batch, n) into as few rows of `capacity` tokens as first-fit
    decreasing finds, each sentence whole and seeing only itself (`mask`), with positions
    restarting at 0. The model computes the same numbers for each sentence as unpacked (to float
    rounding) on about a third fewer positions: the padding that a batch of short and long
    sentences carries is gone. `governors` (batch, n): the position of each token's gold head
    (`Sentence.head`, verb -> subject), -1 where none; None: no subject targets."""
    inputs, targets, loss_mask, lengths = (np.asarray(a) for a in
                                           (inputs, targets, loss_mask, lengths))
    if lengths.max() > capacity:
        raise ValueError(f"a sentence of {lengths.max()} tokens does not fit rows of {capacity}")
    governors = np.full(targets.shape, -1) if governors is None else np.asarray(governors)
    sentence = np.arange(len(lengths))  # (batch,)
    subjects = np.where(governors >= 0, _LEMMA_CLASS.numpy()[targets[
        sentence[:, None], np.maximum(governors, 0)]], -1)  # (batch, n)
    worlds = _WORLD_INDEX[targets].max(axis=1)  # (batch,): -1 marks words of no world
    closers = _CLOSER_INDEX.numpy()[targets[sentence, lengths - 2]]  # (batch,): before [SEP]
    free: list[int] = []  # room left in each row
    place = np.zeros((len(lengths), 2), dtype=np.int64)  # (batch, 2): row, start
    for b in np.argsort(-lengths, kind="stable"):  # longest first
        row = next((r for r, room in enumerate(free) if room >= lengths[b]), len(free))
        if row == len(free):
            free.append(capacity)
        place[b] = row, capacity - free[row]
        free[row] -= lengths[b]
    shape = (len(free), capacity)
    ids, clean = np.zeros(shape, np.int64), np.zeros(shape, np.int64)  # (rows, capacity)
    words, positions = np.zeros(shape, bool), np.zeros(shape, np.int64)
    segment, closer = np.full(shape, -1), np.zeros(shape, np.int64)  # -1: padding
    world, subject = np.zeros(shape, np.int64), np.full(shape, -1)
    for b, ((row, start), n) in enumerate(zip(place, lengths)):
        at = slice(start, start + n)
        ids[row, at], clean[row, at] = inputs[b, :n], targets[b, :n]
        words[row, at] = loss_mask[b, :n]
        positions[row, at], segment[row, at], closer[row, at] = np.arange(n), b, closers[b]
        world[row, at], subject[row, at] = worlds[b], subjects[b, :n]
    mask = segment[:, :, None] == segment[:, None, :]  # (rows, capacity, capacity)
    return Packed(*(torch.from_numpy(x) for x in
                    (ids, clean, words, closer, world, subject, positions, mask)))


def _loss(model, inputs, targets, loss_mask, lengths, governors=None,
          step: int | None = None) -> torch.Tensor:
    """Cross-entropy of the clean token at every word position, plus the read-outs: the lemma
    of the clean token to its left (`neighbour_loss`), the sentence's closer (`closer_loss`) and
    world (`world_loss`), and at each verb its subject's lemma (`subject_loss`; `governors`
    (batch, n) gives the subject's position, as `pack`). The batch is packed (`pack`), and read
    out only at word positions."""
    config = model.config
    if config.subject_loss > 0 and governors is None:
        raise ValueError("subject_loss > 0 needs governors: (batch, n) positions of each "
                         "token's subject (Sentence.head), -1 where none")
    return packed_loss(model, pack(inputs, targets, loss_mask, lengths, config.max_len,
                                   governors), step)


def packed_loss(model, p: Packed, step: int | None = None) -> torch.Tensor:
    """`_loss` of a batch already packed (`pack`, with its governors)."""
    config = model.config
    gates = _dropped_heads(config, len(p.ids)) if model.training else None
    streams, weights = model.streams_and_weights(p.ids, positions=p.positions, mask=p.mask,
                                                 head_gates=gates)
    # streams: n_layers x (rows, capacity, d_model); weights: n_layers x (rows, h, cap, cap)
    final = streams[-1]  # (rows, capacity, d_model)
    words = final[p.loss_mask]  # (n_words, d_model): every word position of the batch
    logits, clean = words @ model.tok_emb.weight.T, p.targets[p.loss_mask]  # (n_words, vocab)
    loss = F.cross_entropy(logits, clean)
    if max(config.order_loss, config.naming_loss, config.apposition_loss) > 0:  # (else: none)
        ids, t = p.ids, p.targets  # pair[:, i]: the tokens at i and i + 1 traded places
        pair = (ids[:, :-1] == t[:, 1:]) & (ids[:, 1:] == t[:, :-1]) & (t[:, :-1] != t[:, 1:])
        for weight, at in ((config.order_loss, F.pad(pair, (1, 0)) | F.pad(pair, (0, 1))),
                           (config.naming_loss, (ids != t) & (ids == _PARTNERS[t])),
                           (config.apposition_loss, F.pad(_IS_APPOSITION[t[:, :-1]], (1, 0)))):
            if weight > 0 and (at := at[p.loss_mask]).any():  # (n_words,): once more alone
                loss = loss + weight * F.cross_entropy(logits[at], clean[at])
    if config.neighbour_loss > 0:
        loss = loss + config.neighbour_loss * _neighbour_loss(model, model.neighbour_out, final, p)
    if config.closer_loss > 0:
        loss = loss + config.closer_loss * F.cross_entropy(model.closer_out(words),
                                                           p.closer[p.loss_mask])
    first = streams[0]  # (rows, capacity, d_model): after the first layer
    if config.early_neighbour > 0:  # the same questions, asked after the first layer
        loss = loss + config.early_neighbour * _neighbour_loss(
            model, model.early_neighbour_out, first, p,
            "stem" if config.neighbour_target == "stem" else "lemma")
    if config.early_closer > 0:
        loss = loss + config.early_closer * F.cross_entropy(
            model.early_closer_out(first[p.loss_mask]), p.closer[p.loss_mask])
    if config.right_neighbour > 0:
        loss = loss + config.right_neighbour * _neighbour_loss(
            model, model.right_neighbour_out, final, p, "stem", side=1)
    if config.world_loss > 0:
        loss = loss + config.world_loss * F.cross_entropy(model.world_out(words),
                                                          p.world[p.loss_mask])
    _check_penalties(config)
    overlap_on = (config.head_overlap_steps is None or step is None
                  or step < config.head_overlap_steps)  # `step` None: outside training
    if config.head_overlap > 0 and overlap_on:
        penalised = weights[-1:] if config.head_overlap_last else weights
        loss = loss + config.head_overlap * sum(
            head_overlap(w, p.loss_mask, config.head_overlap_window)
            for w in penalised) / len(penalised)
    if config.head_entropy != 0 or config.head_entropy_last != 0:
        ramp = 1.0 if step is None else min(1.0, (step + 1) / max(1, config.head_entropy_warmup))
        last = head_entropy(weights[-1], p.loss_mask)
        if config.head_entropy != 0:
            mean = (sum(head_entropy(w, p.loss_mask) for w in weights[:-1]) + last) / len(weights)
            loss = loss + ramp * config.head_entropy * mean
        loss = loss + ramp * config.head_entropy_last * last
    verbs = p.subject >= 0  # (rows, capacity)
    if config.subject_loss > 0 and verbs.any():  # subject: (n_verbs, n_lemmas)
        subject = model.subject_out(final[verbs]) @ model.tok_emb.weight[_LEMMAS].T
        loss = loss + config.subject_loss * F.cross_entropy(subject, p.subject[verbs])
    return loss


def draw_batch(config: ToyConfig, pool, rng: np.random.Generator) -> tuple[list, tuple]:
    """`batch_size` sentences drawn from `pool` and corrupted as `config` says
    (`toy_language.corrupt_batch`): the sentences and (inputs, targets, loss_mask, lengths)."""
    batch = [pool[i] for i in rng.integers(len(pool), size=config.batch_size)]
    other = (1 - config.swap_share) / 2  # [MASK] and random word share what swaps leave
    arrays = lang.corrupt_batch(batch, rng, config.corrupt_rate,
                                kinds=(other, config.swap_share, other),
                                sentence_flip=config.sentence_flip, transpose=config.transpose,
                                relation_swap=config.relation_swap, name_swap=config.name_swap,
                                protect_governors=config.protect_governors,
                                case_flip=config.case_flip, swap_case=config.swap_case,
                                case_flip_share=config.case_flip_share)
    return batch, arrays  # arrays: (batch, n) three times, then lengths (batch,)


def training_batches(config: ToyConfig, pool, rng: np.random.Generator):
    """The training batches of a run, in order and without end: `draw_batch`, packed with the
    sentences' governors (`pack`). All randomness comes from `rng`, so the sequence is fixed by
    its seed."""
    while True:
        batch, arrays = draw_batch(config, pool, rng)
        yield pack(*arrays, config.max_len, governor_positions(batch, arrays[0].shape[1]))


def _check_penalties(config: ToyConfig) -> None:
    """A negative weight would reward heads for attending together (overlap) or for spreading
    (entropy), and a NaN one would turn the loss NaN; say so instead."""
    bad = [f"{name}={value!r}" for name, value, ok in (
        ("head_overlap", config.head_overlap, config.head_overlap >= 0),
        ("head_overlap_window", config.head_overlap_window,
         isinstance(config.head_overlap_window, int) and config.head_overlap_window >= 0),
        ("head_overlap_steps", config.head_overlap_steps,
         config.head_overlap_steps is None or (isinstance(config.head_overlap_steps, int)
                                               and config.head_overlap_steps >= 0)))
        if not ok]
    if bad:
        raise ValueError("head_overlap must be >= 0, head_overlap_window an int >= 0 and "
                         f"head_overlap_steps None or an int >= 0; got {', '.join(bad)}")
    if not (config.head_entropy >= 0 and config.head_entropy_last >= 0):  # NaN fails too
        raise ValueError("head_entropy and head_entropy_last must be numbers >= 0 (a negative "
                         f"weight would reward diffuse heads); got {config.head_entropy!r}, "
                         f"{config.head_entropy_last!r}")
    warmup = config.head_entropy_warmup
    if not (isinstance(warmup, int) and not isinstance(warmup, bool) and warmup >= 0):
        raise ValueError(f"head_entropy_warmup must be an int >= 0 (steps); got {warmup!r}")


def head_overlap(weights: torch.Tensor, queries: torch.Tensor, window: int = 0) -> torch.Tensor:
    """How much the heads of one layer attend to the same keys from the same query: the mean
    over `queries` (rows, n) bool of sum_{i != j} sum_k A_i[q, k] A_j[q, k] / (h (h - 1)), from
    weights (rows, h, n, n). 0 when no two heads share a key, 1 for identical one-hot heads.
    `window` > 0 leaves out the keys within that distance of the query (row positions)."""
    h, n = weights.shape[1], weights.shape[-1]
    if window > 0:  # leave out the keys within `window` of the query (its own neighbourhood)
        at = torch.arange(n, device=weights.device)  # (n,)
        weights = weights * ((at[:, None] - at[None, :]).abs() > window)  # (rows, h, n, n)
    together = weights.sum(dim=1)  # (rows, n, n): sum over heads
    pairs = (together.square() - weights.square().sum(dim=1)).sum(dim=-1)  # (rows, n)
    return pairs[queries].mean() / (h * (h - 1))


def head_entropy(weights: torch.Tensor, queries: torch.Tensor) -> torch.Tensor:
    """The mean attention entropy, -sum_k A[q, k] log A[q, k] in nats, over the heads and the
    `queries` (rows, n) bool of weights (rows, h, n, n): 0 when every head puts all of a
    query's weight on one key, log(m) when it spreads it evenly over m keys."""
    plogp = weights * torch.log(weights.clamp_min(1e-30))  # (rows, h, n, n); 0 where A = 0
    entropy = -plogp.sum(dim=-1)  # (rows, h, n)
    return entropy.transpose(1, 2)[queries].mean()  # over (n_queries, h)


def _neighbour_loss(model, out, stream, p: Packed, target: str | None = None,
                    side: int = -1) -> torch.Tensor:
    """Cross-entropy of "name the clean token to your left" (`side` -1; 1: to your right) read
    by `out` from `stream` (rows, capacity, d_model), as `ToyConfig.neighbour_target` asks (or
    `target`). A word is never its sentence's first or last token ([CLS] and [SEP] are), so its
    neighbours in the packed row are its neighbours in the sentence."""
    if side not in (-1, 1):
        raise ValueError(f"side must be -1 (left) or 1 (right); got {side!r}")
    here, there = (slice(1, None), slice(None, -1))[::-side]  # word i; its neighbour i + side
    at = p.loss_mask[:, here]  # (rows, capacity - 1): the words that have that neighbour
    targets = p.targets[:, there][at]  # (n_at,): the clean token beside each
    h = out(stream[:, here][at])  # (n_at, d_model), or (n_at, n_pos)
    target = target or model.config.neighbour_target
    if target == "token":  # its identity, number included
        logits = h @ model.tok_emb.weight.T  # (n_at, vocab_size)
    elif target == "lemma":  # a neighbour's number is not asked for: score the lemmas only
        logits, targets = h @ model.tok_emb.weight[_LEMMAS].T, _LEMMA_CLASS[targets]
    elif target == "stem":  # nor its gender: a name and its partner, the pronouns, share one
        logits, targets = h @ model.tok_emb.weight[_STEMS].T, _STEM_CLASS[targets]
    elif target == "pos":  # only its part of speech: a neighbour's number cannot ride along
        logits, targets = h, _POS_IDS[targets]  # (n_at, n_pos)
    else:
        raise ValueError('neighbour_target must be "token", "lemma", "stem" or "pos"; '
                         f"got {target!r}")
    return F.cross_entropy(logits, targets)


def _dropped_heads(config: ToyConfig, rows: int) -> torch.Tensor | None:
    """DropHead: (n_layers, rows, n_heads) gates, 0 with probability `head_dropout` and
    1 / (1 - head_dropout) otherwise, drawn from torch's generator; None when it is 0."""
    p = config.head_dropout
    if p == 0:
        return None
    if not 0 < p < 1:
        raise ValueError(f"head_dropout must be in [0, 1); got {p}")
    keep = torch.rand(config.n_layers, rows, config.n_heads) >= p  # (n_layers, rows, n_heads)
    return keep.float() / (1 - p)


def governor_positions(sentences, n: int) -> np.ndarray:
    """(batch, n): at each verb its subject's position (`Sentence.head`), -1 elsewhere."""
    out = np.full((len(sentences), n), -1, dtype=np.int64)
    for b, s in enumerate(sentences):
        out[b, :len(s.head)] = s.head
    return out


_POS_IDS = torch.from_numpy(lang.POS_IDS)  # token id -> part-of-speech id
_PARTNERS = torch.from_numpy(lang.NAME_PARTNER_IDS)  # a name -> its partner, other tokens: same
_IS_APPOSITION = torch.from_numpy(np.isin(np.arange(len(lang.VOCAB)), lang.APPOSITION_IDS))
_LEMMAS = torch.from_numpy(np.unique(lang.LEMMA_IDS))  # (n_lemmas,) the token ids of the lemmas
_LEMMA_CLASS = torch.from_numpy(np.searchsorted(np.unique(lang.LEMMA_IDS), lang.LEMMA_IDS))
# _LEMMA_CLASS: token id -> the index of its lemma in _LEMMAS
_STEMS = torch.from_numpy(np.unique(lang.STEM_IDS))  # (n_stems,) lemmas without gender
_STEM_CLASS = torch.from_numpy(np.searchsorted(np.unique(lang.STEM_IDS), lang.STEM_IDS))
_WORLD_INDEX = np.array([lang.WORLDS.index(lang.LEXICON[t].world) if lang.LEXICON[t].world
                         else -1 for t in lang.VOCAB])  # token id -> WORLDS index, -1: none
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


def held_out_sentences(config: ToyConfig, seed: int = 0) -> list:
    """The clean held-out sentences a training run with `seed` measures itself on (drawn from
    the run's grammar, `config.grammar`)."""
    return lang.generate(config.n_eval_sentences, seed=HELD_OUT_SEED + seed, grammar=config.grammar)


def accuracy_snapshot(model: ToyTransformer, sentences, steps: int, seconds: float) -> dict:
    """What `train` logs by default: steps, seconds and the sub-task accuracies on `sentences`."""
    return {"steps": steps, "seconds": round(seconds, 2), "accuracy": evaluate(model, sentences)}


def train(config: ToyConfig | None = None, seed: int = 0, seconds: float | None = None,
          steps: int | None = None, progress: bool = True, log_every: int = 0,
          snapshot=accuracy_snapshot) -> tuple[ToyTransformer, dict]:
    """Train a model from scratch; return it and a report: `snapshot(model, held_out, steps,
    seconds)` at the end, plus ms_per_step, threads and history (the same snapshot every
    `log_every` steps when > 0). The default snapshot logs the sub-task accuracies;
    `experiments.toy_training.train` passes one that also scores the heads' roles.

    Deterministic for a seed (same data, same corruption, same initialisation) when it runs for
    a fixed number of steps (`steps`, default `config.steps`); `seconds` stops earlier at a
    wall-clock budget, which depends on the machine.
    """
    config = config or ToyConfig()
    if steps is not None:
        config = replace(config, steps=steps)  # the schedule (cosine decay) follows the step count
    start = time.perf_counter()  # the budget includes making the data
    torch.manual_seed(seed)
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        return _train(config, seed, seconds, progress, log_every, snapshot, start)
    finally:
        torch.use_deterministic_algorithms(was_deterministic)


def _train(config, seed, seconds, progress, log_every, snapshot, start):
    rng = np.random.default_rng(seed)
    pool = lang.generate(config.n_train_sentences, seed=seed, grammar=config.grammar)
    held_out = held_out_sentences(config, seed)
    model = ToyTransformer(config)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "emb" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "emb" not in n)]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config.lr,
                                  fused=config.fused_optimizer)
    history = []
    bar = _progress_bar(config.steps, progress)
    step = 0
    model.train()
    batches = training_batches(config, pool, rng)
    for step in range(config.steps):
        for group in optimizer.param_groups:
            group["lr"] = _lr_at(step, config)
        loss = packed_loss(model, next(batches), step=step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        bar.update(1)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if log_every and (step + 1) % log_every == 0:
            history.append(snapshot(model, held_out, step + 1, time.perf_counter() - start))
            model.train()
        if seconds is not None and time.perf_counter() - start > seconds:
            break
    bar.close()
    elapsed = time.perf_counter() - start
    model.eval()
    report = snapshot(model, held_out, step + 1, elapsed)
    report["ms_per_step"] = round(1000 * elapsed / (step + 1), 2)
    report["threads"] = torch.get_num_threads()
    report["history"] = history
    return model, report


def _progress_bar(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    return tqdm(total=total, desc="training", unit="step")


class _NoBar:
    def update(self, n):
        pass

    def set_postfix(self, **kw):
        pass

    def close(self):
        pass
