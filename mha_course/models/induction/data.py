"""Sequences for the induction model: random tokens in which a segment repeats.

Token 0 is BOS and starts every sequence; the other positions hold tokens 1 .. vocab_size - 1.
A model that predicts the next token can do no better than chance (log(vocab_size - 1)) on a
random token, except inside the second occurrence of a segment, where the first occurrence tells
the answer: [A B C] ... [A B -> C]. Copying it needs two heads in two layers (an induction
circuit, Elhage et al. 2021): one that writes "my previous token was A" into B's position, and
one that, at the second A, looks for the position whose previous token was A.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BOS", "repeated_sequences", "doubled_sequences"]

BOS = 0  # the first token of every sequence


def _check(batch, n, vocab_size, rng, least_n: int) -> None:
    for name, value, least in (("batch", batch, 1), ("n", n, least_n),
                               ("vocab_size", vocab_size, 3)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < least:
            raise ValueError(f"{name} must be an int >= {least}; got {value!r}")
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator (np.random.default_rng(seed)); "
                        f"got {type(rng).__name__}")


def repeated_sequences(batch: int, n: int, vocab_size: int, rng: np.random.Generator,
                       min_segment: int = 2, max_segment: int | None = None,
                       periodic: float = 0.0) -> np.ndarray:
    """(batch, n) int64 training sequences: BOS, then random tokens in which a segment repeats,
    [BOS ... A B C ... A B C ...].

    Per row: a segment length L uniform in min_segment .. max_segment (None: (n - 1) // 2, the
    longest that fits twice after BOS), the other positions uniform random tokens
    1 .. vocab_size - 1, and one of two layouts:
    - twice (probability 1 - periodic): the segment occurs twice, at starts s1 < s2 with
      s2 >= s1 + L, uniform among the places where both copies fit (a random gap between them);
    - periodic (probability `periodic`): from a random start s1, the segment repeats until the
      sequence ends, [BOS ... A B C A B C A B ...].
    The random gaps and lengths mean that no fixed offset (a positional head) finds the earlier
    copy: only the tokens do. The periodic rows put earlier copies at late positions too, where
    two copies rarely fit: without them, a previous-token head has no reason to form there (the
    measurements: docs/design/induction.md).
    """
    _check(batch, n, vocab_size, rng, 5)
    fits = (n - 1) // 2
    longest = fits if max_segment is None else max_segment
    if not 1 <= min_segment <= longest <= fits:
        raise ValueError(f"need 1 <= min_segment <= max_segment <= (n - 1) // 2 = {fits}; got "
                         f"min_segment={min_segment}, max_segment={max_segment}")
    if not 0.0 <= periodic <= 1.0:
        raise ValueError(f"periodic must be a probability in [0, 1]; got {periodic}")
    seqs = rng.integers(1, vocab_size, size=(batch, n), dtype=np.int64)  # (batch, n)
    seqs[:, 0] = BOS
    lengths = rng.integers(min_segment, longest + 1, size=batch)  # (batch,)
    is_periodic = rng.random(batch) < periodic  # (batch,)
    for b, L in enumerate(lengths):
        free = n - 1 - 2 * L  # the places left around two copies after BOS
        if is_periodic[b]:
            s1 = 1 + rng.integers(0, free + 1)
            for k in range(s1 + L, n):
                seqs[b, k] = seqs[b, k - L]
        else:
            gaps = np.sort(rng.integers(0, free + 1, size=2))  # before copy 1, before copy 2
            s1 = 1 + gaps[0]
            s2 = s1 + L + (gaps[1] - gaps[0])
            seqs[b, s2:s2 + L] = seqs[b, s1:s1 + L]
    return seqs


def doubled_sequences(batch: int, n: int, vocab_size: int,
                      rng: np.random.Generator) -> np.ndarray:
    """(batch, n) int64 held-out sequences on which heads are measured: BOS, then m = n // 2
    distinct random tokens r_1 .. r_m, then the same tokens again, cut at n,
    [BOS r_1 .. r_m r_1 .. r_(n-1-m)] (Olsson et al. 2022's repeated random tokens).

    The tokens of a half are distinct (vocab_size - 1 >= n // 2 is needed), so every token of
    the second half occurred exactly once before, and no token of the first half did.
    """
    _check(batch, n, vocab_size, rng, 3)
    m = n // 2
    if vocab_size - 1 < m:
        raise ValueError(f"doubled_sequences needs vocab_size - 1 >= n // 2 = {m} distinct "
                         f"tokens; got vocab_size={vocab_size}")
    half = np.argsort(rng.random((batch, vocab_size - 1)), axis=1)[:, :m] + 1  # (batch, m)
    seqs = np.concatenate([np.full((batch, 1), BOS), half, half], axis=1)  # (batch, 1 + 2m)
    return seqs[:, :n].astype(np.int64)  # (batch, n)
