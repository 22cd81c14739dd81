"""The induction model's configuration: model shape, training settings and the data knobs;
saved as config.json next to the weights."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["InductionConfig"]


@dataclass
class InductionConfig:
    """A small causal attention-only Transformer and how it is trained on repeated sequences.

    The defaults are the shipped checkpoint's recipe (2 layers): why each is what it is, with the
    per-seed measurements and the command that makes them again, is in docs/design/induction.md.
    Token 0 is BOS (every sequence starts with it); tokens 1 .. vocab_size - 1 are random.
    """
    n_layers: int = 2
    n_heads: int = 2
    d_model: int = 64
    d_head: int = 16
    vocab_size: int = 64
    n_ctx: int = 32
    mlp: bool = False  # an MLP after each attention layer (off: attention only)
    d_mlp: int = 256
    # training
    steps: int = 400
    batch_size: int = 64
    lr: float = 2e-2
    warmup: int = 50  # steps of linear warm-up, then constant
    weight_decay: float = 0.01
    # the data (data.repeated_sequences): a segment of min_segment .. max_segment random tokens
    # occurs twice in each training sequence (or, in a share `periodic` of them, repeats until
    # the end); everything else is random
    min_segment: int = 2
    max_segment: int | None = None  # None: (n_ctx - 1) // 2, the longest that fits twice
    periodic: float = 0.5

    def __post_init__(self):
        checks = {"n_layers": 1, "n_heads": 1, "d_model": 1, "d_head": 1, "vocab_size": 3,
                  "n_ctx": 5, "d_mlp": 1, "steps": 0, "batch_size": 1, "warmup": 0,
                  "min_segment": 1}
        for name, least in checks.items():
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise ValueError(f"InductionConfig.{name} must be an int >= {least}; "
                                 f"got {value!r}")
        fits = (self.n_ctx - 1) // 2  # a segment occurs twice after BOS
        longest = fits if self.max_segment is None else self.max_segment
        if not self.min_segment <= longest <= fits:
            raise ValueError(f"need min_segment <= max_segment <= (n_ctx - 1) // 2 = {fits}; got "
                             f"min_segment={self.min_segment}, max_segment={self.max_segment}")
        if not 0.0 <= self.periodic <= 1.0:
            raise ValueError(f"periodic must be a probability in [0, 1]; got {self.periodic}")
        if not self.lr > 0 or self.weight_decay < 0:
            raise ValueError(f"lr must be > 0 and weight_decay >= 0; got lr={self.lr}, "
                             f"weight_decay={self.weight_decay}")
