"""Any BERT checkpoint on disk through the course's own attention: `load_bert(path)`.

- `folder`: what a Hugging Face BERT folder must hold, checked with errors that name what is
  missing or unsupported (a RoBERTa or GPT-2 folder, no weights, no tokenizer);
- `weights`: safetensors or pytorch_model.bin -> per-head MHAParams
  (W_Q[i] = W_q[i*d_k:(i+1)*d_k].T, W_O = W_o.T);
- `tokenize`: word pieces with `tokenizers` (tokenizer.json or vocab.txt, cased or uncased), and
  pieces grouped into the words a reader sees;
- `np_bert` / `torch_bert`: the post-LN BERT forward pass on np_attention / torch_attention;
- `model`: `load_bert`, `Bert.run` -> `models.cache.Cache`.

MiniLM (`models.minilm`) is one such folder. tests/test_load_bert.py checks random BERTs of several
shapes, and tests/test_pretrained.py MiniLM, against Hugging Face transformers' BertModel.
"""

from mha_course.models.bert import np_bert, torch_bert
from mha_course.models.bert.folder import BertFolder, inspect_folder
from mha_course.models.bert.model import Bert, load_bert
from mha_course.models.bert.tokenize import Encoding
from mha_course.models.bert.weights import BertConfig, BertParams, LayerParams

__all__ = ["load_bert", "Bert", "BertFolder", "inspect_folder", "Encoding", "BertConfig",
           "BertParams", "LayerParams", "np_bert", "torch_bert"]
