"""The toy language's sentence grammar: `Grammar` (its probabilities, a frozen dataclass passed
in), `Sentence` (tokens with their gold annotations) and `generate`.

    CLS SUBJECT (PP | that VERB NP)? VERB OBJECT (alongside NAME DET ADJ{0-3} NOUN)?
        (CONN SUBJECT2 (PP)? ADV? VERB2 PRONOUN (like NAME)?)? CLOSER SEP

The subject is a common noun; the pronoun of clause 2 refers to clause 1's object; "like NAME"
names a name of clause 1 again; every word but the names is written in the case of the closer.
The apposition ("alongside Tila the old queen", `Grammar.apposition_prob`) is the naming
relation: its person noun (king, queen, sailor, mermaid, ...) fixes the name's gender, sits 2 to
5 words to the name's right, and is the name's only witness (no pronoun and no "like NAME" refers
to that name); `Sentence.rare_context` points from the name to the noun.
The object is always a name (`Grammar.object_always_named`), so the pronoun must find the one
name of clause 1 it refers to among up to three (a modifier's, the object, the apposition's).
Why the grammar is what it is, and what its probabilities did to the heads that training grew:
docs/design/toy_language.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from mha_course.models.toy_language.lexicon import (
    ADJECTIVES,
    ADVERBS,
    APPOSITION,
    CASES,
    CLOSERS,
    CLS,
    CONNECTIVES,
    DETERMINERS,
    INTRANSITIVE,
    LEXICON,
    NAME_PROBS,
    NAMES,
    NOUNS,
    PREPOSITIONS,
    REGISTER_CASE,
    SEP,
    TO_CASE,
    TOKEN_TO_ID,
    TRANSITIVE,
    VOCAB,
    WORLDS,
)

__all__ = ["Grammar", "Sentence", "generate"]


_SHORTEST = 7  # [CLS] the fox chases Balo . [SEP]


@dataclass(frozen=True)
class Grammar:
    """The probabilities of the sentence grammar (each the chance of one choice per sentence).

    The defaults are the course's toy language; `generate(n, seed)` gives the same sentences for
    a seed as long as they stay. Pass another `Grammar` to `generate` (or put it in
    `ToyConfig.grammar`) to train on a variant. Since issue 15 the defaults include the naming
    apposition, an object that is always a name and unambiguous repeats;
    `Grammar(apposition_prob=0.0, object_always_named=False, unique_repeat=False)` gives the
    sentences of the grammar before it (the same tokens; the vocabulary has one word more,
    "alongside").
    """
    closer_probs: tuple[float, float, float] = (0.4, 0.3, 0.3)  # '.', '?', '!' (CLOSERS)
    subject_singular: float = 0.6  # clause 1's subject is singular (else plural)
    # A name is always singular, so a verb would not need to find a name subject to know its
    # number: with name subjects, verbs attend anywhere and no verb -> subject head forms.
    subject_name_prob: float = 0.0  # a singular subject is a name (else "DET ADJ* NOUN")
    modifier_probs: tuple[float, float, float] = (0.25, 0.45, 0.3)  # none, PP, relative clause
    distractor_other_number: float = 0.8  # the modifier's noun has the subject's *other* number
    modifier_name_prob: float = 0.2  # a singular modifier noun is a name
    name_in_modifier: bool = False  # a modifier's noun is always a (singular) name
    # The object, the pronoun's antecedent, is always a name: when it could also be a noun (False:
    # a singular object is a name with object_name_prob once clause 1 names someone, else always)
    # 94% of antecedents were names, and "copy the gender of a name" scored ~0.95 on
    # coreference without finding the object (design note, "Issue 15").
    object_always_named: bool = True
    object_name_prob: float = 0.4  # (object_always_named=False) a singular object is a name
    second_clause: float = 0.85  # the sentence has a second clause
    second_clause_pp: float = 0.3  # clause 2's subject has a PP
    adverb: float = 0.5  # clause 2 has an adverb before its verb
    adjective_counts: tuple[float, float, float] = (0.4, 0.4, 0.2)  # 0, 1 or 2 adjectives
    repeat_prob: float = 0.5  # clause 2 ends "like NAME", naming a name of clause 1 again
    # ... only when clause 1 has one name it could repeat (the apposition's excepted): with two,
    # the copy sub-task's masked name had two right answers and no model could pass 95%
    unique_repeat: bool = True
    # clause 1 ends "alongside NAME DET ADJ* NOUN" (the naming relation) this often
    apposition_prob: float = 0.5
    # P(0, 1, 2, 3 adjectives) in that apposition: the noun sits 2 to 5 words after the name
    apposition_adjectives: tuple[float, ...] = (0.25, 0.25, 0.25, 0.25)
    max_len: int = 32  # longer draws are drawn again (the toy model's position table)

    def __post_init__(self):
        if isinstance(self.max_len, bool) or not isinstance(self.max_len, int) \
                or self.max_len < _SHORTEST:
            raise ValueError(f"Grammar.max_len must be an int >= {_SHORTEST} (the shortest "
                             f"sentence the grammar makes); got {self.max_len!r}")
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or f.name == "max_len":
                continue
            values = value if isinstance(value, tuple) else (value,)
            if not all(isinstance(v, (int, float)) and 0.0 <= v <= 1.0 for v in values):
                raise ValueError(f"Grammar.{f.name} must hold probabilities in [0, 1]; "
                                 f"got {value!r}")
            size = len(value) if f.name == "apposition_adjectives" else 3
            if isinstance(value, tuple) and (len(value) != size or len(value) == 0
                                             or abs(sum(value) - 1.0) > 1e-9):
                raise ValueError(f"Grammar.{f.name} must be {size or 'some'} probabilities that "
                                 f"sum to 1; got {value!r}")

    @classmethod
    def from_dict(cls, settings: dict) -> Grammar:
        """A Grammar from `dataclasses.asdict` output read back from JSON (lists become tuples)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ValueError(f"unknown Grammar fields {unknown}; expected some of {sorted(known)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()})


@dataclass
class Sentence:
    """One sentence; every list is aligned with `tokens` (the model's exact input)."""
    tokens: list[str]
    pos: list[str]
    head: list[int]  # verb -> its subject (the token it agrees with); -1 elsewhere
    rel: list[str]  # the relation of `head` ("nsubj"); "" where head == -1
    coref: list[int]  # pronoun -> its antecedent (the first clause's object); -1 elsewhere
    repeat_of: list[int]  # a repeated name -> its earlier occurrence; -1 elsewhere
    is_delimiter: list[bool]  # [CLS], [SEP] and punctuation
    is_rare: list[bool]  # names (the long-tail vocabulary)
    # a rare word -> the common, informative word that tells what it is: the name of an
    # apposition -> its person noun ("alongside Tila the old queen"); -1 elsewhere
    rare_context: list[int]
    sentence_type: str = "."  # the closing delimiter
    world: str = "land"

    def __len__(self) -> int:
        return len(self.tokens)

    @property
    def text(self) -> str:
        return " ".join(self.tokens)


@dataclass
class _Builder:
    """Appends words and their annotations; indices are positions in the final token list."""
    tokens: list[str] = field(default_factory=list)
    head: list[int] = field(default_factory=list)
    rel: list[str] = field(default_factory=list)
    coref: list[int] = field(default_factory=list)
    repeat_of: list[int] = field(default_factory=list)
    rare_context: list[int] = field(default_factory=list)

    def add(self, token: str, head: int = -1, rel: str = "", coref: int = -1,
            repeat_of: int = -1, rare_context: int = -1) -> int:
        self.tokens.append(token)
        self.head.append(head)
        self.rel.append(rel)
        self.coref.append(coref)
        self.repeat_of.append(repeat_of)
        self.rare_context.append(rare_context)
        return len(self.tokens) - 1




class _SentenceMaker:
    """Draws the words of one sentence. It never reuses a word, so the only repeat in a sentence
    is the planted one (a name named again)."""

    def __init__(self, rng: np.random.Generator, grammar: Grammar, world: str, question: bool):
        self.rng, self.grammar, self.world, self.question = rng, grammar, world, question
        self.used: set[str] = set()
        names = [k for k, (_, _, w) in enumerate(NAMES) if w == world]
        self.name_ids = np.array(names)
        self.name_probs = NAME_PROBS[names] / NAME_PROBS[names].sum()

    def pick(self, options: list, key=lambda o: o):
        free = [o for o in options if key(o) not in self.used]
        choice = free[self.rng.integers(len(free))]
        self.used.add(key(choice))
        return choice

    def name(self, gender: str | None = None) -> tuple[str, str]:
        """A name of the sentence's world (of `gender` if given) not used yet."""
        ids, probs = self.name_ids, self.name_probs
        if gender is not None:
            keep = np.array([NAMES[k][1] == gender for k in ids])  # (n_world_names,)
            ids, probs = ids[keep], probs[keep] / probs[keep].sum()
        while True:
            name, name_gender, _ = NAMES[self.rng.choice(ids, p=probs)]
            if name not in self.used:
                self.used.add(name)
                return name, name_gender

    def apposition(self, b: _Builder) -> None:
        """Append "alongside NAME DET ADJ* NOUN", the noun a person (gendered) noun of the world
        and the name of its gender; annotate name -> noun in `rare_context`. Nothing if every
        person noun is used already."""
        persons = [n for n in NOUNS[self.world] if n[2] in ("m", "f") and n[0] not in self.used]
        if not persons:
            return
        sg, _, gender = persons[self.rng.integers(len(persons))]
        self.used.add(sg)
        b.add(APPOSITION)
        name, _ = self.name(gender)
        at = b.add(name)
        if any(d not in self.used for d in DETERMINERS):
            b.add(self.pick(DETERMINERS))
        probs = self.grammar.apposition_adjectives
        for _ in range(min(self.rng.choice(len(probs), p=probs), self._free_adjectives())):
            b.add(self.pick(ADJECTIVES[self.world]))
        b.rare_context[at] = b.add(sg)

    def _free_adjectives(self) -> int:
        return sum(a not in self.used for a in ADJECTIVES[self.world])

    def noun_phrase(self, b: _Builder, number: str, name_prob: float) -> tuple[int, str, str]:
        """Append DET ADJ{0,2} NOUN, or a NAME; return (index of the noun, number, gender)."""
        if number == "sg" and self.rng.random() < name_prob:
            name, gender = self.name()
            return b.add(name), "sg", gender
        sg, pl, gender = self.pick(NOUNS[self.world], key=lambda n: n[0])
        n_adj = self.rng.choice(3, p=self.grammar.adjective_counts)
        b.add(self.pick(DETERMINERS))
        for _ in range(min(n_adj, self._free_adjectives())):  # never more than are left
            b.add(self.pick(ADJECTIVES[self.world]))
        return b.add(sg if number == "sg" else pl), number, gender

    def verb(self, transitive: bool, number: str) -> str:
        sg, pl = self.pick((TRANSITIVE if transitive else INTRANSITIVE)[self.world])
        if self.question:
            return f"does-{pl}" if number == "sg" else f"do-{pl}"
        return sg if number == "sg" else pl


def _other(number: str) -> str:
    return "pl" if number == "sg" else "sg"


def _random_number(rng) -> str:
    return "sg" if rng.random() < 0.5 else "pl"


def _sentence(rng: np.random.Generator, grammar: Grammar) -> Sentence:
    closer = CLOSERS[rng.choice(len(CLOSERS), p=grammar.closer_probs)]
    world = WORLDS[rng.integers(len(WORLDS))]
    g = _SentenceMaker(rng, grammar, world, question=closer == "?")
    b = _Builder()
    b.add(CLS)

    # Clause 1: SUBJECT (PP | relative clause)? VERB OBJECT
    subj_number = "sg" if rng.random() < grammar.subject_singular else "pl"
    subj, subj_number, _ = g.noun_phrase(b, subj_number, name_prob=grammar.subject_name_prob)
    modifier = rng.choice(["none", "pp", "rel"], p=grammar.modifier_probs)
    other_number = rng.random() < grammar.distractor_other_number
    distractor_number = _other(subj_number) if other_number else subj_number
    name_prob = grammar.modifier_name_prob
    if grammar.name_in_modifier and modifier != "none":  # the name goes here, not to the object
        distractor_number, name_prob = "sg", 1.0
    if modifier == "pp":
        b.add(g.pick(PREPOSITIONS))
        g.noun_phrase(b, distractor_number, name_prob=name_prob)
    elif modifier == "rel":
        b.add("that")
        b.add(g.verb(True, subj_number), head=subj, rel="nsubj")
        g.noun_phrase(b, distractor_number, name_prob=name_prob)
    b.add(g.verb(True, subj_number), head=subj, rel="nsubj")
    if not grammar.object_always_named and any(LEXICON[t].pos == "NAME" for t in b.tokens[1:]):
        obj, obj_number, obj_gender = g.noun_phrase(b, _random_number(rng),
                                                     name_prob=grammar.object_name_prob)
    else:  # every sentence names someone, so its world always has a truthful witness
        obj, obj_number, obj_gender = g.noun_phrase(b, "sg", name_prob=1.0)
    # (no draw at all when off, so that apposition_prob=0 gives the sentences of before)
    if grammar.apposition_prob > 0 and rng.random() < grammar.apposition_prob:
        g.apposition(b)  # "alongside Tila the old queen"

    # Clause 2 (optional): CONN SUBJECT2 (PP)? ADV? VERB2 PRONOUN (like NAME)?; the pronoun
    # refers to the first clause's object; "like NAME" names a name of clause 1 again (a copy).
    if rng.random() < grammar.second_clause:
        b.add(g.pick(CONNECTIVES))
        subj2, subj2_number, _ = g.noun_phrase(b, _random_number(rng), name_prob=0.0)
        if rng.random() < grammar.second_clause_pp:
            b.add(g.pick(PREPOSITIONS))
            g.noun_phrase(b, _other(subj2_number), name_prob=0.0)
        if rng.random() < grammar.adverb:
            b.add(g.pick(ADVERBS))
        b.add(g.verb(True, subj2_number), head=subj2, rel="nsubj")
        pronoun = "them" if obj_number == "pl" else {"m": "him", "f": "her", "n": "it"}[obj_gender]
        b.add(pronoun, coref=obj)
        names = [i for i, t in enumerate(b.tokens)  # the apposition's name keeps one witness
                 if LEXICON[t].pos == "NAME" and b.rare_context[i] < 0]
        if grammar.unique_repeat and len(names) > 1:  # "like [MASK]" would have two answers
            names = []
        if names and rng.random() < grammar.repeat_prob:  # a name can only come back here
            b.add("like")
            earlier = names[rng.integers(len(names))]
            b.add(b.tokens[earlier], repeat_of=earlier)
    b.add(closer)
    b.add(SEP)

    case = CASES.index(REGISTER_CASE[closer])  # every word but the names in the closer's case
    b.tokens = [VOCAB[TO_CASE[case, TOKEN_TO_ID[t]]] for t in b.tokens]
    infos = [LEXICON[t] for t in b.tokens]
    return Sentence(
        tokens=b.tokens, pos=[w.pos for w in infos], head=b.head, rel=b.rel, coref=b.coref,
        repeat_of=b.repeat_of, rare_context=b.rare_context,
        is_delimiter=[w.pos in ("SPECIAL", "PUNCT") for w in infos],
        is_rare=[w.pos == "NAME" for w in infos], sentence_type=closer, world=world)


def generate(n_sentences: int, seed: int = 0, grammar: Grammar | None = None) -> list[Sentence]:
    """n_sentences sentences drawn from `grammar` (default: `Grammar()`); the same seed and
    grammar give the same sentences. A draw longer than `grammar.max_len` tokens is drawn again."""
    grammar = Grammar() if grammar is None else grammar
    if not isinstance(grammar, Grammar):
        raise TypeError(f"grammar must be a toy_language.Grammar; got {type(grammar).__name__}")
    rng = np.random.default_rng(seed)
    out: list[Sentence] = []
    rejected = 0  # in a row
    while len(out) < n_sentences:
        s = _sentence(rng, grammar)
        if len(s) <= grammar.max_len:
            out.append(s)
            rejected = 0
            continue
        rejected += 1
        if rejected >= 1000:
            raise ValueError(f"Grammar.max_len={grammar.max_len} is too short for this grammar: "
                             "1000 draws in a row were longer")
    return out

