"""Checks for exercises 8-11 (ex04): attention entropy, mean attention distance, the syntactic
score (verb -> subject, Clark et al.'s dependency accuracy) and the classification of a head."""

from __future__ import annotations

import numpy as np

from mha_course.analysis import heads as head_metrics
from mha_course.checks._framework import (
    Exercise,
    close,
    describe,
    first_match,
    max_diff,
    run_public,
    shape_problem,
)
from mha_course.models import toy_language

__all__ = [
    "check_attention_entropy",
    "check_mean_attention_distance",
    "check_syntactic_score",
    "check_classify_head",
    "EXERCISES",
]


# ----------------------------------------------------------------------------------------------
# 8-10. head metrics on (n_layers, n_heads, n, n) attention and annotated sentences


def _sentences(n: int, seed: int):
    return toy_language.generate(n, seed=seed)


def _random_attention(rng, sentences, n_layers, n_heads, zeros=0.3, peaks=False) -> list:
    """Row-stochastic attention (n_layers, n_heads, n, n) per sentence, with exact zeros; with
    `peaks`, each head sends some queries to their gold head and some to a delimiter."""
    out = []
    for s in sentences:
        n = len(s.tokens)
        A = rng.dirichlet(np.full(n, 0.5), size=(n_layers, n_heads, n))  # (n_layers, n_heads, n, n)
        drop = rng.random(A.shape) < zeros
        keep = rng.integers(n, size=(n_layers, n_heads, n, 1))
        np.put_along_axis(drop, keep, False, axis=-1)
        A = np.where(drop, 0.0, A)
        if peaks:
            delims = np.flatnonzero(s.is_delimiter)
            p_gold = rng.uniform(0.2, 0.9, size=(n_layers, n_heads, 1))
            roll = rng.random((n_layers, n_heads, n))  # (n_layers, n_heads, n)
            for q in range(n):
                gold = roll[..., q] < p_gold[..., 0]
                if s.head[q] >= 0:
                    A[gold, q, s.head[q]] += 4.0
                A[roll[..., q] > 0.75, q, delims[rng.integers(len(delims))]] += 8.0
        out.append(A / A.sum(axis=-1, keepdims=True))
    return out


def _metric_cases(rng, hidden, peaks=False):
    if not hidden:
        one = _sentences(1, seed=7)
        n = len(one[0].tokens)
        uniform = [np.full((1, 2, n, n), 1.0 / n)]
        onehot = [np.broadcast_to(np.eye(n)[np.r_[1:n, 0]], (1, 1, n, n)).copy()]
        three = _sentences(3, seed=11)
        cases = [
            {"attentions": uniform, "sentences": one,
             "about": f"uniform attention over n={n} tokens, 1 layer x 2 heads"},
            {"attentions": onehot, "sentences": one,
             "about": "one-hot attention (each query on the next token; zeros elsewhere)"},
            {"attentions": _random_attention(rng, three, 2, 3, peaks=peaks), "sentences": three,
             "about": "random attention with zeros, 3 sentences of different lengths, 2 x 3 heads"},
        ]
        # a query whose only weight sits on a delimiter has no most-attended word: leave that
        # corner out of the dependency cases, which compare argmaxes
        return [c for c in cases if not (peaks and c["attentions"] is onehot)]
    cases = []
    for k, (n_sent, L, H) in enumerate([(6, 2, 4), (12, 1, 3), (4, 3, 2)]):
        sents = _sentences(n_sent, seed=int(rng.integers(1 << 30)))
        cases.append({"attentions": _random_attention(rng, sents, L, H, peaks=peaks),
                      "sentences": sents,
                      "about": f"hidden: {n_sent} toy sentences, {L} x {H} heads"})
    return cases


def _call_metric(fns, case):
    return fns[0]([A.copy() for A in case["attentions"]], case["sentences"])


def _words(s) -> np.ndarray:
    return ~np.asarray(s.is_delimiter, dtype=bool)


def _pooled(values, queries="words"):
    """Mean over word queries pooled over sentences, or over all queries, or per sentence."""
    if queries == "per_sentence":
        return np.mean([v[..., m].mean(axis=-1) for v, m in values], axis=0)
    if queries == "all":
        return np.concatenate([v for v, _ in values], axis=-1).mean(axis=-1)  # (n_layers, n_heads)
    words = [v[..., m] for v, m in values]  # (n_layers, n_heads, n_words) per sentence
    return np.concatenate(words, axis=-1).mean(axis=-1)  # (n_layers, n_heads)


def _metric_problem(got, expected, name):
    problem = shape_problem(got, expected.shape, name + " (n_layers, n_heads)")
    if problem:
        return problem
    if not np.isfinite(got).all() and np.isfinite(expected).all():
        return f"{name} contains NaN or inf"
    return None


def _diagnose_entropy(case, got, expected):
    problem = _metric_problem(got, expected, "the entropy")
    if problem:
        return (problem + ": 0 * log 0 gives NaN; count it as 0 (clip A to 1e-12 before the log)"
                if "NaN" in problem else problem)
    if close(got, expected):
        return None
    per = [(head_metrics.row_entropy(A), _words(s))  # (n_layers, n_heads, n)
           for A, s in zip(case["attentions"], case["sentences"])]
    return first_match(got, {
        "the entropy is -sum(A log A): you lost the minus sign": lambda: -expected,
        "you used log base 2 (bits); the course measures entropy in nats (np.log)":
            lambda: expected / np.log(2),
        "average over word queries only: skip the delimiter queries ([CLS], [SEP], punctuation)":
            lambda: _pooled(per, "all"),
        "pool every word query of every sentence into one mean; a mean of per-sentence means "
        "weighs short sentences more": lambda: _pooled(per, "per_sentence"),
    }) or f"differs from the reference by up to {max_diff(got, expected):.2e}"


def _diagnose_distance(case, got, expected):
    problem = _metric_problem(got, expected, "the mean distance")
    if problem:
        return problem
    if close(got, expected):
        return None

    def per(kind):
        rows = []
        for A, s in zip(case["attentions"], case["sentences"]):
            i = np.arange(len(s.tokens))
            if kind == "signed":
                d = (A * (i[None, :] - i[:, None])).sum(-1)  # (n_layers, n_heads, n)
            elif kind == "top":
                d = np.abs(A.argmax(-1) - i).astype(float)  # (n_layers, n_heads, n)
            else:
                d = (A * np.abs(i[:, None] - i[None, :])).sum(-1)  # (n_layers, n_heads, n)
            rows.append((d, _words(s)))
        return rows

    return first_match(got, {
        "use the absolute distance |i - j|, not the signed j - i":
            lambda: _pooled(per("signed")),
        "use the expected distance sum_j A[i, j] |i - j|, not the distance to the most-attended "
        "key": lambda: _pooled(per("top")),
        "average over word queries only: skip the delimiter queries ([CLS], [SEP], punctuation)":
            lambda: _pooled(per("abs"), "all"),
        "pool every word query of every sentence into one mean; a mean of per-sentence means "
        "weighs short sentences more": lambda: _pooled(per("abs"), "per_sentence"),
    }) or f"differs from the reference by up to {max_diff(got, expected):.2e}"


def _diagnose_dependency(case, got, expected):
    problem = _metric_problem(got, expected, "the accuracy")
    if problem:
        return problem
    if close(got, expected):
        return None
    if np.nanmax(got) > 1.0 + 1e-9:
        return "an accuracy is a fraction between 0 and 1"

    def per(skip_delimiters=True, axis=-1, all_words=False):
        rows = []
        for A, s in zip(case["attentions"], case["sentences"]):
            scores = np.swapaxes(A, -1, -2) if axis == -2 else A  # (n_layers, n_heads, n, n)
            if skip_delimiters:
                scores = np.where(np.asarray(s.is_delimiter), -np.inf, scores)
            top = scores.argmax(-1)  # (n_layers, n_heads, n)
            head = np.asarray(s.head)
            hit = (top == head).astype(float)  # (n_layers, n_heads, n)
            rows.append((hit, _words(s) if all_words else head >= 0))
        return rows

    return first_match(got, {
        "the most-attended key must skip delimiter keys ([CLS], [SEP], punctuation): heads park "
        "unused attention there": lambda: _pooled(per(skip_delimiters=False)),
        "take the most-attended key along the last axis (keys), not over the queries":
            lambda: _pooled(per(axis=-2)),
        "count only tokens that have a gold head (s.head[i] >= 0)":
            lambda: _pooled(per(all_words=True)),
        "pool every token with a gold head over all sentences into one fraction, not a mean of "
        "per-sentence fractions": lambda: np.mean(
            [h[..., m].mean(-1) for h, m in per() if m.any()], axis=0),
    }) or f"differs from the reference by up to {max_diff(got, expected):.2e}"


def check_attention_entropy(attention_entropy) -> None:
    """attention_entropy(attentions, sentences) -> (n_layers, n_heads), in nats."""
    run_public(_BY_ID["entropy"], [attention_entropy])


def check_mean_attention_distance(mean_attention_distance) -> None:
    """mean_attention_distance(attentions, sentences) -> (n_layers, n_heads), in tokens."""
    run_public(_BY_ID["distance"], [mean_attention_distance])


def check_syntactic_score(syntactic_score) -> None:
    """syntactic_score(attentions, sentences) -> (n_layers, n_heads), fractions, as
    `mha_course.analysis.heads.syntactic_score` (Clark et al.'s dependency accuracy)."""
    run_public(_BY_ID["dependency_accuracy"], [syntactic_score])


# ----------------------------------------------------------------------------------------------
# 11. classify a head


def _classify_cases(rng, hidden):
    if not hidden:
        quiet = {"rare_word": 0.1, "rare_target": 0.1, "duplicate": 0.05}
        heads = [
            {"local": 0.92, "syntactic": 0.3, "delimiter": 0.1, "coreference": 0.2,
             "identity": 0.05, **quiet},
            {"local": 0.55, "syntactic": 0.7, "delimiter": 0.1, "coreference": 0.2,
             "identity": 0.05, **quiet},
            {"local": 0.3, "syntactic": 0.95, "delimiter": 0.1, "coreference": 0.2,
             "identity": 0.05, **quiet},
            {"local": 0.2, "syntactic": 0.3, "delimiter": 0.4, "coreference": 0.1,
             "identity": 0.05, **quiet},
            {"local": 0.2, "syntactic": 0.3, "delimiter": 0.1, "coreference": float("nan"),
             "rare_word": float("nan"), "rare_target": 0.1, "identity": 0.05, "duplicate": 0.81},
            {"local": 0.2, "syntactic": 0.1, "delimiter": 0.3, "coreference": 0.1,
             "identity": 0.62, **quiet},
        ]
        return [{"scores": heads, "baseline": 0.6, "min_score": 0.5, "min_margin": 0.2,
                 "about": "six heads (local; syntactic below the baseline + margin; syntactic; "
                          "all low; NaN scores and a duplicate-token head; an identity head), "
                          "baseline 0.6"},
                {"scores": heads[1:3], "baseline": None, "min_score": 0.5, "min_margin": 0.2,
                 "about": "no baseline given"}]
    cases = []
    for k in range(3):
        heads = []
        for _ in range(25):
            s = {r: float(v) for r, v in zip(head_metrics.ROLES,
                                                rng.uniform(0, 1, len(head_metrics.ROLES)) ** 1.5)}
            for r in rng.choice(head_metrics.ROLES, size=rng.integers(0, 3), replace=False):
                s[str(r)] = float("nan")
            heads.append(s)
        cases.append({"scores": heads, "baseline": [0.5, None, 0.3][k],
                      "min_score": [0.5, 0.4, 0.6][k], "min_margin": [0.2, 0.2, 0.1][k],
                      "about": f"hidden: 25 random heads (some NaN scores), set {k}"})
    return cases


def _call_classify(fns, case):
    return [fns[0](dict(s), case["baseline"], min_score=case["min_score"],
                   min_margin=case["min_margin"]) for s in case["scores"]]


def _expected_classify(case):
    return [head_metrics.classify_head(s, case["baseline"], min_score=case["min_score"],
                                       min_margin=case["min_margin"]) for s in case["scores"]]


def _diagnose_classify(case, got, expected):
    if not isinstance(got, list) or len(got) != len(expected):
        return f"return one role (a str) per head; got {describe(got)}"
    for k, (g, x) in enumerate(zip(got, expected)):
        if g == x:
            continue
        s = case["scores"][k]
        shown = ", ".join(f"{r} {v:.2f}" for r, v in s.items())
        finite = {r: v for r, v in s.items() if np.isfinite(v)}
        best = max(finite.values()) if finite else float("nan")
        if not isinstance(g, str):
            return f"head {k}: return the role as a str; got {describe(g)}"
        if g == "syntactic" and case["baseline"] is not None:
            return (f"head {k} ({shown}): syntactic {s['syntactic']:.2f} does not beat the "
                    f"baseline {case['baseline']:.2f} by min_margin {case['min_margin']}, so it "
                    f"is not syntactic (expected {x!r})")
        if x == "none":
            return (f"head {k} ({shown}): its best eligible score is below min_score "
                    f"{case['min_score']}, so its role is 'none' (you said {g!r})")
        if len(finite) < len(s):
            return (f"head {k} ({shown}): skip NaN scores (a role that could not be measured); "
                    f"expected {x!r}, you said {g!r}")
        return (f"head {k} ({shown}, best {best:.2f}): expected {x!r}, you said {g!r}")
    return None


def check_classify_head(classify_head) -> None:
    """classify_head(scores, syntactic_baseline=None, min_score=0.5, min_margin=0.2) -> role, as
    `mha_course.analysis.heads.classify_head`."""
    run_public(_BY_ID["classify_head"], [classify_head])

EXERCISES: list[Exercise] = [
    Exercise("entropy", "attention_entropy", ("attention_entropy",), _metric_cases, _call_metric,
             lambda c: head_metrics.attention_entropy(c["attentions"], c["sentences"]),
             _diagnose_entropy),
    Exercise("distance", "mean_attention_distance", ("mean_attention_distance",), _metric_cases,
             _call_metric,
             lambda c: head_metrics.mean_attention_distance(c["attentions"], c["sentences"]),
             _diagnose_distance),
    # the grade_id "dependency_accuracy" names a gradebook column: it stays when the function is
    # renamed to the package's
    Exercise("dependency_accuracy", "syntactic_score", ("syntactic_score",),
             lambda rng, hidden: _metric_cases(rng, hidden, peaks=True), _call_metric,
             lambda c: head_metrics.syntactic_score(c["attentions"], c["sentences"]),
             _diagnose_dependency),
    Exercise("classify_head", "classify_head", ("classify_head",), _classify_cases,
             _call_classify, _expected_classify, _diagnose_classify),
]
_BY_ID = {ex.id: ex for ex in EXERCISES}
