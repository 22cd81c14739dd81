"""The toy Transformer: shapes, attention rows, determinism, saving, and the heads it learns."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from importlib import resources

import numpy as np
import pytest
import torch

from mha_course.analysis import heads as H
from mha_course.experiments import toy_training
from mha_course.models import toy_language as lang
from mha_course.models import toy_model
from mha_course.models.toy_model import training as toy_train

TINY = toy_model.ToyConfig(n_layers=2, n_heads=2, d_model=16, d_k=8, d_v=8, d_ff=32,
                           n_train_sentences=200, n_eval_sentences=40, batch_size=8,
                           order_loss=0.0, apposition_loss=0.0, head_entropy_last=0.0)
# TINY: the extra denoising terms and the entropy penalty off, so that each test adds its own


@pytest.fixture(scope="module")
def fresh_corpus():
    """Sentences that no checkpoint saw during training (training uses seeds < 10 000 + 100)."""
    return lang.generate(400, seed=424_242)


def test_forward_shapes():
    torch.manual_seed(0)
    model = toy_model.ToyTransformer(TINY)
    ids, lengths = lang.pad_batch(lang.generate(3, seed=0))
    out = model(torch.from_numpy(ids), torch.from_numpy(lengths))
    batch, n = ids.shape
    assert out.logits.shape == (batch, n, TINY.vocab_size)
    assert out.weights.shape == (TINY.n_layers, batch, TINY.n_heads, n, n)
    assert out.heads.shape == (TINY.n_layers, batch, TINY.n_heads, n, TINY.d_k)
    # padding keys get no weight
    for b, length in enumerate(lengths):
        assert torch.all(out.weights[:, b, :, :, length:] == 0)


def test_value_size_can_differ_from_the_query_key_size(tmp_path):
    config = replace(TINY, d_k=4, d_v=12)
    torch.manual_seed(0)
    model = toy_model.ToyTransformer(config)
    attn = model.blocks[0].attn
    assert attn.W_Q.shape == (2, 16, 4) and attn.W_V.shape == (2, 16, 12)
    assert attn.W_O.shape == (2 * 12, 16)
    ids, lengths = lang.pad_batch(lang.generate(3, seed=0))
    out = model(torch.from_numpy(ids), torch.from_numpy(lengths))
    assert out.heads.shape[-1] == 12  # Z_i is d_v wide
    toy_model.save(model, tmp_path / "m", {})
    assert toy_model.load(tmp_path / "m").blocks[0].attn.W_V.shape == (2, 16, 12)
    # d_v None: values as wide as queries and keys, as every checkpoint before d_v had; such a
    # checkpoint's config.json has no d_v and loads with d_v = d_k, whatever the default
    assert toy_model.ToyTransformer(replace(TINY, d_v=None)).blocks[0].attn.W_V.shape == (2, 16, 8)
    settings = json.loads((tmp_path / "m" / "config.json").read_text())
    toy_model.save(toy_model.ToyTransformer(replace(config, d_v=None)), tmp_path / "old", {})
    del settings["d_v"]
    (tmp_path / "old" / "config.json").write_text(json.dumps(settings | {"d_k": 4}))
    assert toy_model.load(tmp_path / "old").blocks[0].attn.W_V.shape == (2, 16, 4)
    with pytest.raises(ValueError, match="d_v must be a positive integer; got 0"):
        toy_model.ToyTransformer(replace(TINY, d_v=0))


def test_attention_of_a_sentence_is_row_stochastic(shipped):
    sentence = lang.generate(1, seed=5)[0]
    A = shipped.attention(sentence)
    n = len(sentence)
    assert A.shape == (shipped.config.n_layers, shipped.config.n_heads, n, n)
    np.testing.assert_allclose(A.sum(-1), 1.0, atol=1e-5)
    assert (A >= 0).all()
    # a plain token list works too, and an unknown word is named in the error
    np.testing.assert_allclose(shipped.attention(sentence.tokens), A)
    with pytest.raises(KeyError, match="zebra"):
        shipped.attention(["[CLS]", "zebra", "[SEP]"])


@pytest.mark.slow  # trains models (a few steps each)
def test_training_is_deterministic_for_a_seed():
    _, rep_a = toy_model.train(TINY, seed=3, steps=5, progress=False)
    model_a, _ = toy_model.train(TINY, seed=3, steps=5, progress=False)
    model_b, _ = toy_model.train(TINY, seed=3, steps=5, progress=False)
    model_c, _ = toy_model.train(TINY, seed=4, steps=5, progress=False)
    for (name, a), b, c in zip(model_a.state_dict().items(), model_b.state_dict().values(),
                               model_c.state_dict().values()):
        assert torch.equal(a, b), f"{name} differs between two runs with the same seed"
    assert any(not torch.equal(a, c) for a, c in zip(model_a.state_dict().values(),
                                                     model_c.state_dict().values()))
    assert rep_a["steps"] == 5


@pytest.mark.slow  # trains tiny models (a few steps each)
def test_fused_optimizer_asks_adamw_for_its_fused_kernel(monkeypatch):
    asked = []
    real = torch.optim.AdamW

    def spy(*args, **kwargs):
        asked.append(kwargs.get("fused"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.optim, "AdamW", spy)
    fused = replace(TINY, fused_optimizer=True)
    a, _ = toy_model.train(fused, seed=3, steps=5, progress=False)
    b, _ = toy_model.train(fused, seed=3, steps=5, progress=False)
    plain, _ = toy_model.train(replace(TINY, fused_optimizer=False), seed=3, steps=5,
                               progress=False)
    assert asked == [True, True, False]
    pairs = list(zip(a.state_dict().values(), b.state_dict().values(),
                     plain.state_dict().values()))
    assert all(torch.equal(x, y) for x, y, _ in pairs)  # deterministic for a seed
    assert all(torch.allclose(x, z, atol=1e-4) for x, _, z in pairs)  # the same update rule


def test_save_load_round_trip(tmp_path):
    model, report = toy_training.train(TINY, seed=0, steps=3, progress=False, out_dir=tmp_path)
    written = {p.name for p in tmp_path.iterdir()}
    assert written >= {"model.safetensors", "config.json", "heads.json"}
    again = toy_model.load(tmp_path)
    assert again.config == model.config
    sentence = lang.generate(1, seed=1)[0]
    np.testing.assert_array_equal(again.attention(sentence), model.eval().attention(sentence))
    heads = json.loads((tmp_path / "heads.json").read_text())
    assert len(heads["heads"]) == TINY.n_layers * TINY.n_heads
    assert set(heads["best"]) == set(H.ROLES) and set(heads["control"]) == set(H.ROLES)
    assert set(heads["accuracy"]) == set(lang.SUBTASKS)
    assert heads["training_steps"] == 3 and heads["training_seconds"] > 0
    assert "offset" in heads["syntactic_baseline"] and "score" in heads["syntactic_baseline"]


def _block_by_hand(block, x):
    """The block's two sub-layers written out, for both norm placements."""
    a = block.attn(x if block.post_ln else block.ln_attn(x)).out  # (batch, n, d_model)
    if block.post_ln:
        x = block.ln_attn(x + a)
        return block.ln_ffn(x + block.ffn(x))
    x = x + a
    return x + block.ffn(block.ln_ffn(x))


@pytest.mark.parametrize("post_ln", [True, False])
def test_block_places_the_layer_norms_as_configured(post_ln):
    torch.manual_seed(0)
    block = toy_model.Block(replace(TINY, post_ln=post_ln)).eval()
    x = torch.randn(2, 5, TINY.d_model) * 3 + 1  # (batch, n, d_model)
    out = block(x, None)[0]  # the residual stream after the block
    torch.testing.assert_close(out, _block_by_hand(block, x))
    # post-LN ends on a LayerNorm: every token's vector has mean ~0 (gamma = 1, beta = 0 at init)
    means = out.mean(-1).abs().max().item()
    assert (means < 1e-5) if post_ln else (means > 1e-2), means


def test_a_checkpoint_without_post_ln_in_its_config_loads_as_pre_ln(tmp_path):
    """Checkpoints written before the post_ln setting existed were pre-LN."""
    model, _ = toy_training.train(replace(TINY, post_ln=False), seed=0, steps=2,
                                  progress=False, out_dir=tmp_path)
    settings = json.loads((tmp_path / "config.json").read_text())
    del settings["post_ln"]
    (tmp_path / "config.json").write_text(json.dumps(settings))
    again = toy_model.load(tmp_path)
    assert again.config.post_ln is False
    sentence = lang.generate(1, seed=2)[0]
    np.testing.assert_array_equal(again.attention(sentence), model.eval().attention(sentence))


@pytest.mark.slow  # trains models (a few steps each)
def test_the_config_grammar_is_saved_loaded_and_trained_on(tmp_path):
    grammar = lang.Grammar(repeat_prob=0.0, closer_probs=(0.5, 0.25, 0.25))
    config = replace(TINY, grammar=grammar)
    assert not any(r >= 0 for s in toy_model.held_out_sentences(config) for r in s.repeat_of)
    model, _ = toy_training.train(config, seed=0, steps=2, progress=False, out_dir=tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["grammar"]["repeat_prob"] == 0.0
    again = toy_model.load(tmp_path)
    assert again.config.grammar == grammar and again.config == model.config
    default, _ = toy_model.train(TINY, seed=0, steps=1, progress=False)
    other, _ = toy_model.train(config, seed=0, steps=1, progress=False)  # other training sentences
    assert not torch.equal(default.tok_emb.weight, other.tok_emb.weight)


def test_a_checkpoint_without_a_grammar_in_its_config_loads_with_the_default(tmp_path):
    """Checkpoints written before the grammar was part of ToyConfig used today's default."""
    toy_training.train(TINY, seed=0, steps=1, progress=False, out_dir=tmp_path)
    settings = json.loads((tmp_path / "config.json").read_text())
    del settings["grammar"]
    (tmp_path / "config.json").write_text(json.dumps(settings))
    assert toy_model.load(tmp_path).config.grammar == lang.Grammar()
    shipped_settings = json.loads((toy_model.checkpoint_dir() / "config.json").read_text())
    assert toy_model.load().config == toy_model.ToyConfig(**{
        k: v for k, v in shipped_settings.items() if k != "grammar"})


def test_shipped_checkpoint_is_small_and_documented():
    folder = resources.files("mha_course") / "data" / toy_model.DEFAULT_CHECKPOINT
    assert len((folder / "model.safetensors").read_bytes()) <= 2 * 1024 * 1024
    heads = json.loads((folder / "heads.json").read_text())
    assert set(heads["best"]) == set(H.ROLES)
    assert heads["training_seconds"] > 0


@pytest.fixture(scope="module")
def shipped_scores(shipped, fresh_corpus):
    scores = H.head_scores(shipped.attentions(fresh_corpus), fresh_corpus)
    best = {role: b["score"] for role, b in H.best_heads(scores).items()}
    return scores, best


# The roles the toy recipe grows (both rare-word heads among them); identity on its own.
GROWN_ROLES = ("local", "syntactic", "delimiter", "coreference", "rare_word", "rare_target",
               "duplicate")


@pytest.mark.parametrize("role", GROWN_ROLES)
def test_shipped_checkpoint_has_a_head_for_every_grown_role(shipped_scores, role):
    _, best = shipped_scores
    assert best[role] >= 0.7, f"best {role} head scores {best[role]:.2f} on fresh sentences"


def test_shipped_checkpoint_has_no_identity_head(shipped_scores):
    """The residual stream already carries each token, so no head needs to look at itself: the
    largest mass on the query's own position is far from an identity head (measured 0.40),
    while its duplicate-token head finds earlier occurrences of a name every time."""
    scores, best = shipped_scores
    assert best["identity"] < 0.6, best["identity"]
    assert best["duplicate"] >= 0.9
    duplicate_head = np.unravel_index(np.nanargmax(scores["duplicate"]), scores["duplicate"].shape)
    assert scores["identity"][duplicate_head] < 0.3


@pytest.mark.parametrize("role, relation", [("syntactic", "head"), ("rare_word", "rare_context")])
def test_shipped_relation_heads_beat_their_offset_baseline(shipped_scores, fresh_corpus, role,
                                                           relation):
    """verb -> subject and name -> the noun of its apposition: far above 'always look k away'."""
    _, best = shipped_scores
    _, baseline = H.fixed_offset_baseline(fresh_corpus, relation)
    assert best[role] >= baseline + 0.2, (role, best[role], baseline)


@pytest.mark.slow  # 400 corrupted sentences per sub-task
@pytest.mark.parametrize("task", lang.SUBTASKS)
def test_shipped_checkpoint_solves_every_subtask(shipped, fresh_corpus, task):
    accuracy = toy_model.evaluate(shipped, fresh_corpus, seed=1)[task]
    assert accuracy >= 0.95, f"{task}: {accuracy:.3f}"


@pytest.mark.slow  # every head of an untrained model scored on 400 sentences
def test_random_init_control_scores_low(shipped, fresh_corpus):
    control = toy_training.random_init_control(shipped.config, fresh_corpus, seed=0)
    assert all(not v >= 0.3 for v in control.values()), control  # NaN: a role not measurable


@pytest.mark.slow
def test_a_short_fresh_run_shows_the_first_roles(fresh_corpus):
    """600 of the recipe's steps: the heads that a read-out asks for at every verb or word come
    first (verb -> subject, any word -> a name); the control stays low. Measured on the tuning
    seeds 900-903 at 500-600 steps (issue 15, closer weight 0.75-1.0, the object always named):
    syntactic 0.94-0.98, rare_target 0.91-0.99, local 0.61-0.90, rare_word 0.15-0.72; on seed 0
    with the shipped recipe (closer 1.0), identical here and in CI: syntactic 0.94, rare_target
    0.76. So rare_target is only asked to be well above the control (< 0.3), not finished."""
    model, report = toy_training.train(seed=0, steps=600, progress=False)
    sentences = fresh_corpus[:200]
    scores = H.head_scores(model.attentions(sentences), sentences)
    best = {role: b["score"] for role, b in H.best_heads(scores).items()}
    assert best["syntactic"] >= 0.85, best
    assert best["rare_target"] >= 0.6, best
    assert all(not v >= 0.3 for v in report["control"].values()), report["control"]


def _stem(token: str) -> str:
    """Written out from the lexicon's words, independently of `STEM_IDS`: a word without number
    or gender; a name -> the first of its partner pair in NAMES, a pronoun -> "him" in its case."""
    info = lang.LEXICON[token]
    if info.pos == "NAME":
        k = [n for n, _, _ in lang.NAMES].index(token)
        return lang.NAMES[k - k % 2][0]
    if info.pos == "PRON":
        return {"lower": "him", "upper": "HIM", "title": "Him"}[info.case]
    return lang.VOCAB[lang.LEMMA_IDS[lang.TOKEN_TO_ID[token]]]


def test_stems_drop_gender_and_number_only():
    """A name and its partner share a stem, as do every pronoun of one case; every other word
    keeps its lemma; the stem of a stem is itself."""
    for t in lang.VOCAB:
        assert lang.VOCAB[lang.STEM_IDS[lang.TOKEN_TO_ID[t]]] == _stem(t), t
    stems = lang.STEM_IDS
    assert (stems[stems] == stems).all()
    assert _stem("Dala") == _stem("Balo") == "Balo" and _stem("HER") == _stem("THEM") == "HIM"
    assert _stem("foxes") == "fox" and _stem("queen") != _stem("king")


@pytest.mark.parametrize("closer_loss, neighbour_target, extra", [(0.0, "token", 0.0),
                                                                   (0.5, "lemma", 0.25),
                                                                   (0.0, "stem", 0.0)])
def test_training_loss_matches_a_hand_computed_one(closer_loss, neighbour_target, extra):
    """The packed loss against the unpacked forward pass, written out: clean token at every
    word, its left neighbour (its token, or its number-free lemma scored over the lemmas;
    weight neighbour_loss), with closer_loss > 0 the sentence's closing delimiter at every word,
    with world_loss > 0 its world, with subject_loss > 0 at every verb its subject's lemma."""
    config = replace(TINY, closer_loss=closer_loss, neighbour_loss=0.25,
                     neighbour_target=neighbour_target, world_loss=extra, subject_loss=extra)
    torch.manual_seed(0)
    model = toy_model.ToyTransformer(config)
    sentences = lang.generate(6, seed=3)
    arrays = lang.corrupt_batch(sentences, np.random.default_rng(0))
    inputs, targets, words, lengths = (torch.from_numpy(a) for a in arrays)
    heads = np.full(tuple(targets.shape), -1)  # (batch, n): each verb's subject position
    for b, s in enumerate(sentences):
        heads[b, :len(s.tokens)] = s.head
    got = toy_train._loss(model, inputs, targets, words, lengths, governors=heads)

    out = model(inputs, lengths)
    F = torch.nn.functional
    want = F.cross_entropy(out.logits[words], targets[words])
    lemmas = sorted({int(t) for t in lang.LEMMA_IDS})  # a plural form is never a lemma target
    lemma_index = {t: k for k, t in enumerate(lemmas)}
    left = model.neighbour_out(out.final[:, 1:]) @ model.tok_emb.weight.T  # (batch, n-1, vocab)
    left_targets = targets[:, :-1]  # (batch, n-1): the clean token to the left of each position
    if neighbour_target == "lemma":  # e.g. "foxes" -> "fox": a neighbour's number is not asked for
        left = left[..., lemmas]  # (batch, n-1, n_lemmas)
        left_targets = torch.tensor([[lemma_index[int(lang.LEMMA_IDS[t])] for t in row]
                                     for row in left_targets.tolist()])  # (batch, n-1)
    if neighbour_target == "stem":  # nor its gender: "Dala" -> "Balo", "her" -> "him"
        stems = sorted({lang.TOKEN_TO_ID[_stem(t)] for t in lang.VOCAB})
        left = left[..., stems]  # (batch, n-1, n_stems)
        left_targets = torch.tensor([[stems.index(lang.TOKEN_TO_ID[_stem(lang.VOCAB[t])])
                                      for t in row] for row in left_targets.tolist()])
    want = want + 0.25 * F.cross_entropy(left[words[:, 1:]], left_targets[words[:, 1:]])
    if closer_loss:
        closers = torch.tensor([lang.CLOSERS.index(s.sentence_type) for s in sentences])  # (batch,)
        per_word = closers[:, None].expand_as(targets)  # (batch, n)
        closer_logits = model.closer_out(out.final)  # (batch, n, n_closers)
        want = want + closer_loss * F.cross_entropy(closer_logits[words], per_word[words])
    else:
        assert not hasattr(model, "closer_out")
    if extra:
        worlds = torch.tensor([lang.WORLDS.index(s.world) for s in sentences])  # (batch,)
        world_logits = model.world_out(out.final)  # (batch, n, n_worlds)
        want = want + extra * F.cross_entropy(world_logits[words],
                                              worlds[:, None].expand_as(targets)[words])
        verbs = [(b, i) for b, s in enumerate(sentences) for i, h in enumerate(s.head) if h >= 0]
        h = torch.stack([model.subject_out(out.final[b, i]) for b, i in verbs])  # (n_verbs, d)
        subject_targets = torch.tensor([lemma_index[int(lang.LEMMA_IDS[lang.TOKEN_TO_ID[
            sentences[b].tokens[sentences[b].head[i]]]])] for b, i in verbs])  # (n_verbs,)
        want = want + extra * F.cross_entropy(h @ model.tok_emb.weight[lemmas].T, subject_targets)
    else:
        assert not hasattr(model, "world_out") and not hasattr(model, "subject_out")
    torch.testing.assert_close(got, want)
    if extra:  # the subject read-out cannot be trained without each verb's subject
        with pytest.raises(ValueError, match="needs governors"):
            toy_train._loss(model, inputs, targets, words, lengths)


def test_the_right_neighbour_readout_adds_the_stem_to_the_right():
    """`right_neighbour` adds its weight times the cross-entropy of the stem (`_stem`) of the
    clean token to the right of every word, read by `right_neighbour_out` from the last layer,
    written out on the unpacked forward pass."""
    base = replace(TINY, neighbour_loss=0.25, subject_loss=0.0)
    torch.manual_seed(0)
    model = toy_model.ToyTransformer(replace(base, right_neighbour=0.5))
    sentences = lang.generate(6, seed=3)
    inputs, targets, words, lengths = (torch.from_numpy(a) for a in
                                       lang.corrupt_batch(sentences, np.random.default_rng(0)))
    got = toy_train._loss(model, inputs, targets, words, lengths)
    model.config = base  # the same weights without the read-out
    without = toy_train._loss(model, inputs, targets, words, lengths)
    out = model(inputs, lengths)
    stems = sorted({lang.TOKEN_TO_ID[_stem(t)] for t in lang.VOCAB})
    right = model.right_neighbour_out(out.final[:, :-1]) @ model.tok_emb.weight[stems].T
    right_targets = torch.tensor([[stems.index(lang.TOKEN_TO_ID[_stem(lang.VOCAB[t])])
                                   for t in row] for row in targets[:, 1:].tolist()])
    at = words[:, :-1]  # (batch, n-1): every word has a token to its right ([SEP] at the end)
    want = without + 0.5 * torch.nn.functional.cross_entropy(right[at], right_targets[at])
    torch.testing.assert_close(got, want)
    assert words[torch.arange(len(lengths)), lengths - 1].sum() == 0  # [SEP] is never a word
    with pytest.raises(ValueError, match="side must be -1 .* got 0"):
        toy_train._neighbour_loss(model, model.neighbour_out, out.final,
                                  toy_train.pack(inputs, targets, words, lengths, 32), side=0)


def test_the_order_loss_adds_the_denoising_loss_at_swapped_neighbours():
    """`order_loss` adds its weight times the cross-entropy of the clean token at the words of a
    neighbour swap, here made by hand (one pair per sentence, so its positions are known), on
    the unpacked forward pass; with no swap in the batch it adds nothing."""
    base = replace(TINY, neighbour_loss=0.25, subject_loss=0.0)
    sentences = lang.generate(6, seed=3)
    _, targets, words, lengths = (torch.from_numpy(a) for a in
                                  lang.corrupt_batch(sentences, np.random.default_rng(0)))
    inputs, swapped = targets.clone(), torch.zeros_like(words)  # (batch, n) both
    for b, s in enumerate(sentences):  # the first two neighbouring words of different tokens
        i = next(i for i in range(1, len(s.tokens) - 2) if not s.is_delimiter[i]
                 and not s.is_delimiter[i + 1] and s.tokens[i] != s.tokens[i + 1])
        inputs[b, i], inputs[b, i + 1] = targets[b, i + 1], targets[b, i]
        swapped[b, i] = swapped[b, i + 1] = True
    model = _check_extra_loss(replace(base, order_loss=0.7), base, 0.7, swapped,
                              inputs, targets, words, lengths)
    model.config = replace(base, order_loss=0.7)  # clean inputs: no pair traded places
    with_order = toy_train._loss(model, targets, targets, words, lengths)
    model.config = base
    torch.testing.assert_close(with_order, toy_train._loss(model, targets, targets, words, lengths))


def test_the_naming_loss_adds_the_denoising_loss_at_names_swapped_for_their_partner():
    """`naming_loss` adds its weight times the cross-entropy of the clean token at each name
    that was swapped for its partner (by hand here: every name in apposition), on the unpacked
    forward pass; a name replaced by another name that is not its partner does not count."""
    base = replace(TINY, neighbour_loss=0.25, subject_loss=0.0)
    sentences = lang.generate(12, seed=5)
    _, targets, words, lengths = (torch.from_numpy(a) for a in
                                  lang.corrupt_batch(sentences, np.random.default_rng(0)))
    inputs, named = targets.clone(), torch.zeros_like(words)  # (batch, n) both
    others = []  # names replaced by a name that is not their partner
    for b, s in enumerate(sentences):
        for i, t in enumerate(s.tokens):
            if lang.LEXICON[t].pos != "NAME":
                continue
            if s.rare_context[i] >= 0:
                inputs[b, i] = int(lang.NAME_PARTNER_IDS[lang.TOKEN_TO_ID[t]])
                named[b, i] = True
            elif not others:
                partner = lang.VOCAB[lang.NAME_PARTNER_IDS[lang.TOKEN_TO_ID[t]]]
                inputs[b, i] = lang.TOKEN_TO_ID[next(n for n, _, _ in lang.NAMES
                                                     if n not in (t, partner))]
                others.append((b, i))
    assert named.sum() >= 2 and others and not any(named[b, i] for b, i in others)
    _check_extra_loss(replace(base, naming_loss=0.6), base, 0.6, named,
                      inputs, targets, words, lengths)


def test_the_apposition_loss_adds_the_denoising_loss_at_every_apposition_name():
    """`apposition_loss` adds its weight times the cross-entropy of the clean token at every
    name of an apposition (`Sentence.rare_context`), swapped for its partner or left clean, and
    nowhere else (other names, swapped or not, do not count), on the unpacked forward pass."""
    base = replace(TINY, neighbour_loss=0.25, subject_loss=0.0)
    sentences = lang.generate(12, seed=5)
    _, targets, words, lengths = (torch.from_numpy(a) for a in
                                  lang.corrupt_batch(sentences, np.random.default_rng(0)))
    inputs, named = targets.clone(), torch.zeros_like(words)  # (batch, n) both
    swapped = kept = other = 0
    for b, s in enumerate(sentences):
        for i, t in enumerate(s.tokens):
            if lang.LEXICON[t].pos != "NAME":
                continue
            partner = int(lang.NAME_PARTNER_IDS[lang.TOKEN_TO_ID[t]])
            if s.rare_context[i] >= 0:
                named[b, i] = True
                if swapped <= kept:  # every other apposition name swapped, the rest clean
                    inputs[b, i], swapped = partner, swapped + 1
                else:
                    kept += 1
            else:  # a name outside an apposition, swapped for its partner: not counted
                inputs[b, i], other = partner, other + 1
    assert swapped >= 2 and kept >= 2 and other >= 2
    _check_extra_loss(replace(base, apposition_loss=0.6), base, 0.6, named,
                      inputs, targets, words, lengths)


def _check_extra_loss(config, base, weight, at, inputs, targets, words, lengths):
    """The loss under `config` = the loss under `base` (same weights) + weight x the clean
    token's cross-entropy at the positions `at` (batch, n), on the unpacked forward pass."""
    torch.manual_seed(0)
    model = toy_model.ToyTransformer(config)
    got = toy_train._loss(model, inputs, targets, words, lengths)
    model.config = base
    without = toy_train._loss(model, inputs, targets, words, lengths)
    logits = model(inputs, lengths).logits  # (batch, n, vocab)
    want = without + weight * torch.nn.functional.cross_entropy(logits[at], targets[at])
    torch.testing.assert_close(got, want)
    return model


def test_an_unknown_neighbour_target_is_refused_by_name():
    config = replace(TINY, neighbour_loss=0.25, neighbour_target="stems")
    torch.manual_seed(0)
    model = toy_model.ToyTransformer(config)
    sentences = lang.generate(2, seed=3)
    inputs, targets, words, lengths = (torch.from_numpy(a) for a in
                                       lang.corrupt_batch(sentences, np.random.default_rng(0)))
    with pytest.raises(ValueError, match=r"neighbour_target must be .*got 'stems'"):
        toy_train._loss(model, inputs, targets, words, lengths,
                        governors=np.full(tuple(targets.shape), -1))


def test_hidden_is_forwards_final_stream():
    """Training reads out `hidden`: the same numbers as `forward(...).final`, padding masked."""
    torch.manual_seed(0)
    model = toy_model.ToyTransformer(TINY).eval()
    sentences = lang.generate(5, seed=4)
    inputs, _, _, lengths = (torch.from_numpy(a) for a in
                             lang.corrupt_batch(sentences, np.random.default_rng(1)))
    torch.testing.assert_close(model.hidden(inputs, lengths), model(inputs, lengths).final)
    gates = torch.tensor([[1.0, 0.0], [0.5, 2.0]])  # (n_layers, n_heads): one head off
    torch.testing.assert_close(model.hidden(inputs, lengths, head_gates=gates),
                               model(inputs, lengths, head_gates=gates).final)


def _model_and_batch(config):
    """A model of `config` (torch seed 0), a corrupted batch of six sentences as tensors
    (inputs, targets, loss_mask, lengths) and their subjects' positions."""
    torch.manual_seed(0)
    model = toy_model.ToyTransformer(config)
    sentences = lang.generate(6, seed=3)
    arrays = lang.corrupt_batch(sentences, np.random.default_rng(0))
    tensors = [torch.from_numpy(a) for a in arrays]
    return model, tensors, toy_train.governor_positions(sentences, arrays[0].shape[1])


def test_head_dropout_gates_heads_in_training_only():
    """DropHead: in training mode each packed row loses each head with probability
    head_dropout (the others scaled by 1 / (1 - p)), reproducibly for a torch seed; in eval mode
    the loss is the one without it."""
    config = replace(TINY, head_dropout=0.5)
    model, tensors, heads = _model_and_batch(config)

    def loss(dropout, training, seed=1):
        model.config = replace(config, head_dropout=dropout)
        model.train(training)
        torch.manual_seed(seed)
        return toy_train._loss(model, *tensors, governors=heads)

    torch.testing.assert_close(loss(0.5, False), loss(0.0, False))
    torch.testing.assert_close(loss(0.5, True), loss(0.5, True))
    assert not torch.isclose(loss(0.5, True), loss(0.0, True))
    torch.manual_seed(0)
    gates = toy_train._dropped_heads(replace(TINY, head_dropout=0.25), rows=4000)
    assert gates.shape == (2, 4000, 2)
    assert gates.unique().tolist() == [0.0, pytest.approx(1 / 0.75)]
    assert abs(float((gates == 0).float().mean()) - 0.25) < 0.02  # 16 000 draws: 6 sigma
    assert toy_train._dropped_heads(TINY, rows=3) is None
    for bad in (1.0, -0.1):
        with pytest.raises(ValueError, match="head_dropout must be in"):
            toy_train._dropped_heads(replace(TINY, head_dropout=bad), rows=3)


def test_pack_keeps_every_sentence_whole_and_to_itself():
    """`pack` puts each sentence whole into one row, positions restarting at 0, its tokens
    attending only to its own tokens; no row overflows; the loss positions are the unpacked
    ones."""
    sentences = lang.generate(64, seed=5)
    inputs, targets, words, lengths = lang.corrupt_batch(sentences, np.random.default_rng(2))
    p = toy_train.pack(inputs, targets, words, lengths, capacity=32)
    rows, capacity = p.ids.shape
    assert capacity == 32 and rows < len(sentences)
    assert p.mask.shape == (rows, 32, 32)
    assert int(p.loss_mask.sum()) == int(words.sum())
    assert int((p.positions == 0).logical_and(p.targets == lang.TOKEN_TO_ID[lang.CLS]).sum()) \
        == len(sentences)
    for b, n in enumerate(lengths.tolist()):  # find each sentence by its clean tokens
        want = targets[b, :n].tolist()
        hits = [(r, j) for r in range(rows) for j in range(32 - n + 1)
                if p.positions[r, j] == 0 and p.targets[r, j:j + n].tolist() == want]
        assert hits, f"sentence {b} is not whole in any row"
        r, j = hits[0]
        assert p.ids[r, j:j + n].tolist() == inputs[b, :n].tolist()
        assert p.positions[r, j:j + n].tolist() == list(range(n))
        outside = torch.ones(32, dtype=torch.bool)
        outside[j:j + n] = False
        assert p.mask[r, j:j + n, j:j + n].all() and not p.mask[r, j:j + n][:, outside].any()
    with pytest.raises(ValueError, match="does not fit rows of 8"):
        toy_train.pack(inputs, targets, words, lengths, capacity=8)


def test_early_readouts_ask_the_first_layer_and_add_to_the_loss():
    """`early_neighbour` and `early_closer` > 0 read the neighbour and the closer from the first
    block's output (`streams()[0]`): the loss grows by their weights times those
    cross-entropies, whose gradient reaches the first layer's attention and not the second's;
    `streams()[-1]` is `forward().final`."""
    config = replace(TINY, early_neighbour=0.5, early_closer=0.5)
    model, tensors, heads = _model_and_batch(config)
    model.eval()
    streams = model.streams(tensors[0], tensors[3])
    assert len(streams) == config.n_layers
    torch.testing.assert_close(streams[-1], model(tensors[0], tensors[3]).final)

    def loss(neighbour, closer):
        model.config = replace(config, early_neighbour=neighbour, early_closer=closer)
        return toy_train._loss(model, *tensors, governors=heads)

    without = loss(0.0, 0.0).item()
    assert loss(0.5, 0.0).item() > without and loss(0.0, 0.5).item() > without
    for weights, used in (((1.0, 0.0), "early_neighbour_out"), ((0.0, 1.0), "early_closer_out")):
        model.zero_grad()
        (loss(*weights) - loss(0.0, 0.0)).backward()  # one early read-out's part alone
        assert getattr(model, used).weight.grad.abs().sum() > 0
        assert model.blocks[0].attn.W_Q.grad.abs().sum() > 0
        second = model.blocks[1].attn.W_Q.grad
        assert second is None or second.abs().sum() == 0


def test_head_overlap_is_the_mean_pairwise_shared_mass_over_word_queries():
    """`head_overlap` against a loop over head pairs on random weights, and at its ends: 1 for
    two identical one-hot heads, 0 for heads on different keys, 1/n for uniform heads."""
    g = torch.Generator().manual_seed(0)
    weights = torch.softmax(torch.randn(3, 4, 5, 5, generator=g), dim=-1)  # (rows, h, n, n)
    queries = torch.rand(3, 5, generator=g) > 0.4  # (rows, n)
    pairs = [(i, j) for i in range(4) for j in range(4) if i != j]
    loop = torch.stack([sum((weights[r, i, q] * weights[r, j, q]).sum() for i, j in pairs) / 12
                        for r in range(3) for q in range(5) if queries[r, q]]).mean()
    torch.testing.assert_close(toy_train.head_overlap(weights, queries), loop)
    one_hot = torch.zeros(1, 2, 3, 3)
    one_hot[..., 0] = 1
    everywhere = torch.ones(1, 3, dtype=torch.bool)
    assert toy_train.head_overlap(one_hot, everywhere).item() == pytest.approx(1.0)
    one_hot[0, 1, :, 0], one_hot[0, 1, :, 2] = 0, 1
    assert toy_train.head_overlap(one_hot, everywhere).item() == pytest.approx(0.0)
    neighbours = torch.zeros(1, 2, 4, 4)  # both heads on the key before each query ...
    neighbours[0, :, 1:, :-1] = torch.eye(3)
    neighbours[0, :, 0, 3] = 1  # ... and query 0 on key 3, three away
    assert toy_train.head_overlap(neighbours, torch.ones(1, 4, dtype=torch.bool)).item() == 1.0
    assert toy_train.head_overlap(neighbours, torch.ones(1, 4, dtype=torch.bool),
                                  window=1).item() == pytest.approx(0.25)  # query 0 only
    uniform = torch.full((1, 4, 5, 5), 0.2)
    assert toy_train.head_overlap(uniform, torch.ones(1, 5, dtype=torch.bool)).item() == \
        pytest.approx(0.2)


def test_head_overlap_adds_to_the_loss_and_reaches_every_layer():
    """`ToyConfig.head_overlap` > 0 adds its weight times the layers' mean overlap to the loss,
    with a gradient into every layer's queries; at 0 the loss is the one without it."""
    config = replace(TINY, head_overlap=2.0)
    model, tensors, heads = _model_and_batch(config)
    model.eval()

    def loss(weight):
        model.config = replace(config, head_overlap=weight)
        return toy_train._loss(model, *tensors, governors=heads)

    p = toy_train.pack(*(t.numpy() for t in tensors), capacity=config.max_len)
    _, weights = model.streams_and_weights(p.ids, positions=p.positions, mask=p.mask)
    overlap = sum(toy_train.head_overlap(w, p.loss_mask) for w in weights) / len(weights)
    torch.testing.assert_close(loss(2.0) - loss(0.0), 2.0 * overlap)
    model.zero_grad()
    (loss(1.0) - loss(0.0)).backward()
    for block in model.blocks:
        assert block.attn.W_Q.grad.abs().sum() > 0
    config = replace(config, head_overlap_last=True)  # the last layer's heads only
    torch.testing.assert_close(loss(2.0) - loss(0.0),
                               2.0 * toy_train.head_overlap(weights[-1], p.loss_mask))


def test_head_entropy_is_the_mean_entropy_of_word_queries_rows():
    """`head_entropy` against a loop over rows, queries and heads on random weights, and at its
    ends: 0 for one-hot heads, log(m) for a head spread evenly over m keys; masked-out keys
    (A = 0) add nothing."""
    g = torch.Generator().manual_seed(1)
    weights = torch.softmax(torch.randn(3, 4, 5, 5, generator=g), dim=-1)  # (rows, h, n, n)
    queries = torch.rand(3, 5, generator=g) > 0.4  # (rows, n)
    loop = torch.stack([-(weights[r, i, q] * weights[r, i, q].log()).sum()
                        for r in range(3) for q in range(5) if queries[r, q]
                        for i in range(4)]).mean()
    torch.testing.assert_close(toy_train.head_entropy(weights, queries), loop)
    everywhere = torch.ones(1, 3, dtype=torch.bool)
    one_hot = torch.zeros(1, 2, 3, 3)
    one_hot[..., 1] = 1
    assert toy_train.head_entropy(one_hot, everywhere).item() == 0.0
    spread = torch.zeros(1, 2, 3, 3)
    spread[..., :2] = 0.5  # two keys of three, the third masked out
    assert toy_train.head_entropy(spread, everywhere).item() == pytest.approx(math.log(2))


def test_head_entropy_adds_to_the_loss_and_refuses_a_negative_or_nan_weight():
    """`ToyConfig.head_entropy` adds its weight times the layers' mean entropy, and
    `head_entropy_last` its weight times the last layer's, with a gradient into every layer's
    queries; a negative or NaN weight is refused by name."""
    config = replace(TINY, head_entropy=0.5)
    model, tensors, heads = _model_and_batch(config)
    model.eval()

    def loss(weight, last=0.0):
        model.config = replace(config, head_entropy=weight, head_entropy_last=last)
        return toy_train._loss(model, *tensors, governors=heads)

    p = toy_train.pack(*(t.numpy() for t in tensors), capacity=config.max_len)
    _, weights = model.streams_and_weights(p.ids, positions=p.positions, mask=p.mask)
    entropy = [toy_train.head_entropy(w, p.loss_mask) for w in weights]
    torch.testing.assert_close(loss(0.5) - loss(0.0), 0.5 * sum(entropy) / len(entropy))
    torch.testing.assert_close(loss(0.0, last=0.5) - loss(0.0), 0.5 * entropy[-1])
    torch.testing.assert_close(loss(0.5, last=0.25) - loss(0.0),
                               0.5 * sum(entropy) / len(entropy) + 0.25 * entropy[-1])
    model.zero_grad()
    (loss(1.0) - loss(0.0)).backward()
    for block in model.blocks:
        assert block.attn.W_Q.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="head_entropy_last must be numbers >= 0.*-0.1"):
        loss(-0.1)
    with pytest.raises(ValueError, match="must be numbers >= 0.*-0.2"):
        loss(0.0, last=-0.2)
    with pytest.raises(ValueError, match="must be numbers >= 0.*nan"):
        loss(float("nan"))  # not a loss that turns NaN without a word


def test_head_entropy_warmup_ramps_the_weights_linearly_and_refuses_a_bad_count():
    """With `head_entropy_warmup` = 10 the entropy terms enter at (step + 1) / 10 of their
    weight during steps 0-9 and in full from step 9 on; outside training (`step` None) in full.
    A negative, float or bool count is refused by name."""
    config = replace(TINY, head_entropy=0.5, head_entropy_last=0.25, head_entropy_warmup=10)
    model, tensors, heads = _model_and_batch(config)
    model.eval()
    p = toy_train.pack(*(t.numpy() for t in tensors), capacity=config.max_len, governors=heads)

    def loss(step, cfg=config):
        model.config = cfg
        return toy_train.packed_loss(model, p, step=step)

    off = loss(None, replace(config, head_entropy=0.0, head_entropy_last=0.0))
    full = loss(None) - off
    assert full > 0
    for step, share in ((0, 0.1), (4, 0.5), (9, 1.0), (500, 1.0)):
        torch.testing.assert_close(loss(step) - off, share * full)
    for bad in (-1, 2.5, True):
        with pytest.raises(ValueError, match=f"head_entropy_warmup must be an int >= 0.*{bad!r}"):
            loss(0, replace(config, head_entropy_warmup=bad))


def test_head_overlap_steps_ends_the_penalty_after_that_many_steps():
    """With `head_overlap_steps` = 10 the penalty is in the loss at training steps 0-9 and gone
    from step 10 on (the loss is then the one at weight 0); outside training (`step` None) it is
    in."""
    config = replace(TINY, head_overlap=2.0, head_overlap_steps=10)
    model, tensors, heads = _model_and_batch(config)
    model.eval()

    def loss(**kw):
        return toy_train._loss(model, *tensors, governors=heads, **kw).item()

    with_penalty = loss()
    assert loss(step=0) == loss(step=9) == with_penalty
    model.config = replace(config, head_overlap=0.0)
    without = loss()
    assert with_penalty > without
    model.config = config
    assert loss(step=10) == loss(step=500) == without


@pytest.mark.parametrize("change", [{"head_overlap": -1.0}, {"head_overlap_window": -1},
                                    {"head_overlap_window": 1.5}, {"head_overlap_steps": -5}])
def test_bad_head_overlap_settings_are_refused_by_name(change):
    """A negative overlap weight would reward heads for attending together: refused, naming the
    setting and its value, as are a negative or fractional window and negative steps."""
    config = replace(TINY, **change)
    model, tensors, heads = _model_and_batch(config)
    name, value = next(iter(change.items()))
    with pytest.raises(ValueError, match=f"{name}={value!r}"):
        toy_train._loss(model, *tensors, governors=heads)
