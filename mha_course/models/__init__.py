"""The course's models, all behind one interface: `model.run(inputs, head_gates=None) -> Cache`.

- `toy_language`: the toy language with planted relations (sentences with gold annotations);
- `toy_model`: the toy Transformer (model, training, checkpoints), `ToyTransformer.run`;
- `bert`: any BERT checkpoint folder on disk on the course's attention (NumPy and PyTorch),
  `load_bert(path)`, `Bert.run`;
- `minilm`: all-MiniLM-L6-v2, one such folder shipped as a package, `load_minilm()`;
- `induction`: the causal attention-only model (previous-token and induction heads),
  `AttnOnlyTransformer.run`;
- `cache`: `Cache`, the named NumPy arrays that `run` returns (attention, per-head outputs Z_i,
  the attention layers' inputs and outputs, the residual stream, the tokens).

Models import the core (`params`, `np_attention`, `torch_attention`) and nothing above it:
analysis, viz and experiments read a `Cache`, never a model's insides.
"""

from mha_course.models.cache import Cache

__all__ = ["Cache"]
