"""Linear probes on each head's output Z_i: what does a head *encode*, as opposed to what it
attends to?

    acts = collect_toy(model, sentences)        # experiments.activations (or collect_minilm)
    labels = toy_labels(sentences)              # or minilm_labels(acts.annotations)
    result = probe_heads(acts, labels["role"], seed=0)
    result.accuracy, result.control_accuracy, result.selectivity    # each (n_layers, n_heads)

A probe is a multinomial logistic regression p(y | z) = softmax(W z + b) on standardised features
z (one token's Z_i, d_v numbers), trained on 70% of the *sentences* and scored on the other 30%,
so that no sentence is seen on both sides. Accuracy alone says little: a probe can memorise word
identity, and any vector that carries the token's identity "predicts" its part of speech. Two
controls keep the number honest:

- the control task (Hewitt & Liang 2019): every word type gets a random, fixed label, so the only
  way to score is to memorise types. selectivity = task accuracy - control accuracy; a high
  selectivity means the head's output carries the property beyond the word's identity.
- a randomly initialised model of the same shape (`experiments.controls.random_init_toy`,
  `random_init_minilm`): what the architecture and the input embeddings give before training.

Tasks: "pos" (part of speech), "role" (subject / object / determiner / other) and "relation"
(the dependency relation to the word's head). On MiniLM they come from spaCy's parse; on the toy
language they are read off the grammar (see `toy_labels`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy.stats import spearmanr
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

__all__ = ["TASKS", "toy_labels", "minilm_labels", "split_by_sentence", "control_labels",
           "probe_accuracy", "ProbeResult", "probe_heads", "probe_all", "role_agreement",
           "summary_lines"]

TASKS = ("pos", "role", "relation")
SUBJECT_DEPS = ("nsubj", "nsubjpass")
OBJECT_DEPS = ("dobj", "dative", "obj", "iobj")
LAYER_FEATURES = ("attn_out", "residual")


# --------------------------------------------------------------------------- labels
def _toy_sentence_labels(s) -> dict[str, list[str]]:
    """One toy sentence's labels per token (see `toy_labels`)."""
    n = len(s.tokens)
    subjects = {h for h in s.head if h >= 0}
    verbs = [i for i, r in enumerate(s.rel) if r == "nsubj"]
    nominal = ("NOUN", "NAME", "PRON")

    def next_nominal(i, kinds):
        return next((j for j in range(i + 1, n) if s.pos[j] in kinds), -1)

    objects = {next_nominal(v, nominal) for v in verbs} - {-1}
    pp_nouns = {next_nominal(i, ("NOUN", "NAME")) for i in range(n) if s.pos[i] == "PREP"} - {-1}
    appositions = {c for c in s.rare_context if c >= 0}  # "alongside Tila the old queen"
    conn = next((i for i in range(n) if s.pos[i] == "CONN"), n)
    by_pos = {"DET": "det", "ADJ": "amod", "ADV": "advmod", "PREP": "case", "CONN": "mark",
              "REL": "ref", "PUNCT": "punct"}
    pos, role, relation = [], [], []
    for i, p in enumerate(s.pos):
        if p == "SPECIAL":
            pos.append(""), role.append(""), relation.append("")
            continue
        if i in subjects:
            rel = "nsubj"
        elif i in objects:
            rel = "obj"
        elif i in pp_nouns:
            rel = "nmod"
        elif i in appositions:
            rel = "appos"
        elif p == "VERB":
            rel = "acl:relcl" if s.pos[i - 1] == "REL" else ("advcl" if i > conn else "root")
        else:
            rel = by_pos.get(p, p.lower())
        pos.append(p)
        relation.append(rel)
        role.append({"nsubj": "subject", "obj": "object", "det": "determiner"}.get(rel, "other"))
    return {"pos": pos, "role": role, "relation": relation}


def toy_labels(sentences) -> dict[str, np.ndarray]:
    """Labels of every token of toy sentences, concatenated as the rows of an `Activations`
    (`experiments.activations.collect_toy`): {"pos", "role", "relation"} -> (n_tokens,)
    strings, "" for [CLS] and [SEP] (not probed).

    pos: the lexicon's part of speech. relation, read off the grammar (`toy_language`), in
    Universal Dependencies names: nsubj (the noun a verb agrees with), obj (the first noun, name
    or pronoun after a verb), nmod (the noun after a preposition), appos (the common noun that
    says what a name is: "queen" in "alongside Tila the old queen"), root / acl:relcl / advcl (the
    main verb, a relative clause's verb after "that", the second clause's verb), det, amod,
    advmod, case (prepositions), mark (connectives), ref ("that"), punct.
    role: subject (nsubj), object (obj), determiner (det) or other.
    """
    per = [_toy_sentence_labels(s) for s in sentences]
    return {task: np.array([x for p in per for x in p[task]], dtype=object) for task in TASKS}


def minilm_labels(aligned, min_count: int = 10) -> dict[str, np.ndarray]:
    """Labels of every word of `AlignedSentence`s (spaCy's parse), concatenated as the rows of
    `experiments.activations.collect_minilm`: {"pos", "role", "relation"} -> (n_words,)
    strings, "" for [CLS], [SEP] and words the parser did not cover.

    pos: spaCy's coarse (Universal) part of speech; relation: the dependency label ("ROOT" for
    the root), with labels seen fewer than `min_count` times in the corpus merged into "other";
    role: subject (nsubj, nsubjpass), object (dobj, dative), determiner (det) or other.
    """
    pos = np.array([p for s in aligned for p in s.pos], dtype=object)
    dep = np.array([d for s in aligned for d in s.dep], dtype=object)
    probed = pos != ""
    role = np.where(np.isin(dep, SUBJECT_DEPS), "subject",
                    np.where(np.isin(dep, OBJECT_DEPS), "object",
                             np.where(dep == "det", "determiner", "other"))).astype(object)
    role[~probed] = ""
    relation = dep.copy()
    relation[~probed] = ""
    kinds, counts = np.unique(relation[probed].astype(str), return_counts=True)
    rare = kinds[counts < min_count]
    relation[probed & np.isin(relation.astype(str), rare)] = "other"
    return {"pos": np.where(probed, pos, "").astype(object), "role": role, "relation": relation}


# --------------------------------------------------------------------------- splits and controls
def split_by_sentence(sentence, test_fraction: float = 0.3, seed: int = 0
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) boolean masks over tokens; a sentence's tokens all fall on one side.

    sentence (n_tokens,): the sentence index of each token. A seeded shuffle of the sentences puts
    round(test_fraction * n_sentences) of them (at least one) in the test set.
    """
    sentence = np.asarray(sentence)
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie strictly between 0 and 1; got {test_fraction}")
    ids = np.unique(sentence)
    if len(ids) < 2:
        raise ValueError(f"a split by sentence needs at least 2 sentences; got {len(ids)}")
    rng = np.random.default_rng(seed)
    n_test = min(len(ids) - 1, max(1, round(test_fraction * len(ids))))
    test_ids = rng.permutation(ids)[:n_test]
    test = np.isin(sentence, test_ids)
    return ~test, test


def control_labels(labels, word_types, seed: int = 0) -> np.ndarray:
    """The control task of Hewitt & Liang (2019): each word type gets one random label, fixed for
    all its tokens, with the task's label distribution. labels, word_types (n_tokens,); tokens
    whose label is "" stay "".

    Types are visited in a seeded random order and labels handed out so that the *token-level*
    distribution matches the task's as closely as the type frequencies allow (Hewitt & Liang draw
    each type's label independently, which can leave one label far more frequent than in the
    task when a frequent type draws it). With matched distributions, the majority-class accuracy
    of the control equals the task's, and selectivity on features that know nothing is ~0.
    """
    labels = np.asarray(labels, dtype=object)
    word_types = np.asarray(word_types, dtype=object)
    if labels.shape != word_types.shape or labels.ndim != 1:
        raise ValueError(f"labels and word_types must be (n_tokens,) each; got shapes "
                         f"{labels.shape} and {word_types.shape}")
    probed = labels != ""
    classes, class_counts = np.unique(labels[probed].astype(str), return_counts=True)
    types, type_of_token, type_counts = np.unique(word_types[probed].astype(str),
                                                  return_inverse=True, return_counts=True)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(types))
    boundaries = np.cumsum(class_counts)  # token quota of each class, cumulated
    midpoints = np.cumsum(type_counts[order]) - type_counts[order] / 2  # where each type sits
    type_label = np.empty(len(types), dtype=object)
    type_label[order] = classes[np.minimum(np.searchsorted(boundaries, midpoints, side="right"),
                                           len(classes) - 1)]
    out = np.full(labels.shape, "", dtype=object)
    out[probed] = type_label[type_of_token]
    return out


# --------------------------------------------------------------------------- probes
def probe_accuracy(features, labels, train, test, *, max_iter: int = 200, C: float = 1.0,
                   seed: int = 0) -> float:
    """Test accuracy of a logistic-regression probe on `features` (n_tokens, d), trained on the
    tokens in `train` and scored on those in `test` (boolean masks); features are standardised
    with the training tokens' mean and deviation. A probe that does not converge in `max_iter`
    L-BFGS steps is used as it stands (the ConvergenceWarning is silenced: a few hundred steps
    are enough to rank heads, and probes are meant to be simple).

    The fit runs on one BLAS / OpenMP thread whatever the caller's setting: with several
    threads, BLAS sums in an order that depends on the thread count, L-BFGS then stops at a
    slightly different point, and an accuracy can move by one test token from one machine to
    the next. One thread makes a probe's result depend on the seed and the data only.
    """
    features = np.asarray(features)
    labels = np.asarray(labels).astype(str)
    if features.ndim != 2 or len(features) != len(labels):
        raise ValueError(f"features must be (n_tokens, d) with one row per label; got shape "
                         f"{features.shape} for {len(labels)} labels")
    X_train, X_test = features[train], features[test]
    y_train, y_test = labels[train], labels[test]
    if len(X_train) == 0 or len(X_test) == 0:
        raise ValueError(f"empty split: {len(X_train)} training and {len(X_test)} test tokens")
    if len(np.unique(y_train)) < 2:  # one class: predicting it is all a probe can do
        return float((y_test == y_train[0]).mean())
    mean = X_train.mean(axis=0)  # (d,)
    std = X_train.std(axis=0)  # (d,)
    std[std == 0] = 1.0  # a constant feature stays constant (zero) instead of dividing by 0
    clf = LogisticRegression(max_iter=max_iter, C=C, random_state=seed)
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit((X_train - mean) / std, y_train)
        predicted = clf.predict((X_test - mean) / std)
    return float((predicted == y_test).mean())


@dataclass
class ProbeResult:
    """Probe accuracies for one task, per head and per layer.

    accuracy, control_accuracy (n_layers, n_heads): probes on each head's Z_i; layer_accuracy,
    layer_control_accuracy: {"attn_out", "residual"} -> (n_layers,), probes on the layer's
    combined attention output Concat(Z) W^O + b^O and on its output (residual stream);
    majority, control_majority: test accuracy of always answering the most frequent training
    label (chance); classes: the labels; n_train, n_test: tokens on each side.
    """
    task: str
    classes: tuple[str, ...]
    accuracy: np.ndarray
    control_accuracy: np.ndarray
    layer_accuracy: dict[str, np.ndarray] = field(default_factory=dict)
    layer_control_accuracy: dict[str, np.ndarray] = field(default_factory=dict)
    majority: float = float("nan")
    control_majority: float = float("nan")
    n_train: int = 0
    n_test: int = 0

    @property
    def selectivity(self) -> np.ndarray:
        """(n_layers, n_heads): task accuracy - control accuracy."""
        return self.accuracy - self.control_accuracy

    @property
    def layer_selectivity(self) -> dict[str, np.ndarray]:
        return {k: self.layer_accuracy[k] - self.layer_control_accuracy[k]
                for k in self.layer_accuracy}

    def best_head(self, by: str = "selectivity") -> tuple[int, int, float]:
        """(layer, head, value) of the head with the highest selectivity (or accuracy)."""
        table = self.selectivity if by == "selectivity" else self.accuracy
        layer, head = np.unravel_index(int(np.argmax(table)), table.shape)
        return int(layer), int(head), float(table[layer, head])


def _majority(labels, train, test) -> float:
    values, counts = np.unique(labels[train].astype(str), return_counts=True)
    return float((labels[test].astype(str) == values[np.argmax(counts)]).mean())


def _subsample_sentences(sentence, keep, max_tokens, seed) -> np.ndarray:
    """`keep`, restricted to whole sentences in a seeded random order until max_tokens."""
    if max_tokens is None or keep.sum() <= max_tokens:
        return keep
    rng = np.random.default_rng(seed + 1)
    ids = rng.permutation(np.unique(sentence[keep]))
    sizes = np.array([np.sum(keep & (sentence == k)) for k in ids])  # (n_sentences,)
    chosen = ids[np.cumsum(sizes) <= max_tokens]
    return keep & np.isin(sentence, chosen)


def probe_heads(acts, labels, *, task: str = "", seed: int = 0, test_fraction: float = 0.3,
                max_tokens: int | None = 4000, max_iter: int = 200, C: float = 1.0,
                layer_features=LAYER_FEATURES, control: bool = True) -> ProbeResult:
    """Probe every head's Z_i (and each layer's combined outputs) for `labels` (n_tokens,)
    strings, "" = not probed, e.g. `toy_labels(sentences)["pos"]`.

    The tokens are split by sentence (`split_by_sentence`, seeded); at most `max_tokens` probed
    tokens are used (whole sentences, seeded) to keep the n_layers * n_heads fits fast. With
    `control`, the same probes are trained on `control_labels` (word types from acts.tokens).
    """
    labels = np.asarray(labels, dtype=object)
    if labels.shape != (acts.n_tokens,):
        raise ValueError(f"labels must be ({acts.n_tokens},), one per token of the activations; "
                         f"got shape {labels.shape}")
    keep = _subsample_sentences(acts.sentence, labels != "", max_tokens, seed)
    if keep.sum() == 0:
        raise ValueError("no token has a label: every entry of labels is ''")
    y = labels[keep]  # (n_kept,)
    train, test = split_by_sentence(acts.sentence[keep], test_fraction, seed)
    y_control = control_labels(y, np.asarray(acts.tokens, dtype=object)[keep], seed)
    kw = {"max_iter": max_iter, "C": C, "seed": seed}
    shape = (acts.n_layers, acts.n_heads)
    accuracy, control_accuracy = np.zeros(shape), np.full(shape, np.nan)
    for layer in range(acts.n_layers):
        for head in range(acts.n_heads):
            Z = acts.heads[layer, head][keep]  # (n_kept, d_v)
            accuracy[layer, head] = probe_accuracy(Z, y, train, test, **kw)
            if control:
                control_accuracy[layer, head] = probe_accuracy(Z, y_control, train, test, **kw)
    layer_acc, layer_control = {}, {}
    for name in layer_features:
        X = getattr(acts, name)[:, keep]  # (n_layers, n_kept, d_model)
        layer_acc[name] = np.array([probe_accuracy(x, y, train, test, **kw) for x in X])
        layer_control[name] = (np.array([probe_accuracy(x, y_control, train, test, **kw)
                                         for x in X]) if control
                               else np.full(acts.n_layers, np.nan))
    return ProbeResult(
        task=task, classes=tuple(np.unique(y.astype(str))), accuracy=accuracy,
        control_accuracy=control_accuracy, layer_accuracy=layer_acc,
        layer_control_accuracy=layer_control, majority=_majority(y, train, test),
        control_majority=_majority(y_control, train, test), n_train=int(train.sum()),
        n_test=int(test.sum()))


def probe_all(acts, labels: dict, tasks=TASKS, **kwargs) -> dict[str, ProbeResult]:
    """`probe_heads` for each task of `labels` (a dict from `toy_labels` / `minilm_labels`)."""
    missing = [t for t in tasks if t not in labels]
    if missing:
        raise ValueError(f"labels has no task {missing}; it has {sorted(labels)}")
    return {t: probe_heads(acts, labels[t], task=t, **kwargs) for t in tasks}


def summary_lines(results: dict, *, feature: str = "residual", layers: str = "last") -> list[str]:
    """`probe_all`'s results as text lines, a header first, one line per task: its classes, chance
    (the majority label's test accuracy), the best head by selectivity with its task accuracy,
    control accuracy and selectivity, then the layer outputs (`feature`): with layers="last", the
    last layer's accuracy, control accuracy and selectivity; with layers="all", every layer's
    selectivity, L0 first."""
    if layers not in ("last", "all"):
        raise ValueError(f"layers must be 'last' or 'all'; got {layers!r}")
    missing = [task for task, r in results.items() if feature not in r.layer_accuracy]
    if missing:
        raise ValueError(f"tasks {missing} have no layer output {feature!r}: probe them with "
                         f"layer_features=({feature!r},)")
    tail = (f"{'last layer output:':<18}{'accuracy':>9}{'control':>8}{'select.':>8}"
            if layers == "last" else "layer output: select. L0 …")
    lines = [f"{'task':<9}{'classes':>7}{'chance':>7}  {'best head':<9}{'accuracy':>9}"
             f"{'control':>8}{'select.':>8}   {tail}"]
    for task, r in results.items():
        layer, head, sel = r.best_head()  # by selectivity
        line = (f"{task:<9}{len(r.classes):7d}{r.majority:7.2f}  {f'L{layer}H{head}':<9}"
                f"{r.accuracy[layer, head]:9.2f}{r.control_accuracy[layer, head]:8.2f}"
                f"{sel:8.2f}   ")
        if layers == "last":
            line += (f"{'':<18}{r.layer_accuracy[feature][-1]:9.2f}"
                     f"{r.layer_control_accuracy[feature][-1]:8.2f}"
                     f"{r.layer_selectivity[feature][-1]:8.2f}")
        else:
            line += " ".join(f"{x:.2f}" for x in r.layer_selectivity[feature])
        lines.append(line)
    return lines


def role_agreement(table, role_scores: dict) -> dict[str, float]:
    """Spearman rank correlation, over heads, between a probe table (n_layers, n_heads) and each
    attention-role score table (e.g. `heads.head_scores`): does the head that *attends* to a
    relation also *encode* the property? NaN where a table is constant."""
    table = np.asarray(table, dtype=float)
    out = {}
    for role, scores in role_scores.items():
        scores = np.asarray(scores, dtype=float)
        if scores.shape != table.shape:
            raise ValueError(f"role {role!r}: scores {scores.shape} do not match the probe "
                             f"table {table.shape}")
        ok = np.isfinite(scores) & np.isfinite(table)
        if ok.sum() < 3 or np.ptp(scores[ok]) == 0 or np.ptp(table[ok]) == 0:
            out[role] = float("nan")
        else:
            out[role] = float(spearmanr(table[ok], scores[ok]).statistic)
    return out
