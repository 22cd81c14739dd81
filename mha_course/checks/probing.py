"""Checks for exercise 12 (ex05): a linear probe with a control task (Hewitt & Liang 2019), with
the control labels drawn as `mha_course.analysis.probing.control_labels` draws them."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

from mha_course.checks._framework import Exercise, describe, pair, run_public

__all__ = ["check_probe", "EXERCISES"]


# ----------------------------------------------------------------------------------------------
# 12. a linear probe with a control task


TAGS = ("NOUN", "VERB", "DET", "ADJ", "PREP", "PRON")


def _probe_case(rng, n_tokens, n_types, n_labels, d, about, zipf=True):
    type_label = np.array(TAGS[:n_labels], dtype=object)[rng.integers(n_labels, size=n_types)]
    # Zipf: a few frequent types, a long tail; or types of similar frequency, where a draw that
    # ignores the token quotas is far off the task's distribution
    freq = 1.0 / np.arange(1, n_types + 1) if zipf else np.ones(n_types)
    type_of_token = rng.choice(n_types, size=n_tokens, p=freq / freq.sum())  # (n_tokens,)
    word_types = np.array([f"w{t}" for t in type_of_token], dtype=object)
    labels = type_label[type_of_token]  # (n_tokens,): each word type has one label
    special = rng.random(n_tokens) < 0.05  # [CLS] / [SEP]: not probed, labelled ""
    word_types[special], labels[special] = "[SEP]", ""
    centres = rng.standard_normal((n_labels + 1, d))  # (n_labels + 1, d)
    centres[:, : d // 3] = 0  # a third of the dimensions is pure noise
    label_index = np.array([(TAGS + ("",)).index(y) if y else n_labels for y in labels])
    # dimensions on very different scales, the noise on the largest: a probe that does not
    # standardise needs large weights on the informative ones, which its penalty forbids
    scale = np.exp(np.where(np.arange(d) < d // 3, rng.uniform(2, 4, size=d),
                            rng.uniform(-4, -1, size=d)))  # (d,)
    features = (centres[label_index] + 1.2 * rng.standard_normal((n_tokens, d))) * scale
    train = (rng.random(n_tokens) < 0.7) & ~special
    return {"features": features, "labels": labels, "word_types": word_types, "train": train,
            "test": ~train & ~special,
            "seeds": [int(s) for s in rng.integers(1000, size=2)] if about.startswith("hidden")
            else [0, 1], "about": about}


def _probe_cases(rng, hidden):
    if not hidden:
        return [_probe_case(rng, 400, 30, 4, 6,
                            "400 tokens (some [SEP], labelled ''), 30 word types, 4 labels, d=6"),
                _probe_case(rng, 600, 80, 3, 4, "600 tokens, 80 word types of similar frequency, "
                            "3 labels, d=4", zipf=False)]
    return [_probe_case(rng, 600, 60, 5, 8, "hidden: 600 tokens, 60 types, 5 labels, d=8"),
            _probe_case(rng, 300, 25, 3, 4, "hidden: 300 tokens, 25 types, 3 labels, d=4"),
            _probe_case(rng, 500, 70, 4, 4, "hidden: 500 tokens, 70 types of similar frequency, "
                        "4 labels, d=4", zipf=False)]


def _as_strings(labels) -> list[str]:
    """The control labels as a list of str, whatever array or list type the function returned."""
    return [str(y) for y in np.asarray(labels, dtype=object).ravel()] \
        if np.ndim(labels) == 1 else labels


def _call_probe(fns, case):
    control_labels, probe_accuracy = fns
    a, b = case["seeds"]
    y, w = case["labels"], case["word_types"]
    return [_as_strings(control_labels(y.copy(), w.copy(), seed=a)),
            _as_strings(control_labels(y.copy(), w.copy(), seed=a)),
            _as_strings(control_labels(y.copy(), w.copy(), seed=b)),
            probe_accuracy(case["features"].copy(), y.copy(), case["train"].copy(),
                           case["test"].copy())]


def _probe_reference(features, labels, train, test, scale=True) -> float:
    """An independent probe: standardise with the train split's statistics (by hand), then
    scikit-learn's logistic regression; the fraction of test tokens predicted right."""
    F = features
    if scale:
        mean, std = F[train].mean(axis=0), F[train].std(axis=0)
        F = (F - mean) / np.where(std > 0, std, 1.0)  # (n_tokens, d)
    model = LogisticRegression(max_iter=1000).fit(F[train], labels[train])
    return float((model.predict(F[test]) == labels[test]).mean())


def _expected_probe(case):
    return [None, None, None,
            _probe_reference(case["features"], case["labels"], case["train"], case["test"])]


def _control_problem(got, case) -> str | None:
    """What is wrong with one call's control labels (a list of str), or None."""
    y, w = case["labels"], case["word_types"]
    if not isinstance(got, list) or len(got) != len(y):
        return (f"control_labels(labels, word_types, seed) must return one label per token, "
                f"{len(y)} of them; got {describe(got)}")
    c = np.array(got, dtype=object)
    probed = y != ""
    if (c[~probed] != "").any():
        return "tokens labelled '' (not probed, e.g. [SEP]) must keep the label ''"
    if (c[probed] == "").any():
        return "every probed token (label not '') needs a control label; some got ''"
    for t in np.unique(w[probed]):
        if len(np.unique(c[probed & (w == t)])) > 1:
            return ("tokens of the same word type got different control labels: draw one label "
                    "per word type (np.unique(word_types)), then give it to every token of that "
                    "type")
    classes, counts = np.unique(y[probed].astype(str), return_counts=True)
    if not np.isin(c[probed].astype(str), classes).all():
        return "control labels must be labels of the task (the classes found in `labels`)"
    _, type_counts = np.unique(w[probed].astype(str), return_counts=True)
    control_counts = np.array([(c[probed] == k).sum() for k in classes])
    off = np.abs(control_counts - counts)
    if off.max() > type_counts.max():
        k = int(off.argmax())
        return (f"the control task must keep the task's label distribution: '{classes[k]}' labels "
                f"{counts[k]} tokens in the task and {control_counts[k]} in your control (a gap "
                f"larger than the commonest word type, {type_counts.max()} tokens). Hand the "
                "labels out by token quota, not by an independent draw per type")
    return None


def _diagnose_probe(case, got, expected):
    problem = pair(got, 4, "control_labels (3 calls), probe_accuracy")
    if problem:
        return problem
    c1, c1_again, c2, accuracy = got
    y = case["labels"]
    for c in (c1, c1_again, c2):
        problem = _control_problem(c, case)
        if problem:
            return problem
    if c1 != c1_again:
        return "the same seed gave different control labels: use np.random.default_rng(seed)"
    if c1 == c2:
        return "two different seeds gave the same control labels: shuffle with the seed's rng"
    probed = y != ""
    if (np.array(c1, dtype=object)[probed] == y[probed]).mean() > 0.95:
        return "your control labels are the real labels: each word type gets a *random* label"
    if not isinstance(accuracy, (int, float)) or isinstance(accuracy, bool):
        return f"probe_accuracy must return a float; got {describe(accuracy)}"
    if accuracy > 1:
        return f"probe_accuracy returned {accuracy}: return a fraction between 0 and 1"
    X, train, test = case["features"], case["train"], case["test"]
    if abs(accuracy - expected[3]) <= 0.02:
        return None
    if abs(accuracy - _probe_reference(X, y, train, train)) <= 0.005:
        return "you scored the probe on the training tokens: fit on `train`, score on `test`"
    if abs(accuracy - _probe_reference(X, y, train, test, scale=False)) <= 0.005:
        return ("standardise the features first (StandardScaler fitted on the train split): "
                "without it the features' scales decide what the probe learns")
    return (f"probe_accuracy returned {accuracy:.3f}; a standardised logistic-regression probe "
            f"(max_iter=1000) fitted on train gets {expected[3]:.3f} on test")


def check_probe(control_labels, probe_accuracy) -> None:
    """control_labels(labels, word_types, seed=0) and probe_accuracy(features, labels, train, test),
    as `mha_course.analysis.probing`'s."""
    run_public(_BY_ID["probe"], [control_labels, probe_accuracy])

EXERCISES: list[Exercise] = [
    Exercise("probe", "control_labels / probe_accuracy", ("control_labels", "probe_accuracy"),
             _probe_cases, _call_probe, _expected_probe, _diagnose_probe),
]
_BY_ID = {ex.id: ex for ex in EXERCISES}
