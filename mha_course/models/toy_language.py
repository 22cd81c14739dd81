"""A toy language with planted relations, so that we know what each attention head *should* find.

Every sentence comes with gold annotations aligned with its tokens (special tokens included):

    [CLS] the quick fox of their lazy dogs chases Balo because my wolf often follows him like Balo . [SEP]

Each relation is something a word must *check* to know that it is the right word:

- word order (local): the grammar fixes which part of speech may follow which, so a word whose
  neighbours have been swapped ("the fox quick brown") can only be put back by looking at them.
- agreement (syntactic): a verb agrees in number with its subject, a common noun that may sit far
  to the left behind a prepositional phrase or a relative clause whose noun has the *other*
  number. (Subjects are never names: a name is always singular, so a verb would not need to find it.)
- coreference: the object pronoun of the second clause refers to the *object* of the first clause
  and agrees with it in gender and number (him / her / it / them); both subjects are distractors.
- copy: the second clause may end "like NAME", naming again a name of the first clause.
- register (delimiters): the closing delimiter sets the form of every word. A statement ('.') is
  written in lower case, a shouted sentence ('!') in capitals ("THE QUICK FOX ... !"), a question
  ('?') in Title Case with the verb forms "Does-Chase" / "Do-Chase" ("The Quick Fox Does-Chase
  Balo ?"); names are always capitalised. Every word needs the closer's full identity.
- world (rare words): a sentence happens on land or at sea, and its nouns, verbs and adjectives
  come from that world's vocabulary ("fox, chases, dusty" / "whale, tows, salty"). Names belong to
  one world too; they are the rare words, drawn from a long Zipfian tail.

The training objective is denoising (`corrupt_batch`): about 30% of the word tokens are masked,
swapped for the same word with one feature wrong (number, gender, question form), or replaced at
random; whole sentences change case or world; neighbours trade places; verbs and pronouns take the
wrong number or pronoun. The loss sits on *every* word position, so each clean-looking token must
be checked against whatever governs it. Delimiters and first mentions of names are never
corrupted: they are the reliable witnesses of register and world, and every sentence has a name.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

__all__ = [
    "Sentence", "WordInfo", "LEXICON", "VOCAB", "TOKEN_TO_ID", "PAD", "CLS", "SEP", "MASK",
    "SPECIAL_TOKENS", "CLOSERS", "CASES", "REGISTER_CASE", "WORLDS", "NAMES", "NAME_PROBS", "SUBTASKS", "POS_TAGS", "POS_IDS",
    "LEMMA_IDS",
    "generate", "tokenize", "encode", "decode", "pad_batch", "corrupt_batch", "subtask_batch",
]

PAD, CLS, SEP, MASK = "[PAD]", "[CLS]", "[SEP]", "[MASK]"
SPECIAL_TOKENS = (PAD, CLS, SEP, MASK)
CLOSERS = (".", "?", "!")
CLOSER_PROBS = (0.4, 0.3, 0.3)
CASES = ("lower", "upper", "title")  # how a word is written
REGISTER_CASE = {".": "lower", "!": "upper", "?": "title"}  # closing delimiter -> case of its words
WORLDS = ("land", "sea")
# Subjects are common nouns: a name is always singular, so a verb would not need to find a name
# subject to know its number (round 1: verbs then attended anywhere, and no verb->subject head).
SUBJECT_NAME_PROB = 0.0  # a singular subject is a name this often (else "the ... noun")
NAME_IN_MODIFIER = False  # research switch: put the sentence's name in the subject's modifier
REPEAT_PROB = 0.5  # the second clause ends "like NAME", naming a name of the first clause again


@dataclass(frozen=True)
class WordInfo:
    """What the grammar knows about one surface form."""
    pos: str  # DET ADJ NOUN NAME VERB PRON PREP CONN ADV REL PUNCT SPECIAL
    concept: str  # shared by all forms of a word and by its counterpart in the other world
    number: str = ""  # "sg" / "pl" / "" (no agreement)
    gender: str = ""  # "m" / "f" / "n" / ""
    world: str = ""  # "land" / "sea" / "" (function words belong to both)
    verb_form: str = ""  # "stmt" ("chases") / "quest" ("does-chase") / "" (not a verb)
    case: str = "lower"  # "lower" / "upper" (a shouted sentence) / "title" (a question)


# ----------------------------------------------------------------------------------------------
# The lexicon: land and sea vocabularies are parallel lists (counterparts share an index)

_NOUNS = {  # (singular, plural, gender)
    "land": [("king", "kings", "m"), ("queen", "queens", "f"), ("boy", "boys", "m"),
             ("girl", "girls", "f"), ("fox", "foxes", "n"), ("dog", "dogs", "n"),
             ("horse", "horses", "n"), ("wolf", "wolves", "n")],
    "sea": [("sailor", "sailors", "m"), ("mermaid", "mermaids", "f"),
            ("fisherman", "fishermen", "m"), ("fisherwoman", "fisherwomen", "f"),
            ("fish", "fishes", "n"), ("whale", "whales", "n"), ("crab", "crabs", "n"),
            ("seal", "seals", "n")],
}
_ADJECTIVES = {"land": ["quick", "brown", "lazy", "old", "tall", "wild", "dusty", "grey"],
               "sea": ["wet", "salty", "blue", "deep", "calm", "stormy", "green", "foamy"]}
_TRANSITIVE = {  # (singular, plural)
    "land": [("chases", "chase"), ("follows", "follow"), ("feeds", "feed"), ("watches", "watch"),
             ("helps", "help")],
    "sea": [("hooks", "hook"), ("nets", "net"), ("tows", "tow"), ("splashes", "splash"),
            ("rescues", "rescue")],
}
_INTRANSITIVE = {"land": [("runs", "run"), ("jumps", "jump"), ("sleeps", "sleep")],
                 "sea": [("swims", "swim"), ("dives", "dive"), ("floats", "float")]}
# Determiners carry no number, so the subject noun is the only witness of the subject's number.
_DETERMINERS = ["the", "my", "our", "your", "their", "no"]
_PREPOSITIONS = ["of", "near", "with", "behind", "beside", "under", "over", "among"]
_CONNECTIVES = ["and", "but", "because", "so", "while", "when", "although", "until"]
_ADVERBS = ["often", "never", "always", "still", "also", "now"]
# Object pronouns: the pronoun is the *object* of the second clause, so the verb of that clause
# agrees with a subject of its own and the pronoun's only governor is its antecedent.
_PRONOUNS = [("him", "sg", "m"), ("her", "sg", "f"), ("it", "sg", "n"), ("them", "pl", "")]


def _make_names(n: int = 200) -> list[tuple[str, str, str]]:
    """n pronounceable (name, gender, world): male names end in -o, female in -a; the world
    alternates every two names, so both genders and both worlds run down the whole tail."""
    onsets = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z"]
    vowels = ["a", "e", "i", "o", "u"]
    middles = ["l", "n", "r", "v", "m"]
    names = []
    for i in range(n):
        o = onsets[i % len(onsets)]
        v1 = vowels[(i // len(onsets)) % len(vowels)]
        m = middles[(i // (len(onsets) * len(vowels))) % len(middles)]
        gender = "m" if i % 2 == 0 else "f"
        world = WORLDS[(i // 2) % 2]
        names.append(((o + v1 + m + ("o" if gender == "m" else "a")).capitalize(), gender, world))
    return names


NAMES: list[tuple[str, str, str]] = _make_names()
_NAME_RANK_SHIFT = 15  # Zipf-Mandelbrot p(r) ∝ 1/(r + 15): every name is rarer than any common noun
NAME_PROBS = 1.0 / (np.arange(1, len(NAMES) + 1) + _NAME_RANK_SHIFT)
NAME_PROBS = NAME_PROBS / NAME_PROBS.sum()


def _written(token: str, case: str) -> str:
    """A lower-case word written in `case`: "does-chase" -> "DOES-CHASE" / "Does-Chase"."""
    if case == "upper":
        return token.upper()
    if case == "title":
        return "-".join(part.capitalize() for part in token.split("-"))
    return token


def _forms(token: str, info: WordInfo) -> list[tuple[str, WordInfo]]:
    """A word in each of the three cases."""
    return [(_written(token, case), replace(info, case=case)) for case in CASES]


def _build_lexicon() -> dict[str, WordInfo]:
    lex: dict[str, WordInfo] = {t: WordInfo("SPECIAL", t) for t in SPECIAL_TOKENS}
    lex.update({p: WordInfo("PUNCT", p) for p in CLOSERS})
    entries: list[tuple[str, WordInfo]] = []
    entries += [(d, WordInfo("DET", d)) for d in _DETERMINERS]
    for world in WORLDS:
        for k, a in enumerate(_ADJECTIVES[world]):
            entries.append((a, WordInfo("ADJ", f"adj{k}", world=world)))
        for k, (sg, pl, g) in enumerate(_NOUNS[world]):
            entries += [(sg, WordInfo("NOUN", f"noun{k}", "sg", g, world)),
                        (pl, WordInfo("NOUN", f"noun{k}", "pl", g, world))]
        verbs = [(f"tverb{k}", v) for k, v in enumerate(_TRANSITIVE[world])] + \
                [(f"iverb{k}", v) for k, v in enumerate(_INTRANSITIVE[world])]
        for concept, (sg, pl) in verbs:
            entries += [(sg, WordInfo("VERB", concept, "sg", world=world, verb_form="stmt")),
                        (pl, WordInfo("VERB", concept, "pl", world=world, verb_form="stmt")),
                        (f"does-{pl}", WordInfo("VERB", concept, "sg", world=world, verb_form="quest")),
                        (f"do-{pl}", WordInfo("VERB", concept, "pl", world=world, verb_form="quest"))]
    entries += [(p, WordInfo("PREP", p)) for p in _PREPOSITIONS]
    entries += [(c, WordInfo("CONN", c)) for c in _CONNECTIVES]
    entries += [(a, WordInfo("ADV", a)) for a in _ADVERBS]
    entries.append(("that", WordInfo("REL", "that")))
    entries.append(("like", WordInfo("PREP", "like")))  # only ever introduces a repeated name
    entries += [(p, WordInfo("PRON", "pronoun", num, g)) for p, num, g in _PRONOUNS]
    for token, info in entries:
        for form, form_info in _forms(token, info):
            assert form not in lex, f"{form!r} twice in the lexicon"
            lex[form] = form_info
    for name, gender, world in NAMES:  # names are capitalised already: no shouted twin
        lex[name] = WordInfo("NAME", name, "sg", gender, world, case="title")
    return lex


LEXICON: dict[str, WordInfo] = _build_lexicon()
VOCAB: list[str] = list(LEXICON)  # id -> token; [PAD] is 0
TOKEN_TO_ID: dict[str, int] = {t: i for i, t in enumerate(VOCAB)}
_WORD_IDS = np.array([i for i, t in enumerate(VOCAB) if LEXICON[t].pos not in ("SPECIAL", "PUNCT")])
POS_TAGS = ("SPECIAL", "PUNCT", "DET", "ADJ", "NOUN", "NAME", "VERB", "PRON", "PREP", "CONN", "ADV", "REL")
POS_IDS = np.array([POS_TAGS.index(LEXICON[t].pos) for t in VOCAB])  # token id -> part-of-speech id
_BY_INFO = {w: t for t, w in LEXICON.items() if w.pos != "NAME"}
# token id -> the id of the same word without number (its singular); names and pronouns stay
LEMMA_IDS = np.array([TOKEN_TO_ID[_BY_INFO[replace(w, number="sg")]]
                      if w.number == "pl" and w.pos in ("NOUN", "VERB") else i
                      for i, w in enumerate(LEXICON.values())])
_FEATURES = ("number", "gender", "world", "verb_form", "case")


def _one_feature_swaps(token: str, features=_FEATURES) -> list[str]:
    """Forms of the same word (same concept) that differ in exactly one of `features`: each looks
    fine on its own and is only wrong relative to whatever governs it."""
    info = LEXICON[token]
    out = []
    for other, w in LEXICON.items():
        if w.pos != info.pos or other == token:
            continue
        if info.pos == "NAME":  # a name of the same world, other gender: the pronoun stops fitting
            if w.world == info.world and w.gender != info.gender:
                out.append(other)
        elif info.pos == "PRON":  # another pronoun (gender and number count as one feature)
            if w.case == info.case or ("case" in features and
                                         (w.number, w.gender) == (info.number, info.gender)):
                out.append(other)
        elif w.concept == info.concept:
            differ = [f for f in _FEATURES if getattr(w, f) != getattr(info, f)]
            if len(differ) == 1 and differ[0] in features:
                out.append(other)
    return out


# Word-level swaps touch the features that a *relation* governs (agreement, coreference, the
# question form); capitals and world are corrupted sentence-wide instead (see corrupt_batch).
_WORD_LEVEL_FEATURES = ("number", "gender", "verb_form")


def _swap_table(features) -> dict[int, np.ndarray]:
    """word id -> ids of its one-feature swaps (over `features`)."""
    return {TOKEN_TO_ID[t]: np.array([TOKEN_TO_ID[s] for s in _one_feature_swaps(t, features)],
                                     dtype=np.int64)
            for t in VOCAB if LEXICON[t].pos not in ("SPECIAL", "PUNCT")}


_SWAP_IDS = _swap_table(_WORD_LEVEL_FEATURES)
# ... and with the case as well: a single word in the wrong case, which only the closer can judge
_SWAP_IDS_WITH_CASE = _swap_table(_WORD_LEVEL_FEATURES + ("case",))
_TO_CASE = np.tile(np.arange(len(VOCAB)), (len(CASES), 1))  # [c, id] -> the same word in CASES[c]
_CASE_INDEX = np.array([CASES.index(w.case) for w in LEXICON.values()])  # id -> index in CASES
_FLIP_WORLD = np.arange(len(VOCAB))  # id -> id of the counterpart in the other world
for _t, _w in LEXICON.items():
    if _w.pos not in ("NAME", "SPECIAL", "PUNCT"):
        for _c, _case in enumerate(CASES):
            _TO_CASE[_c, TOKEN_TO_ID[_t]] = TOKEN_TO_ID[_BY_INFO[replace(_w, case=_case)]]
for _t, _w in LEXICON.items():
    if _w.world and _w.pos != "NAME":
        _other_world = WORLDS[1 - WORLDS.index(_w.world)]
        _FLIP_WORLD[TOKEN_TO_ID[_t]] = next(TOKEN_TO_ID[o] for o, v in LEXICON.items()
                                            if v == replace(_w, world=_other_world))


_NUMBER_SWAP = np.arange(len(VOCAB))  # verb id -> the same verb, other number
_PRONOUN_SWAPS: dict[int, np.ndarray] = {}  # pronoun id -> the other pronouns, same case
for _t, _w in LEXICON.items():
    if _w.pos == "VERB":
        _NUMBER_SWAP[TOKEN_TO_ID[_t]] = next(
            TOKEN_TO_ID[o] for o, v in LEXICON.items()
            if v == replace(_w, number="pl" if _w.number == "sg" else "sg"))
    elif _w.pos == "PRON":
        _PRONOUN_SWAPS[TOKEN_TO_ID[_t]] = np.array(
            [TOKEN_TO_ID[o] for o, v in LEXICON.items()
             if v.pos == "PRON" and v.case == _w.case and o != _t])


def _form(token: str, **change) -> str:
    """The form of `token` with some features changed, e.g. _form("fox", number="pl") == "foxes"."""
    info = LEXICON[token]
    want = replace(info, **change)
    if info.pos != "NAME":
        for t, w in LEXICON.items():
            if w == want:
                return t
    raise KeyError(f"no form of {token!r} with {change}")


def _counterpart(token: str, world: str) -> str:
    """The same word in the other world ("fox" -> "fish")."""
    info = LEXICON[token]
    for t, w in LEXICON.items():
        if w == replace(info, world=world):
            return t
    raise KeyError(f"{token!r} has no counterpart in world {world!r}")


# ----------------------------------------------------------------------------------------------
# Sentences


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
    # a rare word -> the common, informative word that tells what it is; -1 elsewhere (this
    # grammar gives no name such a word: all -1, and `analysis.heads.rare_word_score` is NaN)
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


class _Grammar:
    """The probabilistic grammar for one sentence. It never reuses a word, so the only repeat in
    a sentence is the planted one (a name named again)."""

    def __init__(self, rng: np.random.Generator, world: str, question: bool):
        self.rng, self.world, self.question = rng, world, question
        self.used: set[str] = set()
        names = [k for k, (_, _, w) in enumerate(NAMES) if w == world]
        self.name_ids = np.array(names)
        self.name_probs = NAME_PROBS[names] / NAME_PROBS[names].sum()

    def pick(self, options: list, key=lambda o: o):
        free = [o for o in options if key(o) not in self.used]
        choice = free[self.rng.integers(len(free))]
        self.used.add(key(choice))
        return choice

    def name(self) -> tuple[str, str]:
        while True:
            name, gender, _ = NAMES[self.rng.choice(self.name_ids, p=self.name_probs)]
            if name not in self.used:
                self.used.add(name)
                return name, gender

    def noun_phrase(self, b: _Builder, number: str, name_prob: float) -> tuple[int, str, str]:
        """Append DET ADJ{0,2} NOUN, or a NAME; return (index of the noun, number, gender)."""
        if number == "sg" and self.rng.random() < name_prob:
            name, gender = self.name()
            return b.add(name), "sg", gender
        sg, pl, gender = self.pick(_NOUNS[self.world], key=lambda n: n[0])
        n_adj = self.rng.choice(3, p=[0.4, 0.4, 0.2])
        b.add(self.pick(_DETERMINERS))
        for _ in range(n_adj):
            b.add(self.pick(_ADJECTIVES[self.world]))
        return b.add(sg if number == "sg" else pl), number, gender

    def verb(self, transitive: bool, number: str) -> str:
        sg, pl = self.pick((_TRANSITIVE if transitive else _INTRANSITIVE)[self.world])
        if self.question:
            return f"does-{pl}" if number == "sg" else f"do-{pl}"
        return sg if number == "sg" else pl


def _other(number: str) -> str:
    return "pl" if number == "sg" else "sg"


def _random_number(rng) -> str:
    return "sg" if rng.random() < 0.5 else "pl"


def _sentence(rng: np.random.Generator) -> Sentence:
    closer = CLOSERS[rng.choice(len(CLOSERS), p=CLOSER_PROBS)]
    world = WORLDS[rng.integers(len(WORLDS))]
    g = _Grammar(rng, world, question=closer == "?")
    b = _Builder()
    b.add(CLS)

    # Clause 1: SUBJECT (PP | relative clause)? VERB OBJECT
    subj_number = "sg" if rng.random() < 0.6 else "pl"
    subj, subj_number, _ = g.noun_phrase(b, subj_number, name_prob=SUBJECT_NAME_PROB)
    modifier = rng.choice(["none", "pp", "rel"], p=[0.25, 0.45, 0.3])
    distractor_number = _other(subj_number) if rng.random() < 0.8 else subj_number
    name_prob = 0.2
    if NAME_IN_MODIFIER and modifier != "none":  # the sentence's name goes here, not to the object
        distractor_number, name_prob = "sg", 1.0
    if modifier == "pp":
        b.add(g.pick(_PREPOSITIONS))
        g.noun_phrase(b, distractor_number, name_prob=name_prob)
    elif modifier == "rel":
        b.add("that")
        b.add(g.verb(True, subj_number), head=subj, rel="nsubj")
        g.noun_phrase(b, distractor_number, name_prob=name_prob)
    b.add(g.verb(True, subj_number), head=subj, rel="nsubj")
    if any(LEXICON[t].pos == "NAME" for t in b.tokens[1:]):
        obj, obj_number, obj_gender = g.noun_phrase(b, _random_number(rng), name_prob=0.4)
    else:  # every sentence names someone, so its world always has a truthful witness
        obj, obj_number, obj_gender = g.noun_phrase(b, "sg", name_prob=1.0)

    # Clause 2 (optional): CONN SUBJECT2 (PP)? ADV? VERB2 PRONOUN (like NAME)?; the pronoun
    # refers to the first clause's object; "like NAME" names a name of clause 1 again (a copy).
    if rng.random() < 0.85:
        b.add(g.pick(_CONNECTIVES))
        subj2, subj2_number, _ = g.noun_phrase(b, _random_number(rng), name_prob=0.0)
        if rng.random() < 0.3:
            b.add(g.pick(_PREPOSITIONS))
            g.noun_phrase(b, _other(subj2_number), name_prob=0.0)
        if rng.random() < 0.5:
            b.add(g.pick(_ADVERBS))
        b.add(g.verb(True, subj2_number), head=subj2, rel="nsubj")
        pronoun = "them" if obj_number == "pl" else {"m": "him", "f": "her", "n": "it"}[obj_gender]
        b.add(pronoun, coref=obj)
        names = [i for i, t in enumerate(b.tokens) if LEXICON[t].pos == "NAME"]
        if names and rng.random() < REPEAT_PROB:  # "like NAME": a name can only come back here
            b.add("like")
            earlier = names[rng.integers(len(names))]
            b.add(b.tokens[earlier], repeat_of=earlier)
    b.add(closer)
    b.add(SEP)

    case = CASES.index(REGISTER_CASE[closer])  # every word but the names in the closer's case
    b.tokens = [VOCAB[_TO_CASE[case, TOKEN_TO_ID[t]]] for t in b.tokens]
    infos = [LEXICON[t] for t in b.tokens]
    return Sentence(
        tokens=b.tokens, pos=[w.pos for w in infos], head=b.head, rel=b.rel, coref=b.coref,
        repeat_of=b.repeat_of, rare_context=b.rare_context,
        is_delimiter=[w.pos in ("SPECIAL", "PUNCT") for w in infos],
        is_rare=[w.pos == "NAME" for w in infos], sentence_type=closer, world=world)


def generate(n_sentences: int, seed: int = 0) -> list[Sentence]:
    """n_sentences sentences drawn from the grammar; the same seed gives the same sentences."""
    rng = np.random.default_rng(seed)
    return [_sentence(rng) for _ in range(n_sentences)]


# ----------------------------------------------------------------------------------------------
# Encoding and the denoising objective


def tokenize(text: str) -> list[str]:
    """Your own sentence as the model's tokens: words split on spaces, the closing '.', '?' or '!'
    split off, [CLS] and [SEP] added, and every word but the names written in the case that the
    sentence's (last) closer asks for: lower case for '.' (and for no closer), capitals for '!',
    Title Case for '?'. So you need not type the toy language's conventions yourself.

    "The quick brown fox jumps over the lazy dog." -> [CLS] the quick ... dog . [SEP]
    "does-chase my fox Balo?" -> [CLS] Does-Chase My Fox Balo ? [SEP]
    Raises ValueError naming every word outside the toy vocabulary.
    (To give the model a word in the wrong case on purpose, pass a token list to
    `toy_model.ToyTransformer.attention` instead.)
    """
    if not isinstance(text, str):
        raise TypeError(f"tokenize needs a str; got {type(text).__name__}")
    words = [w for w in text.replace("[CLS]", " ").replace("[SEP]", " ").split()]
    tokens = []
    for word in words:
        closer = word[-1] if len(word) > 1 and word[-1] in CLOSERS else None
        word = word[:-1] if closer else word
        if word.lower() in TOKEN_TO_ID and LEXICON[word.lower()].pos not in ("NAME", "SPECIAL"):
            word = word.lower()  # written in the closer's case below
        tokens.append(word)
        if closer:
            tokens.append(closer)
    if not tokens:
        raise ValueError("the sentence is empty: type a few words, e.g. 'the quick fox runs .'")
    unknown = [t for t in tokens if t not in TOKEN_TO_ID]
    if unknown:
        nouns = sorted(t for t, w in LEXICON.items() if w.pos == "NOUN" and w.case == "lower")[:8]
        raise ValueError(f"not in the toy vocabulary: {', '.join(unknown)}. The toy language has "
                         f"{len(VOCAB)} tokens, e.g. the nouns {', '.join(nouns)}; "
                         "see mha_course.models.toy_language.VOCAB")
    closers = [t for t in tokens if t in CLOSERS]
    case = CASES.index(REGISTER_CASE[closers[-1] if closers else "."])
    return [CLS, *(VOCAB[_TO_CASE[case, TOKEN_TO_ID[t]]] for t in tokens), SEP]


def encode(tokens: list[str]) -> list[int]:
    """Token strings to ids; an unknown token raises a KeyError that names it."""
    unknown = [t for t in tokens if t not in TOKEN_TO_ID]
    if unknown:
        raise KeyError(f"not in the toy vocabulary: {unknown} (see mha_course.models.toy_language.VOCAB)")
    return [TOKEN_TO_ID[t] for t in tokens]


def decode(ids) -> list[str]:
    return [VOCAB[int(i)] for i in ids]


def pad_batch(sentences: list[Sentence]) -> tuple[np.ndarray, np.ndarray]:
    """ids (batch, n) padded with [PAD] = 0, and lengths (batch,)."""
    lengths = np.array([len(s) for s in sentences])
    ids = np.zeros((len(sentences), lengths.max()), dtype=np.int64)  # (batch, n)
    for b, s in enumerate(sentences):
        ids[b, :len(s)] = encode(s.tokens)
    return ids, lengths


def _corruptible(sentences: list[Sentence], n: int) -> np.ndarray:
    """(batch, n): word positions, less the first mention of each name."""
    out = np.zeros((len(sentences), n), dtype=bool)
    for b, s in enumerate(sentences):
        for i, (delim, rare, rep) in enumerate(zip(s.is_delimiter, s.is_rare, s.repeat_of)):
            out[b, i] = not delim and (not rare or rep >= 0)
    return out


def corrupt_batch(sentences: list[Sentence], rng: np.random.Generator, rate: float = 0.3,
                  kinds: tuple[float, float, float] = (1 / 3, 1 / 3, 1 / 3),
                  sentence_flip: float = 0.2, transpose: float = 0.5,
                  relation_swap: float = 0.0, protect_governors: bool = False,
                  case_flip: float | None = None, swap_case: bool = False,
                  case_flip_share: float = 1.0,
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The denoising objective: (inputs, targets, loss_mask, lengths), all (batch, n) but lengths.

    Sentence-wide: with probability `sentence_flip` every word changes case (to the next case in
    CASES with probability 2/3, the one after with 1/3), and independently with the same probability every noun, verb and
    adjective moves to the other world. Then the neighbours all agree with each other and are all wrong: only the closing
    delimiter (for case) and the names (for world) still tell the truth.
    Word order: with probability `transpose` a sentence has two neighbouring words swapped.
    Word-wide: each corruptible word is corrupted with probability `rate`, as [MASK], as a
    one-feature swap (wrong number, gender or question form) or as a random word, in the
    proportions `kinds`. `targets` are the clean ids; `loss_mask` covers every word position.

    Relations, in the direction the head metrics read them: with probability `relation_swap`
    each dependent (a verb, a pronoun) takes the wrong number / the wrong pronoun, so it must
    look up its governor (subject, antecedent). With `protect_governors` the governors are never
    one-feature swapped (they are [MASK]ed instead), so the arrow of evidence points one way.
    `case_flip` (default: `sentence_flip`) sets the sentence-wide case flip on its own;
    `swap_case` lets the one-feature swaps change a single word's case too; `case_flip_share` < 1
    flips only that share of the words of a flipped sentence, so that the neighbours' case is no
    guide and every word must consult the closer itself.
    `transpose` is the expected number of neighbour swaps per sentence (may exceed 1).
    """
    clean, lengths = pad_batch(sentences)
    words = np.isin(clean, _WORD_IDS)  # (batch, n)
    inputs = clean.copy()
    flip_case = rng.random(len(sentences)) < (sentence_flip if case_flip is None else case_flip)  # (batch,)
    flip_case = np.repeat(flip_case[:, None], clean.shape[1], axis=1)  # (batch, n)
    if case_flip_share < 1:
        flip_case &= rng.random(clean.shape) < case_flip_share
    # each flipped sentence moves to another case: a draw over all three, moved on to the next
    # case when it hits the sentence's own (names and delimiters stay as they are)
    drawn = rng.integers(len(CASES), size=(len(sentences), 1))  # (batch, 1)
    case_now = _CASE_INDEX[clean]  # (batch, n)
    new_case = np.where(drawn == case_now, (case_now + 1) % len(CASES), drawn)  # (batch, n)
    inputs[flip_case] = _TO_CASE[new_case[flip_case], inputs[flip_case]]
    flip_world = rng.random(len(sentences)) < sentence_flip  # (batch,)
    inputs[flip_world] = _FLIP_WORLD[inputs[flip_world]]
    corrupt = _corruptible(sentences, clean.shape[1]) & (rng.random(clean.shape) < rate)
    kind = rng.choice(3, size=clean.shape, p=kinds)  # 0 mask, 1 one-feature swap, 2 random word
    if protect_governors:
        governed = _governors(sentences, clean.shape[1])  # (batch, n)
        kind[governed & (kind == 1)] = 0
    inputs[corrupt & (kind == 0)] = TOKEN_TO_ID[MASK]
    for b, i in zip(*np.nonzero(corrupt & (kind == 1))):
        options = (_SWAP_IDS_WITH_CASE if swap_case else _SWAP_IDS)[int(inputs[b, i])]
        if len(options) == 0:  # a word with no alternative form: replace it at random
            options = _WORD_IDS
        inputs[b, i] = options[rng.integers(len(options))]
    random_at = corrupt & (kind == 2)
    inputs[random_at] = _WORD_IDS[rng.integers(len(_WORD_IDS), size=int(random_at.sum()))]
    if relation_swap > 0:
        _swap_dependents(sentences, inputs, corrupt, rng, relation_swap)
    n_swaps = int(transpose) + (rng.random(len(sentences)) < transpose % 1)  # (batch,)
    for k in range(int(np.ceil(transpose))):
        _transpose(sentences, inputs, np.zeros_like(words), rng, n_swaps > k)
    return inputs, clean, words, lengths


def _governors(sentences, n: int) -> np.ndarray:
    """(batch, n): positions that some token depends on (a subject, an antecedent)."""
    out = np.zeros((len(sentences), n), dtype=bool)
    for b, s in enumerate(sentences):
        for h in s.head + s.coref:
            if h >= 0:
                out[b, h] = True
    return out


def _swap_dependents(sentences, inputs, already, rng, p: float) -> None:
    """In place: each verb with a subject takes the other number, each pronoun with an
    antecedent becomes another pronoun, with probability p (skipping corrupted positions)."""
    for b, s in enumerate(sentences):
        for i in range(len(s)):
            if already[b, i] or (s.head[i] < 0 and s.coref[i] < 0) or rng.random() >= p:
                continue
            token = VOCAB[inputs[b, i]]
            info = LEXICON[token]
            if info.pos == "VERB":
                inputs[b, i] = _NUMBER_SWAP[inputs[b, i]]
            elif info.pos == "PRON":
                options = _PRONOUN_SWAPS[inputs[b, i]]
                inputs[b, i] = options[rng.integers(len(options))]


def _transpose(sentences, inputs, at, rng, which) -> None:
    """In each sentence b with which[b], swap one random pair of neighbouring words of different
    parts of speech (so that the swap breaks the word order), in place; mark both in `at`."""
    for b in np.nonzero(which)[0]:
        s = sentences[b]
        pairs = [i for i in range(1, len(s) - 2)
                 if not s.is_delimiter[i] and not s.is_delimiter[i + 1] and s.pos[i] != s.pos[i + 1]]
        if pairs:
            i = pairs[rng.integers(len(pairs))]
            inputs[b, i], inputs[b, i + 1] = inputs[b, i + 1], inputs[b, i]
            at[b, i] = at[b, i + 1] = True


# Each sub-task corrupts tokens that depend on one relation, in a way only that relation can
# undo; its accuracy is the fraction of those tokens restored exactly.
SUBTASKS = ("order", "agreement", "coreference", "copy", "register", "world")


def subtask_batch(sentences: list[Sentence], subtask: str, rng: np.random.Generator,
                  rate: float = 0.3) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(inputs, targets, eval_mask, lengths) for one sub-task.

    order: one pair of neighbouring words of different parts of speech trades places (both
    count); agreement: one verb per sentence gets the other number (the other verbs stay right,
    so they cannot outvote the subject); coreference: the pronoun becomes another pronoun; copy: the repeated name
    becomes [MASK]; register: a fraction `rate` of the words (names excepted) change case;
    world: a fraction `rate` of the nouns, verbs and adjectives move to the other world.
    """
    if subtask not in SUBTASKS:
        raise ValueError(f"unknown sub-task {subtask!r}; choose one of {SUBTASKS}")
    clean, lengths = pad_batch(sentences)
    inputs = clean.copy()
    at = np.zeros(clean.shape, dtype=bool)  # (batch, n)
    if subtask == "order":
        _transpose(sentences, inputs, at, rng, np.ones(len(sentences), dtype=bool))
        return inputs, clean, at, lengths
    for b, s in enumerate(sentences):
        other_world = WORLDS[1 - WORLDS.index(s.world)]
        verbs = [i for i, r in enumerate(s.rel) if r == "nsubj"]
        one_verb = verbs[rng.integers(len(verbs))] if verbs else -1
        for i, tok in enumerate(s.tokens):
            w = LEXICON[tok]
            new = None
            if subtask == "agreement" and i == one_verb:
                new = _form(tok, number=_other(w.number))
            elif subtask == "coreference" and s.coref[i] >= 0:
                options = [p for p in _one_feature_swaps(tok) if LEXICON[p].case == w.case]
                new = options[rng.integers(len(options))]
            elif subtask == "copy" and s.repeat_of[i] >= 0:
                new = MASK
            elif subtask == "register" and w.pos not in ("NAME", "SPECIAL", "PUNCT") \
                    and rng.random() < rate:
                new = _form(tok, case=CASES[(CASES.index(w.case) + rng.integers(1, len(CASES)))
                                            % len(CASES)])
            elif subtask == "world" and w.world and w.pos != "NAME" and rng.random() < rate:
                new = _counterpart(tok, other_world)
            if new is not None:
                inputs[b, i] = TOKEN_TO_ID[new]
                at[b, i] = True
    return inputs, clean, at, lengths
