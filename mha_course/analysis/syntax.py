"""Do a real model's heads follow syntax? Clark et al. (2019), "What does BERT look at?", with the
baselines that keep the answer honest.

Inputs are arrays and annotations only: word-level attention (n_layers, n_heads, n_words, n_words)
per sentence (`alignment.word_attention(A, s.word_index)`), and `AlignedSentence`s from
`analysis.alignment` (words, dependency relation and head per word, [CLS] first, [SEP] last).

- A head *predicts* a word's partner by its most-attended word, ignoring [CLS] and [SEP] (where
  heads park attention they do not use). Dependent -> head: from each dependent of a relation, is
  the top word its head? Head -> dependent: from the head, is the top word that dependent? Each
  arc counts once; a head with two dependents of one relation cannot get both right.
  The direction is the query -> key arrow: for nsubj, dependent -> head is subject -> verb (the
  subject attends to its verb) and head -> dependent is verb -> subject ("jumps" -> "fox").
  `direction_label` names every row in words, e.g. "nsubj: subject → verb (dependent → head)".
- The fixed-offset baseline: the best rule "the partner is k words away" for that relation and
  direction, from word positions alone. A head that only matches it is positional, not syntactic.
- "all" pools every arc except the root's (punctuation included).
- Coreference: from a pronoun, is the top word its hand-annotated antecedent? Baseline: the
  nearest noun before the pronoun.
- Entropy and the attention sink are read from the piece-level attention (n_layers, n_heads, n, n),
  over every query piece except [CLS] and [SEP].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mha_course.analysis.alignment import word_attention
from mha_course.analysis.heads import best_offset, offset_fractions, row_entropy

__all__ = ["RELATIONS", "DIRECTIONS", "arcs", "most_attended_word", "dependency_accuracy",
           "offset_accuracies", "offset_baseline", "DirectionResult", "RelationResult",
           "clark_table", "attention_entropy_by_head", "attention_sink", "CoreferenceResult",
           "nearest_noun_baseline", "coreference_accuracy", "SyntaxReport", "analyse_syntax",
           "RELATION_ENDS", "DIRECTION_WORDS", "direction_label", "clark_rows", "clark_lines",
           "arc_attention"]

RELATIONS = ("nsubj", "dobj", "det", "amod", "prep", "pobj", "aux", "poss", "all")
DIRECTIONS = ("dep_to_head", "head_to_dep")
# The two ends of each relation in words, (dependent, head): the query and key of dep_to_head,
# the key and query of head_to_dep.
RELATION_ENDS = {"nsubj": ("subject", "verb"), "dobj": ("object", "verb"),
                 "det": ("determiner", "noun"), "amod": ("adjective", "noun"),
                 "prep": ("preposition", "word it attaches to"),
                 "pobj": ("object of preposition", "preposition"),
                 "aux": ("auxiliary", "verb"), "poss": ("possessor", "possessed noun"),
                 "all": ("dependent", "head")}
DIRECTION_WORDS = {"dep_to_head": "dependent → head", "head_to_dep": "head → dependent"}
NOUN_POS = ("NOUN", "PROPN")


def _check(word_attentions, sentences) -> None:
    if len(word_attentions) != len(sentences):
        raise ValueError(f"one attention array per sentence: got {len(word_attentions)} arrays "
                         f"and {len(sentences)} sentences")
    for k, (A, s) in enumerate(zip(word_attentions, sentences)):
        m = len(s.words)
        if np.ndim(A) != 4 or np.shape(A)[-2:] != (m, m):
            raise ValueError(f"sentence {k}: word attention must be (n_layers, n_heads, n_words, "
                             f"n_words) with n_words = {m}; got shape {np.shape(A)} (did you pass "
                             "piece-level attention? use alignment.word_attention(A, "
                             "s.word_index))")


def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}; got {direction!r}")


def arcs(sentence, relation: str) -> tuple[np.ndarray, np.ndarray]:
    """(dependents, heads): word indices of the sentence's arcs of `relation` ("all": every arc)."""
    head = np.asarray(sentence.head)
    keep = head >= 0
    if relation != "all":
        keep &= np.asarray(sentence.dep) == relation
    dependents = np.flatnonzero(keep)  # (n_arcs,)
    return dependents, head[dependents]


def most_attended_word(word_attention, is_special) -> np.ndarray:
    """(n_layers, n_heads, n_words): for each query word, the word it attends to most, [CLS] and
    [SEP] excluded; -1 where the query puts no weight at all on real words (no prediction)."""
    masked = np.where(np.asarray(is_special, dtype=bool), -np.inf, word_attention)  # (..., m, m)
    top = masked.argmax(axis=-1)  # (n_layers, n_heads, n_words)
    return np.where(masked.max(axis=-1) > 0, top, -1)


def direction_label(relation: str, direction: str) -> str:
    """The arrow a row measures, query -> key, in words: "nsubj: subject → verb (dependent → head)",
    "nsubj: verb → subject (head → dependent)"; "all: dependent → head"."""
    _check_direction(direction)
    if relation not in RELATION_ENDS:
        raise ValueError(f"relation must be one of {tuple(RELATION_ENDS)}; got {relation!r}")
    dependent, head = RELATION_ENDS[relation]
    query, key = (dependent, head) if direction == "dep_to_head" else (head, dependent)
    if relation == "all":
        return f"all: {query} → {key}"
    return f"{relation}: {query} → {key} ({DIRECTION_WORDS[direction]})"


def _queries_targets(sentence, relation: str, direction: str):
    dependents, heads = arcs(sentence, relation)
    return (dependents, heads) if direction == "dep_to_head" else (heads, dependents)


def dependency_accuracy(word_attentions, sentences, relation: str,
                        direction: str = "dep_to_head") -> tuple[np.ndarray, int]:
    """(accuracy (n_layers, n_heads), n_arcs): the fraction of `relation`'s arcs, pooled over the
    sentences, where the query's most-attended word is its partner. NaN if there are no arcs."""
    _check(word_attentions, sentences)
    _check_direction(direction)
    hits, n_arcs = 0, 0
    for A, s in zip(word_attentions, sentences):
        queries, targets = _queries_targets(s, relation, direction)
        if len(queries):
            top = most_attended_word(A, s.is_special)  # (n_layers, n_heads, n_words)
            hits = hits + (top[..., queries] == targets).sum(axis=-1)  # (n_layers, n_heads)
            n_arcs += len(queries)
    if n_arcs == 0:
        shape = np.shape(word_attentions[0])[:2] if len(word_attentions) else (0, 0)
        return np.full(shape, np.nan), 0
    return hits / n_arcs, n_arcs


def offset_accuracies(sentences, relation: str, direction: str = "dep_to_head") -> dict[int, float]:
    """{k: accuracy of the rule "the partner is the word at offset k"} for every offset k that is
    right at least once (any other offset scores 0), from word positions alone."""
    _check_direction(direction)
    offsets = []
    for s in sentences:
        queries, targets = _queries_targets(s, relation, direction)
        offsets += (targets - queries).tolist()
    return offset_fractions(offsets)


def offset_baseline(sentences, relation: str, direction: str = "dep_to_head") -> tuple[int, float]:
    """(k, accuracy): the best fixed-offset rule for the relation and direction, ties broken as in
    `analysis.heads.best_offset` (the smaller |k|, then the negative k); (0, nan) if the relation
    has no arcs."""
    return best_offset(offset_accuracies(sentences, relation, direction))


@dataclass
class DirectionResult:
    """One relation in one direction: every head's accuracy (n_layers, n_heads), the best head
    and its accuracy, and the best fixed-offset rule next to it."""
    accuracy: np.ndarray
    best_layer: int
    best_head: int
    best_accuracy: float
    baseline_offset: int
    baseline_accuracy: float

    @property
    def margin(self) -> float:
        """How far the best head beats position alone."""
        return self.best_accuracy - self.baseline_accuracy


@dataclass
class RelationResult:
    relation: str
    n_arcs: int
    dep_to_head: DirectionResult
    head_to_dep: DirectionResult


def _best(table: np.ndarray) -> tuple[int, int, float]:
    if np.isnan(table).all():
        return -1, -1, float("nan")
    layer, head = np.unravel_index(int(np.nanargmax(table)), table.shape)
    return int(layer), int(head), float(table[layer, head])


def clark_table(word_attentions, sentences, relations=RELATIONS) -> dict[str, RelationResult]:
    """For each relation and both directions: every head's accuracy, the best head and the best
    fixed-offset baseline (Clark et al. 2019, Table 1 / Figure 5)."""
    out = {}
    for relation in relations:
        per_direction = {}
        for direction in DIRECTIONS:
            accuracy, n_arcs = dependency_accuracy(word_attentions, sentences, relation, direction)
            offset, base = offset_baseline(sentences, relation, direction)
            per_direction[direction] = DirectionResult(accuracy, *_best(accuracy), offset, base)
        out[relation] = RelationResult(relation, n_arcs, **per_direction)
    return out


def clark_rows(table: dict[str, RelationResult], directions=DIRECTIONS) -> list[dict]:
    """The table as plain rows, one per relation and direction (both directions of a relation next
    to each other), e.g. for a DataFrame or `clark_lines`. Each row names its arrow: "label" (see
    `direction_label`), "direction_words" ("dependent → head"), "query" and "key" (the ends in
    words, e.g. "verb" and "subject"); "baseline_offset" k means "the key is the word k places
    from the query" (k < 0: before it)."""
    for direction in directions:
        _check_direction(direction)
    rows = []
    for r in table.values():
        for direction in directions:
            d = getattr(r, direction)
            dependent, head = RELATION_ENDS.get(r.relation, ("dependent", "head"))
            query, key = (dependent, head) if direction == "dep_to_head" else (head, dependent)
            rows.append({"relation": r.relation, "direction": direction,
                         "direction_words": DIRECTION_WORDS[direction],
                         "label": direction_label(r.relation, direction),
                         "query": query, "key": key, "n_arcs": r.n_arcs,
                         "best_head": f"L{d.best_layer}H{d.best_head}",
                         "accuracy": d.best_accuracy, "baseline_offset": d.baseline_offset,
                         "baseline_accuracy": d.baseline_accuracy, "margin": d.margin})
    return rows


def clark_lines(rows: list[dict]) -> list[str]:
    """`clark_rows` as aligned text lines, a header first: arrow, arcs, best head and its accuracy,
    best fixed offset (key - query) and its accuracy, margin."""
    width = max(len(row["label"]) for row in rows)
    lines = [f"{'query → key (direction)':<{width}}  {'arcs':>5}  {'best head':<9}{'acc.':>6}"
             f"{'offset':>8}{'acc.':>6}{'margin':>8}"]
    for row in rows:
        lines.append(f"{row['label']:<{width}}  {row['n_arcs']:>5}  {row['best_head']:<9}"
                     f"{row['accuracy']:6.2f}{row['baseline_offset']:+8d}"
                     f"{row['baseline_accuracy']:6.2f}{row['margin']:+8.2f}")
    return lines


def arc_attention(word_attention, sentence, query: int, key: int) -> tuple[np.ndarray, np.ndarray]:
    """One arc, query word -> key word, in every head: (weight, is_top), both (n_layers, n_heads).

    weight: the attention from `query` to `key` (word level); is_top: whether `key` is the query's
    most-attended word ([CLS] and [SEP] excluded), i.e. whether the head gets this arc right in the
    Clark table's sense. E.g. query "jumps", key "fox": the verb -> subject arc (head -> dependent).
    """
    _check([word_attention], [sentence])
    m = len(sentence.words)
    for name, index in (("query", query), ("key", key)):
        if not 0 <= index < m:
            raise ValueError(f"{name} must be a word index in [0, {m - 1}]; got {index}")
    weight = np.asarray(word_attention)[..., query, key]  # (n_layers, n_heads)
    is_top = most_attended_word(word_attention, sentence.is_special)[..., query] == key  # (L, H)
    return weight, is_top


# --------------------------------------------------------------------------- layer statistics
def _pooled_rows(attentions, per_row) -> np.ndarray:
    """Mean of per_row(A) (n_layers, n_heads, n) over every non-special query of every sentence."""
    total, count = 0.0, 0
    for A in attentions:
        A = np.asarray(A)
        if A.ndim != 4 or A.shape[-1] != A.shape[-2] or A.shape[-1] < 3:
            raise ValueError("attentions must be (n_layers, n_heads, n, n) per sentence, [CLS] "
                             f"first and [SEP] last; got shape {A.shape}")
        values = per_row(A)[..., 1:-1]  # (n_layers, n_heads, n - 2): [CLS] and [SEP] rows out
        total = total + values.sum(axis=-1, dtype=np.float64)
        count += values.shape[-1]
    return total / count


def attention_entropy_by_head(attentions) -> np.ndarray:
    """(n_layers, n_heads): mean entropy H = -sum_j A_ij log A_ij (nats) of the query rows.
    Low: the head looks at a few pieces; log(n): it spreads evenly. Average the heads for a layer.
    """
    return _pooled_rows(attentions, row_entropy)


def attention_sink(attentions) -> dict[str, np.ndarray]:
    """{"[CLS]": (n_layers, n_heads), "[SEP]": (n_layers, n_heads)}: the mean attention mass that
    the query pieces put on [CLS] (the first piece) and on [SEP] (the last)."""
    return {"[CLS]": _pooled_rows(attentions, lambda A: A[..., 0]),
            "[SEP]": _pooled_rows(attentions, lambda A: A[..., -1])}


# --------------------------------------------------------------------------- coreference
@dataclass
class CoreferenceResult:
    """From pronouns to their antecedents: every head's accuracy (n_layers, n_heads), the best
    head, and the nearest-preceding-noun baseline."""
    n_links: int
    accuracy: np.ndarray
    best_layer: int
    best_head: int
    best_accuracy: float
    baseline_accuracy: float


def nearest_noun_baseline(sentence, pronoun: int) -> int:
    """The word index of the nearest noun (NOUN or PROPN) before `pronoun`; -1 if there is none."""
    before = [j for j in range(1, pronoun) if sentence.pos[j] in NOUN_POS]
    return before[-1] if before else -1


def coreference_accuracy(word_attentions, sentences, links) -> CoreferenceResult:
    """links: (sentence index, pronoun word, antecedent word) triples, e.g. from
    `alignment.resolve_coreference`; word_attentions and sentences: the whole corpus, in order."""
    _check(word_attentions, sentences)
    links = list(links)
    if not links:
        raise ValueError("no coreference links given")
    hits, base_hits = 0, 0
    for k, pronoun, antecedent in links:
        top = most_attended_word(word_attentions[k], sentences[k].is_special)  # (L, H, m)
        hits = hits + (top[..., pronoun] == antecedent)
        base_hits += nearest_noun_baseline(sentences[k], pronoun) == antecedent
    accuracy = hits / len(links)  # (n_layers, n_heads)
    return CoreferenceResult(len(links), accuracy, *_best(accuracy), base_hits / len(links))


# --------------------------------------------------------------------------- everything at once
@dataclass
class SyntaxReport:
    """The whole analysis of a corpus; every table is (n_layers, n_heads), average over the
    heads axis for a per-layer number (e.g. `report.sink["[CLS]"].mean(axis=1)`)."""
    relations: dict[str, RelationResult]
    entropy: np.ndarray
    sink: dict[str, np.ndarray]
    coreference: CoreferenceResult | None
    n_sentences: int
    n_words: int
    n_merged_words: int


def analyse_syntax(attentions, sentences, coreference_links=None,
                   relations=RELATIONS) -> SyntaxReport:
    """Clark table, entropy, attention sink and (with links) coreference for a corpus.

    attentions: piece-level (n_layers, n_heads, n, n) per sentence (e.g. `cache.attention_of(b)`
    for each text b of MiniLM's `model.run(texts)`);
    sentences: the `AlignedSentence`s of the same texts; coreference_links as in
    `coreference_accuracy`.
    """
    if len(attentions) != len(sentences):
        raise ValueError(f"one attention array per sentence: got {len(attentions)} and "
                         f"{len(sentences)}")
    word_attentions = [word_attention(A, s.word_index) for A, s in zip(attentions, sentences)]
    return SyntaxReport(
        relations=clark_table(word_attentions, sentences, relations),
        entropy=attention_entropy_by_head(attentions),
        sink=attention_sink(attentions),
        coreference=(None if coreference_links is None
                     else coreference_accuracy(word_attentions, sentences, coreference_links)),
        n_sentences=len(sentences),
        n_words=sum(s.n_words - 2 for s in sentences),
        n_merged_words=sum(s.n_merged_words for s in sentences))
