"""A toy language with planted relations, so that we know what each attention head *should* find.

Every sentence comes with gold annotations aligned with its tokens (special tokens included):

    [CLS] the quick fox of their lazy dogs chases Balo because my wolf often follows him
          like Balo . [SEP]

Each relation is something a word must *check* to know that it is the right word:

- word order (local): the grammar fixes which part of speech may follow which, so a word whose
  neighbours have been swapped ("the fox quick brown") can only be put back by looking at them.
- agreement (syntactic): a verb agrees in number with its subject, a common noun that may sit far
  to the left behind a prepositional phrase or a relative clause whose noun has the *other*
  number. (Subjects are never names: a name is always singular, so a verb would not need to find
  it.)
- coreference: the object pronoun of the second clause refers to the *object* of the first clause
  and agrees with it in gender and number (him / her / it / them); both subjects are distractors.
- copy: the second clause may end "like NAME", naming again a name of the first clause.
- register (delimiters): the closing delimiter sets the form of every word. A statement ('.') is
  written in lower case, a shouted sentence ('!') in capitals ("THE QUICK FOX ... !"), a question
  ('?') in Title Case with the verb forms "Does-Chase" / "Do-Chase" ("The Quick Fox Does-Chase
  Balo ?"); names are always capitalised. Every word needs the closer's full identity.
- world (rare words as witnesses): a sentence happens on land or at sea, and its nouns, verbs
  and adjectives come from that world's vocabulary ("fox, chases, dusty" / "whale, tows, salty").
  Names belong to one world too; they are the rare words, drawn from a long Zipfian tail.
- naming (a rare word told by a common word): clause 1 may end "alongside NAME the ADJ* NOUN"
  (`Grammar.apposition_prob`, 0.5 by default), an apposition whose person noun says what the name
  is ("Tila the old queen"): a king, a queen, a boy, a girl (or a sailor, a mermaid, ...), so the
  noun fixes the name's gender. The noun sits 2 to 5 words to the name's right, and no pronoun
  or "like NAME" refers to that name, so the noun is its only witness. `Sentence.rare_context`
  points from the name to the noun (the subject's rare-word relation).

The training objective is denoising (`corrupt_batch`): about 30% of the word tokens are masked,
swapped for the same word with one feature wrong (number, gender, question form), or replaced at
random; whole sentences change case or world; neighbours trade places; verbs and pronouns take the
wrong number or pronoun; a name in apposition becomes its partner of the other gender in the same
world (`NAME_PARTNER_IDS`), which looks like any name and only the noun of its apposition can
undo. The loss sits on *every* word position, so each clean-looking token must be checked against
whatever governs it. Delimiters and first mentions of names are otherwise never corrupted: they
are the reliable witnesses of register and world, and every sentence has a name.

The package, one concept per module: `lexicon` (the vocabulary and its tables), `grammar`
(`Grammar`, `Sentence`, `generate`), `text` (`tokenize`, `encode`, `decode`, `pad_batch`) and
`corruption` (`corrupt_batch`, `subtask_batch`, `SUBTASKS`). Why the language and its objective
are what they are, with the measurements behind each choice: docs/design/toy_language.md.
"""

from mha_course.models.toy_language.corruption import SUBTASKS, corrupt_batch, subtask_batch
from mha_course.models.toy_language.grammar import Grammar, Sentence, generate
from mha_course.models.toy_language.lexicon import (
                                                    APPOSITION,
                                                    APPOSITION_IDS,
                                                    CASES,
                                                    CLOSERS,
                                                    CLS,
                                                    LEMMA_IDS,
                                                    LEXICON,
                                                    MASK,
                                                    NAME_PARTNER_IDS,
                                                    NAME_PROBS,
                                                    NAME_RANK_SHIFT,
                                                    NAMES,
                                                    PAD,
                                                    POS_IDS,
                                                    POS_TAGS,
                                                    REGISTER_CASE,
                                                    SEP,
                                                    SPECIAL_TOKENS,
                                                    STEM_IDS,
                                                    TOKEN_TO_ID,
                                                    VOCAB,
                                                    WORLDS,
                                                    WordInfo,
)
from mha_course.models.toy_language.text import decode, encode, pad_batch, tokenize

__all__ = [
    "Grammar", "Sentence", "WordInfo", "LEXICON", "VOCAB", "TOKEN_TO_ID", "PAD", "CLS", "SEP",
    "MASK", "SPECIAL_TOKENS", "CLOSERS", "CASES", "REGISTER_CASE", "WORLDS", "NAMES", "NAME_PROBS",
    "NAME_RANK_SHIFT", "NAME_PARTNER_IDS", "SUBTASKS", "POS_TAGS", "POS_IDS", "LEMMA_IDS",
    "STEM_IDS", "APPOSITION", "APPOSITION_IDS", "generate", "tokenize", "encode", "decode",
    "pad_batch", "corrupt_batch", "subtask_batch",
]
