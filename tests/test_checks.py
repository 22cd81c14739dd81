"""mha_course.checks: right answers pass (public and hidden cases), typical mistakes get the
specific message that names them, and nothing a student returns can crash the comparison.

The "students" here are written in this file, independently of the package, or are the package's
own functions where the exercise has the same signature.
"""

from __future__ import annotations

import numpy as np
import pytest
from judging import first_problem, judge_all

from mha_course import checks
from mha_course import np_attention as npa
from mha_course.analysis import heads as hm
from mha_course.analysis import probing
from mha_course.checks import EXERCISES, TOPICS, CheckFailed

# ----------------------------------------------------------------------------------------------
# Independent "students": right answers


def split_heads(X, n_heads):
    *batch, n, d_model = X.shape
    d = d_model // n_heads
    return np.stack([X[..., i * d:(i + 1) * d] for i in range(n_heads)], axis=-3)


def merge_heads(Z):
    return np.concatenate([Z[..., i, :, :] for i in range(Z.shape[-3])], axis=-1)


def classify_head(scores, syntactic_baseline=None, min_score=0.5, min_margin=0.2):
    ok = {r: v for r, v in scores.items() if v == v}  # drop NaN
    if syntactic_baseline is not None and \
            ok.get("syntactic", 1e9) < syntactic_baseline + min_margin:
        ok.pop("syntactic")
    best = max(ok, key=ok.get, default=None)
    return "none" if best is None or ok[best] < min_score else best


def control_labels(labels, word_types, seed=0):
    """The package's draw written another way: shuffle the types, lay their tokens end to end and
    give each type the class whose token quota holds the type's middle token."""
    rng = np.random.default_rng(seed)
    probed = labels != ""
    classes, quota = np.unique(labels[probed].astype(str), return_counts=True)
    types, counts = np.unique(word_types[probed].astype(str), return_counts=True)
    order = rng.permutation(len(types))
    label_of, start = {}, 0.0
    for t in order:
        middle = start + counts[t] / 2
        k = min(int((np.cumsum(quota) <= middle).sum()), len(classes) - 1)
        label_of[types[t]] = classes[k]
        start += counts[t]
    return [label_of[str(w)] if p else "" for w, p in zip(word_types, probed)]


def probe_accuracy(features, labels, train, test):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    return float(probe.fit(features[train], labels[train]).score(features[test], labels[test]))


def head_importance(model, inputs, targets, at, lengths, *, restore=True, sign=1.0):
    """Removes each head by zeroing its rows of W^O (as the exercise asks; the reference in
    checks zeroes the head's value projection instead). `restore` and `sign` make mistakes."""
    import torch
    from torch.nn import functional as F

    x, y, m, n = (torch.from_numpy(a) for a in (inputs, targets, at, lengths))

    def loss():
        with torch.no_grad():
            logits = model(x, n).logits
        return F.cross_entropy(logits[m], y[m]).item()

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small batches: threads only compete
    try:
        base = loss()
        out = np.zeros((len(model.blocks), model.blocks[0].attn.n_heads))
        for layer, block in enumerate(model.blocks):
            attn = block.attn
            for head in range(out.shape[1]):
                rows = slice(head * attn.d_v, (head + 1) * attn.d_v)
                saved = attn.W_O.data[rows].clone()
                attn.W_O.data[rows] = 0
                out[layer, head] = sign * (loss() - base)
                if restore:
                    attn.W_O.data[rows] = saved
        return out
    finally:
        torch.set_num_threads(threads)


REFERENCE = {
    "softmax": [npa.softmax],
    "sdpa": [npa.scaled_dot_product_attention],
    "split_merge": [split_heads, merge_heads],
    "mha_loop": [npa.multi_head_attention_loop],
    "mha_batched": [npa.multi_head_attention],
    "softmax_backward": [npa.softmax_backward],
    "sdpa_backward": [npa.scaled_dot_product_attention_backward],
    "entropy": [hm.attention_entropy],
    "distance": [hm.mean_attention_distance],
    "dependency_accuracy": [hm.syntactic_score],
    "classify_head": [hm.classify_head],
    "probe": [probing.control_labels, probing.probe_accuracy],
    "ablation": [head_importance],
}


INDEPENDENT = {  # students written here, without the package, that must pass as well
    "split_merge": [split_heads, merge_heads],
    "classify_head": [classify_head],
    "probe": [control_labels, probe_accuracy],
    "ablation": [head_importance],
}


OWN_TOPICS = ("attention", "backward", "head_metrics", "probing", "ablation")  # ex01-ex05


def test_every_exercise_has_a_reference_student():
    """Every exercise of ex01-ex05's topics has a reference here (newer topics test their own)."""
    ids = [ex.id for topic in OWN_TOPICS for ex in TOPICS[topic].EXERCISES]
    assert sorted(REFERENCE) == sorted(ids)
    assert set(REFERENCE) <= set(EXERCISES)


# exercises whose checks train probes or run the toy model: seconds each, so in the slow tier
RUN_MODELS = ("probe", "ablation")


def tiered(exercise_ids):
    """pytest params, those of RUN_MODELS marked slow."""
    return [pytest.param(e, marks=pytest.mark.slow) if e in RUN_MODELS else e
            for e in exercise_ids]


@pytest.mark.parametrize("exercise_id", tiered(sorted(INDEPENDENT)))
def test_independent_answers_pass(exercise_id):
    if exercise_id == "ablation":
        return  # REFERENCE already is the independent student (the package has no such function)
    assert judge_all(exercise_id, INDEPENDENT[exercise_id], hidden=False) == []
    assert judge_all(exercise_id, INDEPENDENT[exercise_id], hidden=True, seed=1) == []


def test_independent_control_labels_draw_what_the_package_draws():
    case = EXERCISES["probe"].cases(hidden=True, seed=3)[0]
    for seed in (0, 7):
        assert control_labels(case["labels"], case["word_types"], seed) == \
            list(probing.control_labels(case["labels"], case["word_types"], seed))


@pytest.mark.parametrize("exercise_id", tiered(sorted(REFERENCE)))
def test_right_answers_pass_public_and_hidden_cases(exercise_id):
    assert judge_all(exercise_id, REFERENCE[exercise_id], hidden=False) == []
    assert judge_all(exercise_id, REFERENCE[exercise_id], hidden=True, seed=1) == []
    assert judge_all(exercise_id, REFERENCE[exercise_id], hidden=True, seed=2024) == []


def test_hidden_cases_are_seeded_and_differ_from_the_public_ones():
    ex = EXERCISES["sdpa"]
    a, b, c = ex.cases(True, seed=3), ex.cases(True, seed=3), ex.cases(True, seed=4)
    assert all(np.array_equal(x["Q"], y["Q"]) for x, y in zip(a, b))
    assert not np.array_equal(a[0]["Q"], c[0]["Q"])
    public = ex.cases(hidden=False)
    assert {case["about"] for case in public}.isdisjoint(case["about"] for case in a)


# ----------------------------------------------------------------------------------------------
# Typical mistakes and their messages


def softmax_no_max(x, axis=-1):
    with np.errstate(all="ignore"):  # the overflow is the mistake
        e = np.exp(x)
        return e / e.sum(axis=axis, keepdims=True)


def softmax_nan_rows(x, axis=-1):
    with np.errstate(all="ignore"):  # -inf - -inf = NaN is the mistake
        e = np.exp(x - x.max(axis=axis, keepdims=True))
        return e / e.sum(axis=axis, keepdims=True)


def softmax_axis0(x, axis=-1):
    return npa.softmax(x, axis=0 if x.ndim > 1 and axis % x.ndim != 0 else -1)


def sdpa_unscaled(Q, K, V, mask=None):
    S = Q @ K.swapaxes(-1, -2)
    A = npa.softmax(S if mask is None else np.where(mask, S, -np.inf))
    return A @ V, A


def sdpa_no_mask(Q, K, V, mask=None):
    return npa.scaled_dot_product_attention(Q, K, V)


def sdpa_swapped(Q, K, V, mask=None):
    return npa.scaled_dot_product_attention(Q, K, V, mask)[::-1]


def sdpa_inverted(Q, K, V, mask=None):
    return npa.scaled_dot_product_attention(Q, K, V, None if mask is None else ~np.asarray(mask))


def split_reshape(X, n_heads):
    *batch, n, d_model = X.shape
    return X.reshape(*batch, n_heads, n, d_model // n_heads)


def merge_reshape(Z):
    *batch, h, n, d = Z.shape
    return Z.reshape(*batch, n, h * d)


def mha_no_W_O(X_q, X_kv, params, mask=None):
    out = npa.multi_head_attention(X_q, X_kv, params, mask)
    return merge_heads(out.heads), out.weights, out.heads


def mha_no_bias(X_q, X_kv, params, mask=None):
    plain = npa.MHAParams(params.W_Q, params.W_K, params.W_V, params.W_O)
    return npa.multi_head_attention(X_q, X_kv, plain, mask)


def mha_no_b_O(X_q, X_kv, params, mask=None):
    out = npa.multi_head_attention(X_q, X_kv, params, mask)
    return out.out - (0 if params.b_O is None else params.b_O), out.weights, out.heads


def mha_heads_first_reshape(X_q, X_kv, params, mask=None):
    out = npa.multi_head_attention(X_q, X_kv, params, mask)
    concat = out.heads.reshape(*out.heads.shape[:-3], out.heads.shape[-2], -1)
    b_O = 0 if params.b_O is None else params.b_O
    return concat @ params.W_O + b_O, out.weights, out.heads


def entropy_bits(attentions, sentences):
    return hm.attention_entropy(attentions, sentences) / np.log(2)


def entropy_all_queries(attentions, sentences):
    H = [-(A * np.log(np.clip(A, 1e-12, None))).sum(-1) for A in attentions]
    return np.concatenate(H, axis=-1).mean(-1)


def entropy_nan(attentions, sentences):
    with np.errstate(all="ignore"):  # 0 * log 0 = NaN is the mistake
        H = [(-(A * np.log(A)).sum(-1))[..., ~np.asarray(s.is_delimiter)]
             for A, s in zip(attentions, sentences)]
    return np.concatenate(H, axis=-1).mean(-1)


def distance_signed(attentions, sentences):
    rows = []
    for A, s in zip(attentions, sentences):
        i = np.arange(len(s.tokens))
        rows.append((A * (i[None, :] - i[:, None])).sum(-1)[..., ~np.asarray(s.is_delimiter)])
    return np.concatenate(rows, axis=-1).mean(-1)


def dependency_with_delimiters(attentions, sentences):
    hits = []
    for A, s in zip(attentions, sentences):
        head = np.asarray(s.head)
        hits.append((A.argmax(-1) == head)[..., head >= 0])
    return np.concatenate(hits, axis=-1).mean(-1)


def classify_ignoring_baseline(scores, syntactic_baseline=None, min_score=0.5, min_margin=0.2):
    return classify_head(scores, None, min_score, min_margin)


def classify_no_min_score(scores, syntactic_baseline=None, min_score=0.5, min_margin=0.2):
    return classify_head(scores, syntactic_baseline, -np.inf, min_margin)


def control_per_token(labels, word_types, seed=0):
    drawn = np.random.default_rng(seed).choice(labels[labels != ""], size=len(labels))
    return np.where(labels == "", "", drawn)


def control_independent_draw(labels, word_types, seed=0):
    """Hewitt & Liang's draw: each type's label drawn on its own, which lets a frequent type pull
    the control's distribution away from the task's."""
    rng = np.random.default_rng(seed)
    probed = labels != ""
    types, index = np.unique(word_types[probed].astype(str), return_inverse=True)
    drawn = rng.choice(labels[probed], size=len(types))
    out = np.full(len(labels), "", dtype=object)
    out[probed] = drawn[index]
    return out


def control_in_argument_order_of_old(labels, word_types, seed=0):
    return probing.control_labels(word_types, labels, seed)


def probe_unscaled(features, labels, train, test):
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(max_iter=1000).fit(features[train], labels[train])
    return float(model.score(features[test], labels[test]))


def probe_on_train(features, labels, train, test):
    return probe_accuracy(features, labels, train, train)


MISTAKES = [
    ("softmax", [softmax_no_max], "exp(1000) overflows"),
    ("softmax", [softmax_nan_rows], "all -inf (every key masked) gave NaN"),
    ("softmax", [softmax_axis0], "did you normalise over axis 0?"),
    ("sdpa", [sdpa_unscaled], "you forgot to divide by sqrt(d_k): your weights are too peaked"),
    ("sdpa", [sdpa_no_mask], "masked keys got weight"),
    ("sdpa", [sdpa_swapped], "you returned (A, Z); return (Z, A)"),
    ("split_merge", [split_reshape, merge_heads], "which mixes positions"),
    ("split_merge", [split_heads, merge_reshape], "merge_heads reshaped"),
    ("mha_loop", [mha_no_W_O], "out equals Concat(Z_1, ..., Z_h): multiply by W_O"),
    ("mha_loop", [mha_no_bias], "you ignored the biases b_Q and b_K"),
    ("mha_batched", [mha_no_b_O], "you forgot the output bias b_O"),
    ("mha_batched", [mha_heads_first_reshape], "mixes positions"),
    ("softmax_backward", [lambda A, dA, axis=-1: A * dA], "only the diagonal of the Jacobian"),
    ("softmax_backward", [lambda A, dA, axis=-1: -npa.softmax_backward(A, dA, axis)],
     "the sign is flipped"),
    ("sdpa_backward",
     [lambda dZ, Q, K, V, mask=None: [g * s for g, s in zip(
         npa.scaled_dot_product_attention_backward(dZ, Q, K, V, mask),
         (np.sqrt(Q.shape[-1]), np.sqrt(Q.shape[-1]), 1.0))]],
     "dQ is too large by sqrt(d_k)"),
    ("entropy", [entropy_bits], "log base 2 (bits)"),
    ("entropy", [entropy_all_queries], "skip the delimiter queries"),
    ("entropy", [entropy_nan], "0 * log 0 gives NaN"),
    ("distance", [distance_signed], "absolute distance |i - j|"),
    ("dependency_accuracy", [dependency_with_delimiters], "must skip delimiter keys"),
    ("classify_head", [classify_ignoring_baseline], "does not beat the baseline"),
    ("classify_head", [classify_no_min_score], "below min_score"),
    ("probe", [control_per_token, probe_accuracy], "same word type got different control labels"),
    ("probe", [control_independent_draw, probe_accuracy], "keep the task's label distribution"),
    ("probe", [control_in_argument_order_of_old, probe_accuracy], "must keep the label ''"),
    ("probe", [control_labels, probe_unscaled], "standardise the features first"),
    ("probe", [control_labels, probe_on_train], "scored the probe on the training tokens"),
    ("ablation", [lambda *a: head_importance(*a, restore=False)], "left the model changed"),
    ("ablation", [lambda *a: head_importance(*a, sign=-1.0)], "the sign is flipped"),
]


@pytest.mark.parametrize("exercise_id, functions, expected",
                         [pytest.param(*m, marks=pytest.mark.slow) if m[0] in RUN_MODELS
                          else pytest.param(*m) for m in MISTAKES],
                         ids=[f"{m[0]}-{m[2][:30]}" for m in MISTAKES])
def test_typical_mistakes_get_specific_feedback(exercise_id, functions, expected):
    assert expected in first_problem(exercise_id, functions)


def test_inverted_mask_is_named():
    messages = judge_all("sdpa", [sdpa_inverted], hidden=True, seed=0)
    assert any("True in the mask means 'may attend'" in m for m in messages)


# ----------------------------------------------------------------------------------------------
# The check functions as students call them


def test_check_prints_public_checks_passed(capsys):
    checks.check_softmax(npa.softmax)
    out = capsys.readouterr().out
    assert "softmax: public checks passed (4 cases). Hidden checks may still fail." in out
    assert "all tests passed" not in out.lower()


def test_check_raises_with_the_reason_and_the_case():
    with pytest.raises(CheckFailed) as info:
        checks.check_scaled_dot_product_attention(sdpa_unscaled)
    message = str(info.value)
    assert "you forgot to divide by sqrt(d_k)" in message and "case: unbatched" in message


def test_check_lets_the_stub_message_through():
    def stub(x, axis=-1):
        raise NotImplementedError("subtract the maximum first")

    with pytest.raises(NotImplementedError, match="subtract the maximum first"):
        checks.check_softmax(stub)


def test_check_reports_exceptions_and_non_functions():
    def broken(dZ, Q, K, V, mask=None):
        raise IndexError("tuple index out of range")

    with pytest.raises(CheckFailed, match="your code raised IndexError: tuple index out of range"):
        checks.check_scaled_dot_product_attention_backward(broken)
    with pytest.raises(CheckFailed, match="softmax must be a function; got ndarray"):
        checks.check_softmax(np.zeros(3))
