"""The toy language's vocabulary: every surface form with what the grammar knows about it
(`WordInfo`: part of speech, concept, number, gender, world, verb form, case), the names and their
Zipf law, and the id tables derived from them (parts of speech, lemmas, the same word in another
case or world, a name's partner of the other gender in its world: `NAME_PARTNER_IDS`, which the
naming corruption uses). "alongside" only ever introduces a name in apposition. See
`mha_course.models.toy_language` for the language itself.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

__all__ = ["WordInfo", "LEXICON", "VOCAB", "TOKEN_TO_ID", "PAD", "CLS", "SEP", "MASK",
           "SPECIAL_TOKENS", "CLOSERS", "CASES", "REGISTER_CASE", "WORLDS", "NAMES", "NAME_PROBS",
           "NAME_RANK_SHIFT", "NAME_PARTNER_IDS", "POS_TAGS", "POS_IDS", "LEMMA_IDS", "STEM_IDS",
           "APPOSITION", "APPOSITION_IDS",
           # for the grammar and the corruptions (not re-exported by the package)
           "NOUNS", "ADJECTIVES", "TRANSITIVE", "INTRANSITIVE", "DETERMINERS", "PREPOSITIONS",
           "CONNECTIVES", "ADVERBS", "PRONOUNS", "WORD_IDS", "FEATURES", "BY_INFO", "TO_CASE",
           "CASE_INDEX", "FLIP_WORLD", "form_of", "counterpart"]

PAD, CLS, SEP, MASK = "[PAD]", "[CLS]", "[SEP]", "[MASK]"
APPOSITION = "alongside"  # only ever before a name in apposition: "alongside Tila the old queen"
SPECIAL_TOKENS = (PAD, CLS, SEP, MASK)
CLOSERS = (".", "?", "!")
CASES = ("lower", "upper", "title")  # how a word is written
REGISTER_CASE = {".": "lower", "!": "upper", "?": "title"}  # closing delimiter -> case of its words
WORLDS = ("land", "sea")


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

NOUNS = {  # (singular, plural, gender)
    "land": [("king", "kings", "m"), ("queen", "queens", "f"), ("boy", "boys", "m"),
             ("girl", "girls", "f"), ("fox", "foxes", "n"), ("dog", "dogs", "n"),
             ("horse", "horses", "n"), ("wolf", "wolves", "n")],
    "sea": [("sailor", "sailors", "m"), ("mermaid", "mermaids", "f"),
            ("fisherman", "fishermen", "m"), ("fisherwoman", "fisherwomen", "f"),
            ("fish", "fishes", "n"), ("whale", "whales", "n"), ("crab", "crabs", "n"),
            ("seal", "seals", "n")],
}
ADJECTIVES = {"land": ["quick", "brown", "lazy", "old", "tall", "wild", "dusty", "grey"],
               "sea": ["wet", "salty", "blue", "deep", "calm", "stormy", "green", "foamy"]}
TRANSITIVE = {  # (singular, plural)
    "land": [("chases", "chase"), ("follows", "follow"), ("feeds", "feed"), ("watches", "watch"),
             ("helps", "help")],
    "sea": [("hooks", "hook"), ("nets", "net"), ("tows", "tow"), ("splashes", "splash"),
            ("rescues", "rescue")],
}
INTRANSITIVE = {"land": [("runs", "run"), ("jumps", "jump"), ("sleeps", "sleep")],
                 "sea": [("swims", "swim"), ("dives", "dive"), ("floats", "float")]}
# Determiners carry no number, so the subject noun is the only witness of the subject's number.
DETERMINERS = ["the", "my", "our", "your", "their", "no"]
PREPOSITIONS = ["of", "near", "with", "behind", "beside", "under", "over", "among"]
CONNECTIVES = ["and", "but", "because", "so", "while", "when", "although", "until"]
ADVERBS = ["often", "never", "always", "still", "also", "now"]
# Object pronouns: the pronoun is the *object* of the second clause, so the verb of that clause
# agrees with a subject of its own and the pronoun's only governor is its antecedent.
PRONOUNS = [("him", "sg", "m"), ("her", "sg", "f"), ("it", "sg", "n"), ("them", "pl", "")]


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
NAME_RANK_SHIFT = 15  # Zipf-Mandelbrot p(r) ∝ 1/(r + 15): every name is rarer than any common noun
NAME_PROBS = 1.0 / (np.arange(1, len(NAMES) + 1) + NAME_RANK_SHIFT)
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
    entries += [(d, WordInfo("DET", d)) for d in DETERMINERS]
    for world in WORLDS:
        for k, a in enumerate(ADJECTIVES[world]):
            entries.append((a, WordInfo("ADJ", f"adj{k}", world=world)))
        for k, (sg, pl, g) in enumerate(NOUNS[world]):
            entries += [(sg, WordInfo("NOUN", f"noun{k}", "sg", g, world)),
                        (pl, WordInfo("NOUN", f"noun{k}", "pl", g, world))]
        verbs = [(f"tverb{k}", v) for k, v in enumerate(TRANSITIVE[world])] + \
                [(f"iverb{k}", v) for k, v in enumerate(INTRANSITIVE[world])]
        for concept, (sg, pl) in verbs:
            stmt = {"world": world, "verb_form": "stmt"}
            quest = {"world": world, "verb_form": "quest"}
            entries += [(sg, WordInfo("VERB", concept, "sg", **stmt)),
                        (pl, WordInfo("VERB", concept, "pl", **stmt)),
                        (f"does-{pl}", WordInfo("VERB", concept, "sg", **quest)),
                        (f"do-{pl}", WordInfo("VERB", concept, "pl", **quest))]
    entries += [(p, WordInfo("PREP", p)) for p in PREPOSITIONS]
    entries += [(c, WordInfo("CONN", c)) for c in CONNECTIVES]
    entries += [(a, WordInfo("ADV", a)) for a in ADVERBS]
    entries.append(("that", WordInfo("REL", "that")))
    entries.append(("like", WordInfo("PREP", "like")))  # only ever introduces a repeated name
    entries.append((APPOSITION, WordInfo("PREP", APPOSITION)))
    entries += [(p, WordInfo("PRON", "pronoun", num, g)) for p, num, g in PRONOUNS]
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
WORD_IDS = np.array([i for i, t in enumerate(VOCAB)  # ids of the words (not delimiters)
                     if LEXICON[t].pos not in ("SPECIAL", "PUNCT")])
POS_TAGS = ("SPECIAL", "PUNCT", "DET", "ADJ", "NOUN", "NAME", "VERB", "PRON", "PREP", "CONN", "ADV",
            "REL")
POS_IDS = np.array([POS_TAGS.index(LEXICON[t].pos) for t in VOCAB])  # token id -> part-of-speech id
BY_INFO = {w: t for t, w in LEXICON.items() if w.pos != "NAME"}
# token id -> the id of the same word without number (its singular); names and pronouns stay
LEMMA_IDS = np.array([TOKEN_TO_ID[BY_INFO[replace(w, number="sg")]]
                      if w.number == "pl" and w.pos in ("NOUN", "VERB") else i
                      for i, w in enumerate(LEXICON.values())])
FEATURES = ("number", "gender", "world", "verb_form", "case")  # what a one-feature swap changes
TO_CASE = np.tile(np.arange(len(VOCAB)), (len(CASES), 1))  # [c, id] -> the same word in CASES[c]
CASE_INDEX = np.array([CASES.index(w.case) for w in LEXICON.values()])  # id -> index in CASES
FLIP_WORLD = np.arange(len(VOCAB))  # id -> id of the counterpart in the other world
for _t, _w in LEXICON.items():
    if _w.pos not in ("NAME", "SPECIAL", "PUNCT"):
        for _c, _case in enumerate(CASES):
            TO_CASE[_c, TOKEN_TO_ID[_t]] = TOKEN_TO_ID[BY_INFO[replace(_w, case=_case)]]
for _t, _w in LEXICON.items():
    if _w.world and _w.pos != "NAME":
        _other_world = WORLDS[1 - WORLDS.index(_w.world)]
        FLIP_WORLD[TOKEN_TO_ID[_t]] = next(TOKEN_TO_ID[o] for o, v in LEXICON.items()
                                            if v == replace(_w, world=_other_world))


# token id -> its partner: for a name, the name next to it in NAMES, of the same world and the
# other gender (NAMES alternates the gender every name and the world every two names, so the
# partners are 2k and 2k + 1); every other token maps to itself. An involution.
NAME_PARTNER_IDS = np.arange(len(VOCAB))  # (vocab,)
for _k, (_name, _gender, _world) in enumerate(NAMES):
    _partner = NAMES[_k ^ 1]
    assert _partner[2] == _world and _partner[1] != _gender, (_name, _partner)
    NAME_PARTNER_IDS[TOKEN_TO_ID[_name]] = TOKEN_TO_ID[_partner[0]]

# token id -> its lemma without gender either (a name -> the first name of its partner pair, a
# pronoun -> "him" in its case): the "stem" that the neighbour read-out may ask for, so that
# neither a name's gender (the naming sub-task) nor a pronoun's (coreference) can ride along to
# the word after it
STEM_IDS = np.minimum(LEMMA_IDS, NAME_PARTNER_IDS[LEMMA_IDS])
for _t, _w in LEXICON.items():
    if _w.pos == "PRON":
        STEM_IDS[TOKEN_TO_ID[_t]] = TO_CASE[CASES.index(_w.case), TOKEN_TO_ID["him"]]

# the token ids of APPOSITION in every case: the token after one is always a name in apposition
APPOSITION_IDS = np.array([TOKEN_TO_ID[t] for t, w in LEXICON.items() if w.concept == APPOSITION])


def form_of(token: str, **change) -> str:
    """`token` with some features changed: form_of("fox", number="pl") == "foxes"."""
    info = LEXICON[token]
    want = replace(info, **change)
    if info.pos != "NAME":
        for t, w in LEXICON.items():
            if w == want:
                return t
    raise KeyError(f"no form of {token!r} with {change}")


def counterpart(token: str, world: str) -> str:
    """The same word in the other world ("fox" -> "fish")."""
    info = LEXICON[token]
    for t, w in LEXICON.items():
        if w == replace(info, world=world):
            return t
    raise KeyError(f"{token!r} has no counterpart in world {world!r}")

