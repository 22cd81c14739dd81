"""The toy Transformer's configuration: model shape, training and the denoising objective;
saved as config.json next to the weights."""

from __future__ import annotations

from dataclasses import dataclass, field

from mha_course.models import toy_language as lang

__all__ = ["ToyConfig"]


@dataclass
class ToyConfig:
    """Model shape, training settings, the grammar of the training sentences and the denoising
    objective; saved as config.json next to the weights.

    The defaults are the shipped checkpoint's recipe: 2 post-LN layers x 8 heads (queries and
    keys of 8, values of 16), so that roles need not share heads, trained for `steps` steps (the
    seconds they take, on this machine: `python bench/toy_training.py`). The objective's knobs
    are explained in `toy_language.corrupt_batch`. Four auxiliary read-outs make a relation needed
    at every word (output objectives, not attention supervision): "neighbour" names the word to
    its left (without its number, so that a verb cannot learn its subject's number through the
    word after the subject), "closer" names the sentence's closing delimiter, "world" the
    sentence's world (after a sentence-wide flip only its names tell it), and "subject", at each
    verb, the lemma of its subject. The denoising loss is asked again at the few hard positions
    (`order_loss`, `apposition_loss`), and a penalty on the last layer's attention entropy
    (`head_entropy_last`) asks its heads to look somewhere in particular. Why each default is
    what it is, with the seed sweeps behind it: docs/design/toy_language.md.
    """
    n_layers: int = 2
    n_heads: int = 8
    d_model: int = 64
    d_k: int | None = 8  # per-head query/key size; None = d_model // n_heads
    d_v: int | None = 16  # per-head value size (the width of Z_i); None = d_k
    d_ff: int = 128
    post_ln: bool = True  # LN after each residual sum (BERT); False: LN before each sub-layer
    max_len: int = 32
    vocab_size: int = len(lang.VOCAB)
    # the training (and held-out) sentences
    grammar: lang.Grammar = field(default_factory=lang.Grammar)
    # training
    steps: int = 2200
    batch_size: int = 64
    lr: float = 7e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    fused_optimizer: bool = True  # AdamW's fused kernel: ~5% less time a step on 2 cores, and
    # other float sums (False: the loop that trained the checkpoints before 2026-12-06)
    # the denoising objective (see toy_language.corrupt_batch)
    corrupt_rate: float = 0.3  # word-level: [MASK] / one-feature swap / random word
    swap_share: float = 1 / 3  # of the word-level corruptions, the share that are swaps
    sentence_flip: float = 0.4  # sentence-wide world flip (and case flip unless case_flip is set)
    case_flip: float | None = 0.5  # sentence-wide case flip: only the closing delimiter knows
    case_flip_share: float = 1.0  # share of a flipped sentence's words that change case
    swap_case: bool = True  # one-feature swaps may also change a single word's case
    transpose: float = 1.5  # expected number of neighbour swaps per sentence
    relation_swap: float = 0.3  # each verb / pronoun takes the wrong number / pronoun
    protect_governors: bool = True  # subjects and antecedents are never one-feature swapped
    name_swap: float = 0.8  # a name in apposition becomes its other-gender partner: only its noun
    # ("alongside Tila the old queen") can tell which of the two it was
    neighbour_loss: float = 0.5  # weight of "also name the token to your left" (0: off)
    neighbour_target: str = "lemma"  # "token" (its identity), "lemma" (without number), "stem"
    # (without number or gender: a name and its partner, the pronouns of a case share one), "pos"
    closer_loss: float = 1.0  # weight of "also name your sentence's closing delimiter" (0: off)
    world_loss: float = 0.25  # weight of "also name your sentence's world" (0: off)
    subject_loss: float = 0.25  # weight of "a verb also names its subject's lemma" (0: off)
    early_neighbour: float = 0.0  # weight of the neighbour read-out asked again of the first
    # layer's output (0: off): after one layer a word knows its left neighbour only by attending
    # to it, so layer 0 must grow a previous-word head
    early_closer: float = 0.0  # the same for the closer read-out (a closer head in layer 0)
    order_loss: float = 0.25  # weight of the denoising loss again at the words of an intact
    # neighbour swap (`transpose`): word order trained harder without moving more words
    naming_loss: float = 0.0  # the same at a name swapped for its partner (`name_swap`)
    apposition_loss: float = 0.25  # the same at every name of an apposition, swapped or left
    # clean, so that it rewards telling the two apart (from the noun), not swapping back blindly
    right_neighbour: float = 0.0  # weight of "also name the token to your right" (its stem:
    # without number or gender, so no agreement or naming evidence rides along; 0: off)
    head_overlap: float = 0.0  # weight of the heads' overlap (disagreement regularisation, Li et
    # al. 2018): the mean over word queries of sum_{i != j} sum_k A_i[q, k] A_j[q, k] / (h (h - 1)),
    # over every layer; 0 for heads that attend to different keys, 1 for two identical one-hot
    # heads. Role-blind: it says that heads differ, never where any of them looks
    head_overlap_steps: int | None = None  # training steps the penalty lasts (None: all of them)
    head_overlap_last: bool = False  # the penalty on the last layer's heads only
    head_overlap_window: int = 0  # keys within this distance of the query are left out of it
    head_entropy: float = 0.0  # weight of the heads' attention entropy: the mean over word
    # queries, heads and layers of -sum_k A[q, k] log A[q, k] (nats). Role-blind like
    # head_overlap: it asks heads to look somewhere in particular, never where
    head_entropy_last: float = 0.01  # weight of the last layer's entropy, on top of head_entropy
    head_entropy_warmup: int = 0  # both entropy weights grow linearly from 0 to full over the
    # first this many steps (0: full from the start), so that heads can find a role before the
    # penalty makes an idle one settle sharply on [CLS]
    head_dropout: float = 0.0  # each step, each head of each packed row is off with this
    # probability and the others scaled by 1 / (1 - p) (DropHead): a role must not rest on a pair
    n_train_sentences: int = 10000  # a fixed pool, freshly corrupted every step
    n_eval_sentences: int = 400
