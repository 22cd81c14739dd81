"""Role scores for attention heads: numbers for what a heatmap only suggests.

Every function takes one attention array per sentence, shaped (n_layers, n_heads, n, n) with rows =
queries and columns = keys, plus the sentence's annotations (any object with the attributes used,
such as `toy_language.Sentence`), and returns one score per head, shaped (n_layers, n_heads).
The same functions serve the toy model, MiniLM and a student's own model.

The roles (`ROLES`), each with the direction it measures (query -> key):
- local: mass on the neighbours i - 1 and i + 1;
- syntactic: a word -> its gold head (`s.head`: in the toy language, verb -> its subject);
- delimiter: mass on delimiter and special keys ([CLS], [SEP], punctuation);
- coreference: a pronoun -> its antecedent (`s.coref`);
- rare_word: the rare-word head as the course's subject defines it, FROM a rare word TO the
  common, informative word that tells what the rare word is (`s.rare_context`);
- rare_target: the rare-word head of Voita et al. (2019), any word TO a rare word (the
  direction is the other way round: the rare word is the key, not the query);
- identity: the query's own position (mean attention on the diagonal), the subject's identity head;
- duplicate: a repeated token -> an earlier occurrence of the same token (a duplicate-token or
  copy head). It is not an identity head: the key is another position, with the same token.

Conventions (after Clark et al. 2019 and Voita et al. 2019):
- scores average over *word* queries (not delimiters or special tokens), pooled over sentences;
- "most-attended key" ignores delimiter keys, since heads park unused attention there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "ROLES", "local_score", "syntactic_score", "fixed_offset_baseline", "delimiter_score",
    "coreference_score", "rare_word_score", "rare_target_score", "self_attention_mass",
    "identity_score", "duplicate_score", "row_entropy", "attention_entropy", "offset_fractions",
    "best_offset",
    "mean_attention_distance", "head_scores", "classify_head", "classify_heads", "best_heads",
]

ROLES = ("local", "syntactic", "delimiter", "coreference", "rare_word", "rare_target",
         "identity", "duplicate")


def _check(attentions: Sequence[np.ndarray], sentences: Sequence) -> None:
    if len(attentions) != len(sentences):
        raise ValueError(f"one attention array per sentence: got {len(attentions)} arrays and "
                         f"{len(sentences)} sentences")
    for k, (A, s) in enumerate(zip(attentions, sentences)):
        n = len(s.tokens)
        if A.ndim != 4 or A.shape[-2:] != (n, n):
            raise ValueError(f"sentence {k}: attention must be (n_layers, n_heads, n, n) with "
                             f"n = {n} tokens; got shape {A.shape}")


def _words(s) -> np.ndarray:
    return ~np.asarray(s.is_delimiter, dtype=bool)  # (n,)


def _top_word_key(A: np.ndarray, s) -> np.ndarray:
    """Index of the most-attended non-delimiter key for every query: (n_layers, n_heads, n).

    -1 where a query puts no weight at all on word keys (nothing to pick, not the first word).
    """
    delimiter = np.asarray(s.is_delimiter, dtype=bool)  # (n,)
    masked = np.where(delimiter, -np.inf, A)  # (n_layers, n_heads, n, n)
    top = masked.argmax(axis=-1)  # (n_layers, n_heads, n)
    return np.where(masked.max(axis=-1) > 0, top, -1)


def _pooled_mean(values: list[np.ndarray]) -> np.ndarray:
    """Mean over the last axis of the concatenation:
    (n_layers, n_heads, total) -> (n_layers, n_heads)."""
    if not values or sum(v.shape[-1] for v in values) == 0:
        return np.full(values[0].shape[:2] if values else (0, 0), np.nan)
    return np.concatenate(values, axis=-1).mean(axis=-1)


def _shape(attentions) -> tuple[int, int]:
    return attentions[0].shape[:2]


def local_score(attentions, sentences) -> np.ndarray:
    """Mean attention mass on the keys at distance 1 (i - 1 and i + 1), over word queries."""
    _check(attentions, sentences)
    per = []
    for A, s in zip(attentions, sentences):
        near = np.zeros(A.shape[:3])  # (n_layers, n_heads, n)
        near[..., 1:] += np.diagonal(A, offset=-1, axis1=-2, axis2=-1)  # A[i, i-1]
        near[..., :-1] += np.diagonal(A, offset=1, axis1=-2, axis2=-1)  # A[i, i+1]
        per.append(near[..., _words(s)])
    return _pooled_mean(per)


def _fraction_hitting(attentions, sentences, targets_of) -> np.ndarray:
    """Fraction of queries q with a target t = targets_of(s)[q] >= 0 whose top word key is t."""
    _check(attentions, sentences)
    hits = []
    for A, s in zip(attentions, sentences):
        targets = np.asarray(targets_of(s))
        queries = np.nonzero(targets >= 0)[0]
        top = _top_word_key(A, s)  # (n_layers, n_heads, n)
        hits.append((top[..., queries] == targets[queries]).astype(float))
    return _pooled_mean(hits)


def syntactic_score(attentions, sentences) -> np.ndarray:
    """Fraction of tokens with a gold head (`s.head[i] >= 0`) whose most-attended key is that
    head."""
    return _fraction_hitting(attentions, sentences, lambda s: s.head)


def offset_fractions(offsets) -> dict[int, float]:
    """{k: fraction of the offsets equal to k}, sorted by k: how often the rule "the partner is
    the token k places from the query" is right, given one offset target - query per relation
    instance. Offsets that never occur are left out (their fraction is 0); {} for no offsets."""
    counts: dict[int, int] = {}
    for k in offsets:
        counts[int(k)] = counts.get(int(k), 0) + 1
    total = sum(counts.values())
    return {k: c / total for k, c in sorted(counts.items())}


def best_offset(fractions: Mapping[int, float]) -> tuple[int, float]:
    """(k, fraction) of the best fixed-offset rule in `offset_fractions`' table; (0, nan) if it
    is empty. Ties go to the smaller |k| (the nearer token), then to the negative k (the token
    before), so the answer does not depend on the order of the sentences."""
    if not fractions:
        return 0, float("nan")
    k = max(fractions, key=lambda k: (fractions[k], -abs(k), -k))
    return int(k), float(fractions[k])


def fixed_offset_baseline(sentences, attr: str = "head") -> tuple[int, float]:
    """The best 'always attend to i + k' rule for the relation in `attr`: (k, fraction correct),
    ties broken as in `best_offset`.

    `attr` names a per-token list of target positions, -1 where none: "head" (syntactic),
    "coref" (coreference), "rare_context" (the subject's rare-word relation), "repeat_of".
    A head that only beats this by a little may be positional, not relational.
    """
    missing = [k for k, s in enumerate(sentences) if not hasattr(s, attr)]
    if missing:
        raise ValueError(f"fixed_offset_baseline(attr={attr!r}) needs sentences annotated with "
                         f"{attr!r} (e.g. 'head', 'coref', 'rare_context'); sentence {missing[0]} "
                         "has no such attribute")
    offsets = [h - i for s in sentences for i, h in enumerate(getattr(s, attr)) if h >= 0]
    return best_offset(offset_fractions(offsets))


def delimiter_score(attentions, sentences) -> np.ndarray:
    """Mean attention mass on delimiter and special keys, over word queries."""
    _check(attentions, sentences)
    per = []
    for A, s in zip(attentions, sentences):
        delim = np.asarray(s.is_delimiter, dtype=bool)
        mass = A[..., delim].sum(axis=-1)  # (n_layers, n_heads, n)
        per.append(mass[..., ~delim])
    return _pooled_mean(per)


def coreference_score(attentions, sentences) -> np.ndarray:
    """Fraction of tokens with an antecedent (`s.coref[i] >= 0`) whose most-attended key is it."""
    return _fraction_hitting(attentions, sentences, lambda s: s.coref)


def rare_word_score(attentions, sentences) -> np.ndarray:
    """The subject's rare-word head, FROM rare words TO common, informative words: over rare words
    i with an annotated context word (`s.rare_context[i] >= 0`, the common word that tells what
    the rare word is), the fraction whose most-attended word key is that word. NaN where nothing
    is annotated (e.g. a real model's sentences, which carry no `rare_context`)."""
    def targets(s):
        context = getattr(s, "rare_context", None)
        if context is None:
            return np.full(len(s.tokens), -1)
        return np.where(np.asarray(s.is_rare, dtype=bool), np.asarray(context), -1)  # (n,)
    return _fraction_hitting(attentions, sentences, targets)


def rare_target_score(attentions, sentences) -> np.ndarray:
    """Voita et al. (2019)'s rare-word head, any word TO a rare word: over sentences with a rare
    word, the fraction of word queries whose most-attended word key is rare."""
    _check(attentions, sentences)
    per = []
    for A, s in zip(attentions, sentences):
        rare = np.asarray(s.is_rare, dtype=bool)
        if not rare.any():
            continue
        top = _top_word_key(A, s)  # (n_layers, n_heads, n)
        hit = (top >= 0) & rare[np.maximum(top, 0)]  # (n_layers, n_heads, n)
        per.append(hit[..., _words(s)].astype(float))
    if not per:
        return np.full(_shape(attentions), np.nan)
    return _pooled_mean(per)


def _earlier_occurrence_targets(s) -> list[list[int]]:
    """For each token, the positions of its earlier occurrences (word tokens only)."""
    seen: dict[str, list[int]] = {}
    out = []
    for i, (tok, delim) in enumerate(zip(s.tokens, s.is_delimiter)):
        out.append([] if delim else list(seen.get(tok, [])))
        if not delim:
            seen.setdefault(tok, []).append(i)
    return out


def self_attention_mass(attentions, sentences) -> np.ndarray:
    """Mean attention mass on the query's own position, mean_i A[i, i], over word queries."""
    _check(attentions, sentences)
    per = [np.diagonal(A, axis1=-2, axis2=-1)[..., _words(s)]  # (n_layers, n_heads, n_words)
           for A, s in zip(attentions, sentences)]
    return _pooled_mean(per)


def identity_score(attentions, sentences) -> np.ndarray:
    """The subject's identity head, which attends to the token's own position: the self-attention
    mass (`self_attention_mass`). 1 for a head that only looks at itself; a head that copies an
    earlier occurrence of the same token scores ~0 here (see `duplicate_score`)."""
    return self_attention_mass(attentions, sentences)


def duplicate_score(attentions, sentences) -> np.ndarray:
    """Over tokens that occurred earlier in the sentence: fraction whose most-attended key is an
    earlier occurrence of the same token (a duplicate-token / copy head). Looking at itself does
    not count. NaN if nothing repeats."""
    _check(attentions, sentences)
    hits = []
    for A, s in zip(attentions, sentences):
        earlier = _earlier_occurrence_targets(s)
        queries = [i for i, e in enumerate(earlier) if e]
        if not queries:
            continue
        top = _top_word_key(A, s)  # (n_layers, n_heads, n)
        hits.append(np.stack([np.isin(top[..., q], earlier[q]) for q in queries], axis=-1)
                    .astype(float))
    if not hits:
        return np.full(_shape(attentions), np.nan)
    return _pooled_mean(hits)


def row_entropy(A) -> np.ndarray:
    """H = -sum_j A[..., j] log A[..., j] in nats, one value per attention row: shape A.shape[:-1].

    0 log 0 counts as 0 (A is clipped to 1e-12 inside the log). The one entropy of the course:
    the head metrics, the Clark-style layer statistics and the widgets all call it."""
    A = np.asarray(A)
    return -(A * np.log(np.clip(A, 1e-12, None))).sum(axis=-1)  # A.shape[:-1]


def attention_entropy(attentions, sentences) -> np.ndarray:
    """Mean entropy (nats) of the word queries' attention rows: low = narrow, high = broad."""
    _check(attentions, sentences)
    per = [row_entropy(A)[..., _words(s)] for A, s in zip(attentions, sentences)]
    return _pooled_mean(per)


def mean_attention_distance(attentions, sentences) -> np.ndarray:
    """Mean over word queries of sum_j A[i, j] |i - j|: how far a head looks, in tokens."""
    _check(attentions, sentences)
    per = []
    for A, s in zip(attentions, sentences):
        n = len(s.tokens)
        dist = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :])  # (n, n)
        per.append((A * dist).sum(axis=-1)[..., _words(s)])
    return _pooled_mean(per)


def head_scores(attentions, sentences) -> dict[str, np.ndarray]:
    """Every role score plus entropy and distance, each (n_layers, n_heads)."""
    return {
        "local": local_score(attentions, sentences),
        "syntactic": syntactic_score(attentions, sentences),
        "delimiter": delimiter_score(attentions, sentences),
        "coreference": coreference_score(attentions, sentences),
        "rare_word": rare_word_score(attentions, sentences),
        "rare_target": rare_target_score(attentions, sentences),
        "identity": identity_score(attentions, sentences),
        "duplicate": duplicate_score(attentions, sentences),
        "entropy": attention_entropy(attentions, sentences),
        "mean_distance": mean_attention_distance(attentions, sentences),
    }


def _check_roles(scores) -> None:
    missing = [r for r in ROLES if r not in scores]
    if missing:
        raise ValueError(f"scores must have a (n_layers, n_heads) table for every role in ROLES "
                         f"{ROLES}; missing: {', '.join(missing)} (use NaN for a role that "
                         "cannot be measured)")


def best_heads(scores: dict[str, np.ndarray]) -> dict[str, dict]:
    """For every role in ROLES: the best head (layer, head) and its score (NaN, at head (0, 0),
    for a role that could not be measured, e.g. rare_word on sentences with no `rare_context`)."""
    _check_roles(scores)
    out = {}
    for role in ROLES:
        S = np.nan_to_num(scores[role], nan=-1.0)
        layer, head = np.unravel_index(int(S.argmax()), S.shape)
        out[role] = {"layer": int(layer), "head": int(head),
                     "score": float(scores[role][layer, head])}
    return out


def _best_eligible_role(scores: Mapping[str, float], syntactic_baseline: float | None,
                        min_margin: float) -> tuple[str, float]:
    """The role with the highest score among those that count, and that score ("none", NaN when
    no role counts). A NaN score does not count (nothing to measure it on); the syntactic role
    counts only if it reaches syntactic_baseline + min_margin (else position alone explains it)."""
    eligible = {role: float(score) for role, score in scores.items() if not np.isnan(score)}
    if syntactic_baseline is not None and \
            eligible.get("syntactic", -np.inf) < syntactic_baseline + min_margin:
        eligible.pop("syntactic", None)
    if not eligible:
        return "none", float("nan")
    best = max(eligible, key=eligible.get)
    return best, eligible[best]


def classify_head(scores: Mapping[str, float], syntactic_baseline: float | None = None,
                  min_score: float = 0.5, min_margin: float = 0.2) -> str:
    """One head's role from its role scores (a dict role -> score, e.g. one head's entries of
    `head_scores`), or "none".

    The rule: skip NaN scores; the syntactic role counts only if it beats the fixed-offset
    baseline by `min_margin` (always, when `syntactic_baseline` is None); the role is the one
    left with the highest score, and "none" if that score is below `min_score` or nothing is left.
    """
    if not isinstance(scores, Mapping):
        raise TypeError(f"scores must be a dict role -> score (e.g. {{'local': 0.9, ...}}); got "
                        f"{type(scores).__name__}")
    return _classify(scores, syntactic_baseline, min_score, min_margin)[0]


def _classify(scores: Mapping[str, float], syntactic_baseline: float | None, min_score: float,
              min_margin: float) -> tuple[str, float]:
    """(role, best eligible score): the rule of `classify_head`, with the score it decided on."""
    role, score = _best_eligible_role(scores, syntactic_baseline, min_margin)
    return (role if score >= min_score else "none"), score


def classify_heads(scores: dict[str, np.ndarray], syntactic_baseline: float | None = None,
                   min_score: float = 0.5, min_margin: float = 0.2) -> list[dict]:
    """Each head's role (`classify_head`) and its best eligible score, one dict per head in
    (layer, head) order: {"layer", "head", "role", "score", "scores"}.

    A head whose best score is below `min_score` gets the role "none" (its "score" is still that
    best score). The syntactic role only counts when the head beats the fixed-offset baseline by
    `min_margin` (else it is positional).
    """
    _check_roles(scores)
    n_layers, n_heads = np.shape(scores["local"])
    table = []
    for layer in range(n_layers):
        for head in range(n_heads):
            role_scores = {r: float(scores[r][layer, head]) for r in ROLES}
            role, score = _classify(role_scores, syntactic_baseline, min_score, min_margin)
            table.append({"layer": layer, "head": head, "role": role, "score": score,
                          "scores": role_scores})
    return table
