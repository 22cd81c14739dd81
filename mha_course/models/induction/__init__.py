"""The induction model: a small causal attention-only Transformer trained on random tokens in
which a segment repeats, where a previous-token head (layer 0) and an induction head (layer 1)
form (Elhage et al. 2021; Olsson et al. 2022). `config` (InductionConfig), `model`
(AttnOnlyTransformer: `run() -> Cache`, `attention()`, `weights()` for `analysis.circuits`),
`data` (repeated and doubled sequences), `training` (the loop, per-position losses) and
`checkpoint` (save, load, the shipped checkpoint).

    from mha_course.models import induction
    model = induction.load_induction()          # the checkpoint shipped in the package
    tokens = induction.held_out_sequences(model.config, seed=0)   # (128, n_ctx), doubled
    cache = model.run(tokens)                   # cache.attention (n_layers, 128, n_heads, n, n)

Training *with* the heads' scores (what `python -m mha_course train-induction` runs) is
`mha_course.experiments.induction_training.train`: measuring heads is analysis, which models do
not import.
"""

from mha_course.models.induction.checkpoint import (
    DEFAULT_CHECKPOINT,
    checkpoint_dir,
    load_induction,
    load_report,
    save,
)
from mha_course.models.induction.config import InductionConfig
from mha_course.models.induction.data import BOS, doubled_sequences, repeated_sequences
from mha_course.models.induction.model import AttnOnlyTransformer, InductionOutput
from mha_course.models.induction.training import held_out_sequences, next_token_losses, train

__all__ = ["InductionConfig", "AttnOnlyTransformer", "InductionOutput", "BOS",
           "repeated_sequences", "doubled_sequences", "train", "next_token_losses",
           "held_out_sequences", "save", "load_induction", "load_report", "checkpoint_dir",
           "DEFAULT_CHECKPOINT"]
