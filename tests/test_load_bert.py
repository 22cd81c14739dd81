"""`load_bert(path)` reads any BERT folder: random BERTs of several shapes, checked against
transformers, no network.

Each folder is what a student would have on disk: a `transformers.BertModel` (or a fine-tuned
`BertForSequenceClassification`) with random weights, saved with `save_pretrained` (safetensors)
or as a `pytorch_model.bin`, and a WordPiece tokenizer trained with `tokenizers` on the course's
corpus, saved as tokenizer.json or as vocab.txt only, cased or uncased. The oracle is the
in-memory transformers model (eager attention) and transformers' own tokenizer loaded from the
folder. Only the last test needs MiniLM's package (tier `minilm`, through its fixture).
"""

from __future__ import annotations

import functools
import json
import shutil
from importlib import resources

import numpy as np
import pytest
import torch
import transformers
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

from mha_course.models.bert import Bert, load_bert
from mha_course.models.minilm import MiniLM, model_path

CORPUS = resources.files("mha_course.data").joinpath("corpus_en.txt").read_text(
    encoding="utf-8").splitlines()
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
TEXTS = [CORPUS[0], CORPUS[7], "The Quick brown FOX jumps over the lazy dog.",
         "Café owners in Zürich don't serve crème brûlée!", "Dogs bark."]

# name -> (layers, heads, d_model, d_ff, cased, tokenizer saved as, weights saved as)
SHAPES = {
    "1x2_uncased_json_safetensors": (1, 2, 16, 24, False, "tokenizer.json", "safetensors"),
    "2x4_cased_json_bin_finetuned": (2, 4, 32, 40, True, "tokenizer.json", "bin"),
    "3x4_uncased_vocab_safetensors": (3, 4, 48, 64, False, "vocab.txt", "safetensors"),
    "3x2_cased_vocab_bin": (3, 2, 24, 32, True, "vocab.txt", "bin"),
}


@functools.lru_cache(maxsize=2)
def _trained(cased: bool) -> str:
    """A BERT WordPiece tokenizer trained on the course's corpus, as JSON (trained once per
    casing)."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=not cased)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(CORPUS, trainers.WordPieceTrainer(vocab_size=800,
                                                              special_tokens=SPECIALS))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[(t, tok.token_to_id(t)) for t in ("[CLS]", "[SEP]")])
    tok.decoder = decoders.WordPiece()
    return tok.to_str()


def train_tokenizer(cased: bool) -> Tokenizer:
    """A fresh copy of the trained tokenizer of that casing."""
    return Tokenizer.from_str(_trained(cased))


def randomise(model: torch.nn.Module, seed: int) -> None:
    """Weights far from BertModel's near-zero init, so that attention is far from uniform."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3 + (1.0 if "LayerNorm.weight" in name
                                                                 else 0.0))


def make_folder(root, name, shape, seed):
    """(folder, oracle BertModel) of one shape."""
    layers, heads, d_model, d_ff, cased, tokenizer_file, weights = shape
    folder = root / name
    tok = train_tokenizer(cased)
    config = transformers.BertConfig(
        vocab_size=tok.get_vocab_size(), hidden_size=d_model, num_hidden_layers=layers,
        num_attention_heads=heads, intermediate_size=d_ff, max_position_embeddings=128,
        num_labels=3)
    finetuned = name.endswith("finetuned")
    model = (transformers.BertForSequenceClassification if finetuned
             else transformers.BertModel)(config)
    randomise(model, seed)
    model.save_pretrained(folder)
    if weights == "bin":  # an older checkpoint: torch.save, LayerNorm's gamma/beta names
        state = {k.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias",
                                                                         "LayerNorm.beta"): v
                 for k, v in model.state_dict().items()}
        torch.save(state, folder / "pytorch_model.bin")
        (folder / "model.safetensors").unlink()
    hf_tok = transformers.BertTokenizerFast(tokenizer_object=tok, do_lower_case=not cased)
    hf_tok.save_pretrained(folder)
    if tokenizer_file == "vocab.txt":
        (folder / "tokenizer.json").unlink()
        vocab = sorted(tok.get_vocab().items(), key=lambda item: item[1])
        (folder / "vocab.txt").write_text("".join(f"{t}\n" for t, _ in vocab), encoding="utf-8")
    oracle = model.bert if finetuned else model
    oracle.set_attn_implementation("eager")
    return folder, oracle.eval()


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("berts")
    return {name: make_folder(root, name, shape, seed)
            for seed, (name, shape) in enumerate(SHAPES.items())}


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("name", list(SHAPES))
def test_matches_transformers(folders, name, backend):
    folder, oracle = folders[name]
    model = load_bert(folder, backend=backend)
    layers, heads, d_model = SHAPES[name][:3]
    assert (model.config.n_layers, model.config.n_heads, model.config.d_model) == \
        (layers, heads, d_model)
    cache = model.run(TEXTS)  # one padded batch
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    for b, text in enumerate(TEXTS):
        encoded = hf_tok(text, return_tensors="pt")
        assert cache.inputs[b].input_ids.tolist() == encoded["input_ids"][0].tolist(), text
        with torch.no_grad():
            out = oracle(**encoded, output_attentions=True, output_hidden_states=True)
        n = int(cache.lengths[b])
        attention = torch.stack(out.attentions)[:, 0].numpy()  # (n_layers, n_heads, n, n)
        hidden = torch.stack(out.hidden_states)[:, 0].numpy()  # (n_layers + 1, n, d_model)
        assert attention.std() > 0.05  # far from uniform: the check has teeth
        np.testing.assert_allclose(cache.attention[:, b, :, :n, :n], attention, rtol=0, atol=1e-4)
        np.testing.assert_allclose(cache.residual[:, b, :n], hidden, rtol=0, atol=1e-4)


@pytest.mark.parametrize("name", list(SHAPES))
def test_token_ids_and_case_follow_the_folder(folders, name):
    folder, _ = folders[name]
    model = load_bert(folder)
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    for text in TEXTS + CORPUS[20:40]:
        assert model.encode(text).input_ids.tolist() == hf_tok(text)["input_ids"], text
    tokens = model.encode("The Lighthouse").tokens
    cased = SHAPES[name][4]
    assert ("The" in tokens) == cased and ("the" in tokens) == (not cased)


def test_tokenizer_config_overrides_tokenizer_json(folders):
    """do_lower_case in tokenizer_config.json wins over tokenizer.json, as in transformers."""
    folder, _ = folders["2x4_cased_json_bin_finetuned"]
    config = json.loads((folder / "tokenizer_config.json").read_text())
    lower = folder.parent / "lowered"
    shutil.copytree(folder, lower)
    (lower / "tokenizer_config.json").write_text(json.dumps({**config, "do_lower_case": True}))
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(lower))
    text = "The Lighthouse keeper"
    assert load_bert(lower).encode(text).input_ids.tolist() == hf_tok(text)["input_ids"]
    assert "the" in load_bert(lower).encode(text).tokens


def test_a_bert_is_not_a_minilm(folders):
    folder, _ = folders["1x2_uncased_json_safetensors"]
    model = load_bert(folder, "torch", "float64")
    assert type(model) is Bert and model.path == folder and model.dtype == "float64"
    assert repr(model).startswith("Bert(backend='torch', dtype='float64', n_layers=1, n_heads=2")
    assert model.run("Dogs bark.").attention.dtype == np.float64


def _copy(folder, tmp_path, drop=(), config=None):
    out = tmp_path / "copy"
    shutil.copytree(folder, out)
    for name in drop:
        (out / name).unlink()
    if config is not None:
        old = json.loads((out / "config.json").read_text())
        (out / "config.json").write_text(json.dumps({**old, **config}))
    return out


@pytest.mark.parametrize("change, error, match", [
    ({"drop": ["model.safetensors"]}, FileNotFoundError,
     r"no PyTorch weights: expected one of \['model.safetensors'.*holds config.json"),
    ({"drop": ["tokenizer.json"]}, FileNotFoundError,
     r"no tokenizer: expected tokenizer.json or vocab.txt.*holds config.json"),
    ({"drop": ["config.json"]}, FileNotFoundError, r"no config.json.*holds model.safetensors"),
    ({"config": {"model_type": "roberta", "architectures": ["RobertaModel"]}}, ValueError,
     r"model_type='roberta' \(architectures \['RobertaModel'\]\).*BERT-architecture .* only"),
    ({"config": {"hidden_act": "gelu_new"}}, ValueError,
     r"exact GELU.*got \{'hidden_act': 'gelu_new'\}"),
    ({"config": {"num_hidden_layers": 3}}, ValueError,
     r"lacks 6 BERT tensors, e.g. \[.encoder.layer.1"),
    ({"config": {"hidden_size": 17}}, ValueError, r"must be a multiple of num_attention_heads 2"),
    ({"config": {"intermediate_size": 30}}, ValueError,
     r"shapes do not match config.json \(found, expected\): .*\(\(24, 16\), \(30, 16\)\)"),
])
def test_unsupported_folders_are_named(folders, tmp_path, change, error, match):
    folder = _copy(folders["1x2_uncased_json_safetensors"][0], tmp_path, **change)
    with pytest.raises(error, match=match):
        load_bert(folder)


def test_other_architectures_and_formats_are_refused(tmp_path):
    transformers.GPT2Config(n_layer=1, n_head=2, n_embd=8).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(ValueError, match=r"model_type='gpt2'.*GPT-2.*not supported"):
        load_bert(tmp_path / "gpt2")
    (tmp_path / "tf").mkdir()
    transformers.BertConfig().to_json_file(tmp_path / "tf" / "config.json")
    (tmp_path / "tf" / "tf_model.h5").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"only \['tf_model.h5'\]: convert them"):
        load_bert(tmp_path / "tf")
    with pytest.raises(FileNotFoundError, match="is not a folder"):
        load_bert(tmp_path / "nowhere")
    with pytest.raises(TypeError, match="path must be a str or pathlib.Path"):
        load_bert(3)
    with pytest.raises(ValueError, match="backend must be one of"):
        load_bert(tmp_path / "tf", backend="jax")


def test_minilm_is_one_bert_folder(minilm):
    """load_minilm() is load_bert on the package's folder: the same model, a MiniLM."""
    ours = load_bert(model_path())
    assert type(ours) is Bert and isinstance(minilm, MiniLM) and isinstance(minilm, Bert)
    a, b = ours.run(TEXTS[:2]), minilm.run(TEXTS[:2])
    assert np.array_equal(a.attention, b.attention) and np.array_equal(a.residual, b.residual)
    assert repr(minilm).startswith("MiniLM(backend='numpy'")


def test_minilm_from_vocab_txt_tokenizes_as_from_tokenizer_json(minilm, tmp_path):
    """A real vocabulary (30,522 pieces, uncased, accents stripped): the tokenizer built from
    vocab.txt alone gives the ids of MiniLM's tokenizer.json and of transformers' from vocab.txt."""
    source = model_path()
    for name in ("config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json"):
        (tmp_path / name).symlink_to(source / name)
    model = load_bert(tmp_path)
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(tmp_path))
    texts = TEXTS + ["Temperatures of -5°C 🌡️ in 東京, naïve [CLS] and [MASK] tokens.",
                     "E-mail jane.doe@example.com or visit https://example.org/page?id=7."]
    for text in texts:
        ids = model.encode(text).input_ids.tolist()
        assert ids == minilm.encode(text).input_ids.tolist() == hf_tok(text)["input_ids"], text


@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin"])
def test_unreadable_weights_name_the_file(folders, tmp_path, weights):
    folder = _copy(folders["1x2_uncased_json_safetensors"][0], tmp_path, drop=["model.safetensors"])
    (folder / weights).write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=rf"{weights} could not be read as"):
        load_bert(folder)
