"""Text -> word pieces -> words, with the `tokenizers` library and the model folder's own tokenizer
(tokenizer.json, or vocab.txt built into the tokenizer transformers would build).

BERT's pre-tokenizer splits at whitespace *and* at every punctuation mark, so "don't" becomes the
pieces don ' t and "state-of-the-art" seven pieces. For reading attention we want the words a
person sees: pieces are grouped into words here, and `analysis.alignment.word_attention` sums and
averages attention over those groups. A word is a run of pre-tokens that touch (no space between)
and are glued by a word-internal mark: an apostrophe or hyphen between letters or digits
("don't", "state-of-the-art", "rock'n'roll"), or . , : between digits ("3.5", "1,000", "10:30").
Other punctuation is a word of its own ("dog" "."), and so are [CLS] and [SEP].
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
from tokenizers import Tokenizer, normalizers, pre_tokenizers, processors
from tokenizers.models import WordPiece

from mha_course.models.bert.folder import BertFolder, inspect_folder

__all__ = ["Encoding", "load_tokenizer", "encode", "group_words", "check_text"]

GLUE_ANYWHERE = frozenset("'\u2019-\u2010\u2011")  # ' ’ - ‐ ‑ inside words: "don't", "x-ray"
GLUE_IN_NUMBERS = frozenset(".,:")  # only between digits: "3.5", "1,000", "10:30"


@dataclass
class Encoding:
    """One text as a BERT model sees it.

    input_ids, token_type_ids (n,) int64; tokens: n word pieces with [CLS] and [SEP];
    offsets (n, 2): character span of each piece in `text` ((0, 0) for [CLS] and [SEP]);
    word_index (n,): the word each piece belongs to; words: n_words strings as written in `text`
    (plus "[CLS]", "[SEP]"); word_spans (n_words, 2): their character spans.
    """
    text: str
    input_ids: np.ndarray
    token_type_ids: np.ndarray
    tokens: list[str]
    offsets: np.ndarray
    word_index: np.ndarray
    words: list[str]
    word_spans: np.ndarray


# tokenizer_config.json's key -> BertNormalizer's argument, and transformers' default
NORMALIZER_KEYS = {"do_lower_case": ("lowercase", True), "strip_accents": ("strip_accents", None),
                   "tokenize_chinese_chars": ("handle_chinese_chars", True)}


def _token(config: dict, key: str, default: str) -> str:
    """A special token's text from tokenizer_config.json (a str, or a saved AddedToken dict)."""
    value = config.get(key, default)
    return value.get("content", default) if isinstance(value, dict) else str(value)


def _from_vocab(folder: BertFolder) -> Tokenizer:
    """The WordPiece tokenizer transformers' BertTokenizer builds from vocab.txt: BERT's normaliser
    (cased or uncased per do_lower_case, uncased when unsaid, as in transformers), pre-tokenizer,
    and [CLS] text [SEP]."""
    config = folder.tokenizer_config
    unk, cls, sep = (_token(config, k, d) for k, d in (
        ("unk_token", "[UNK]"), ("cls_token", "[CLS]"), ("sep_token", "[SEP]")))
    tok = Tokenizer(WordPiece.from_file(str(folder.tokenizer), unk_token=unk))
    missing = [t for t in (unk, cls, sep) if tok.token_to_id(t) is None]
    if missing:
        raise ValueError(f"{folder.tokenizer} lacks the special tokens {missing} that BERT needs")
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, **{arg: config.get(key, default)
                            for key, (arg, default) in NORMALIZER_KEYS.items()})
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{cls}:0 $A:0 {sep}:0", pair=f"{cls}:0 $A:0 {sep}:0 $B:1 {sep}:1",
        special_tokens=[(cls, tok.token_to_id(cls)), (sep, tok.token_to_id(sep))])
    specials = [_token(config, k, d) for k, d in (
        ("pad_token", "[PAD]"), ("unk_token", "[UNK]"), ("cls_token", "[CLS]"),
        ("sep_token", "[SEP]"), ("mask_token", "[MASK]"))]
    tok.add_special_tokens([t for t in specials if tok.token_to_id(t) is not None])
    return tok


def _apply_tokenizer_config(tok: Tokenizer, config: dict) -> None:
    """tokenizer_config.json's do_lower_case, strip_accents and tokenize_chinese_chars, where it
    states them, override tokenizer.json's BERT normaliser (transformers does the same)."""
    if tok.normalizer is None:
        return
    state = json.loads(tok.normalizer.__getstate__())
    if state.get("type") != "BertNormalizer":
        return
    wanted = {arg: config[key] for key, (arg, _) in NORMALIZER_KEYS.items() if key in config}
    if any(state.get(arg) != value for arg, value in wanted.items()):
        args = {arg: state.get(arg, default) for arg, default in (
            ("clean_text", True), ("handle_chinese_chars", True), ("strip_accents", None),
            ("lowercase", True))}
        tok.normalizer = normalizers.BertNormalizer(**{**args, **wanted})


def load_tokenizer(path) -> Tokenizer:
    """The folder's tokenizer (tokenizer.json, else vocab.txt), cased or uncased as its
    tokenizer_config.json says, with any fixed padding *and* truncation turned off: a longer
    text would otherwise be cut silently (MiniLM's tokenizer.json cuts at 128), a shorter one
    padded with [PAD]. `path`: a model folder or a checked `BertFolder`."""
    folder = path if isinstance(path, BertFolder) else inspect_folder(path)
    if folder.tokenizer.name == "tokenizer.json":
        tok = Tokenizer.from_file(str(folder.tokenizer))
        _apply_tokenizer_config(tok, folder.tokenizer_config)
    else:
        tok = _from_vocab(folder)
    tok.no_padding()
    tok.no_truncation()
    return tok


def check_text(text, where: str = "text") -> str:
    """`text` itself if it is a non-blank str; otherwise a TypeError/ValueError saying so."""
    if not isinstance(text, str):
        raise TypeError(f"{where} must be a str (one sentence or passage); "
                        f"got {type(text).__name__}: {text!r:.60}")
    if not text.strip():
        raise ValueError(f"{where} must contain at least one word; got {text!r}")
    return text


def _check_length(enc, text: str, max_positions: int, where: str) -> None:
    n = len(enc.ids)
    if n <= 2:  # only [CLS] [SEP]: e.g. control characters, which BERT's normaliser removes
        raise ValueError(f"{where} has no word pieces once normalised; got {text!r:.60}")
    if n > max_positions:
        raise ValueError(
            f"{where} is {n} word pieces long ([CLS] and [SEP] included), but the model has "
            f"position embeddings for at most {max_positions}: split it into shorter passages "
            f"(it starts {text[:40]!r})")


def group_words(text: str, word_ids: list, offsets: list):
    """Pieces -> words (see the module docstring). word_ids: the pre-token of each piece (None for
    [CLS]/[SEP]); offsets: (start, end) of each piece.
    Returns word_index (n,) int, words (list of n_words str), word_spans (n_words, 2) int."""
    pre = {}  # pre-token id -> [start, end], in order
    for wid, (s, e) in zip(word_ids, offsets):
        if wid is not None:
            span = pre.setdefault(wid, [s, e])
            span[0], span[1] = min(span[0], s), max(span[1], e)
    spans = list(pre.values())
    glue = [_is_glue(text, spans, k) for k in range(len(spans))]
    # pre-token k opens a new word unless it is glue or follows glue
    starts_word = [not (glue[k] or (k > 0 and glue[k - 1])) for k in range(len(spans))]
    pre_to_word = np.cumsum(starts_word)  # (n_pre,): words 1.. (0 is [CLS])
    inner_spans = []  # [start, end] of each word between [CLS] and [SEP]
    for (s, e), new_word in zip(spans, starts_word):
        if new_word:
            inner_spans.append([s, e])
        else:
            inner_spans[-1][1] = e
    words = ["[CLS]"] + [text[s:e] for s, e in inner_spans] + ["[SEP]"]
    word_spans = [(0, 0)] + [tuple(span) for span in inner_spans] + [(0, 0)]
    pre_ids = list(pre)
    index = {wid: int(pre_to_word[k]) for k, wid in enumerate(pre_ids)}
    sep_word = len(words) - 1
    # the first None is [CLS] (word 0), the last is [SEP]
    word_index = [index[wid] if wid is not None else (0 if i == 0 else sep_word)
                  for i, wid in enumerate(word_ids)]
    return np.asarray(word_index), words, np.asarray(word_spans, dtype=np.int64).reshape(-1, 2)


def _is_glue(text: str, spans: list, k: int) -> bool:
    """Pre-token k is one glue mark that touches an alphanumeric pre-token on each side."""
    if k == 0 or k == len(spans) - 1:
        return False
    (_, pe), (s, e), (ns, _) = spans[k - 1], spans[k], spans[k + 1]
    mark = text[s:e]
    if pe != s or e != ns or len(mark) != 1:
        return False
    left, right = text[pe - 1], text[ns]
    if mark in GLUE_ANYWHERE:
        return left.isalnum() and right.isalnum()
    return mark in GLUE_IN_NUMBERS and left.isdigit() and right.isdigit()


def encode(tokenizer: Tokenizer, text, max_positions: int, where: str = "text") -> Encoding:
    """Encode one text (checked: a non-blank str of at most `max_positions` pieces)."""
    text = check_text(text, where)
    enc = tokenizer.encode(text)
    _check_length(enc, text, max_positions, where)
    word_index, words, word_spans = group_words(text, enc.word_ids, enc.offsets)
    return Encoding(
        text=text,
        input_ids=np.asarray(enc.ids, dtype=np.int64),
        token_type_ids=np.asarray(enc.type_ids, dtype=np.int64),
        tokens=list(enc.tokens),
        offsets=np.asarray(enc.offsets, dtype=np.int64).reshape(-1, 2),  # (n, 2)
        word_index=word_index, words=words, word_spans=word_spans,
    )
