"""Notebook 05's whole Clark-style analysis in one call, for MiniLM or any BERT folder on disk.

    result = clark_analysis(model)                  # a loaded model (MiniLM, load_bert(path) ...)
    result = analyse_model_dir("~/models/bert-base-uncased")   # or a folder; None: MODEL_DIR unset
    print("\n".join(result.summary_lines()))

On the course's corpus (or given texts): the model's attention (`model.run`), spaCy's parse, the
Clark table in both directions with its fixed-offset baselines, coreference (on the corpus, where
the course annotates antecedents), the attention parked on [CLS] and [SEP], notebook 04's role
scores on word pieces, and the layer profile (`analysis.syntax`, `analysis.real_roles`,
`analysis.heads`). What it returns is arrays and rows; the notebook draws them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mha_course.analysis import alignment, real_roles, syntax
from mha_course.analysis import heads as metrics
from mha_course.analysis.published import clark_comparison, clark_comparison_lines
from mha_course.models.bert import load_bert

__all__ = ["MODEL_DIR_VARIABLE", "ClarkAnalysis", "clark_analysis", "model_dir",
           "analyse_model_dir"]

MODEL_DIR_VARIABLE = "MODEL_DIR"  # the environment variable naming a student's BERT folder


@dataclass
class ClarkAnalysis:
    """What `clark_analysis` measured on one model.

    name: the model's description; n_layers, n_heads; n_texts; report: `syntax.SyntaxReport`
    (Clark table, entropy, sink, coreference or None); rows: `syntax.clark_rows(report.relations)`;
    scores: every role score (n_layers, n_heads) (`real_roles.minilm_role_scores` with syntax);
    best: `heads.best_heads(scores)`; profile: per-layer means (`real_roles.layer_profile`), each
    (n_layers,); sink_by_layer: mean mass on "[CLS]" and on "[SEP]", each (n_layers,).
    """
    name: str
    n_layers: int
    n_heads: int
    n_texts: int
    report: syntax.SyntaxReport
    rows: list[dict]
    scores: dict[str, np.ndarray]
    best: dict[str, dict]
    profile: dict[str, np.ndarray]
    sink_by_layer: dict[str, np.ndarray]

    def comparison(self) -> list[dict]:
        """The Clark table beside the published BERT-base numbers (`published.clark_comparison`)."""
        return clark_comparison(self.rows)

    def summary_lines(self) -> list[str]:
        """The findings as text: the Clark table, coreference, parking by layer, role bests."""
        r = self.report
        lines = [f"{self.name}: {self.n_layers} layers x {self.n_heads} heads, {self.n_texts} "
                 f"sentences, {r.n_words} words", "", *syntax.clark_lines(self.rows)]
        if r.coreference is not None:
            c = r.coreference
            lines.append(f"coreference: pronoun → antecedent, {c.n_links} pronouns, best head "
                         f"L{c.best_layer}H{c.best_head} {c.best_accuracy:.2f}, nearest "
                         f"preceding noun {c.baseline_accuracy:.2f}")
        lines += ["", "mean weight on [CLS] and [SEP] per layer:"]
        for token, by_layer in self.sink_by_layer.items():
            lines.append(f"    {token:<6}" + " ".join(f"L{layer} {v:.2f}"
                                                      for layer, v in enumerate(by_layer)))
        lines += ["", "best head per role:"]
        for role, b in self.best.items():
            where = "-" if np.isnan(b["score"]) else f"L{b['layer']}H{b['head']} {b['score']:.2f}"
            lines.append(f"    {role:<12}{where}")
        lines += ["", "beside the published BERT-base numbers (percent):",
                  *clark_comparison_lines(self.comparison(), model="this model")]
        return lines


def _coreference_links(texts: list[str], corpus: list[str], aligned):
    """The course's antecedent annotations for the texts that are corpus sentences at their own
    index (all of them when texts is the corpus), resolved to word indices; None if there are
    none."""
    links = [link for link in alignment.load_coreference()
             if link.sentence < len(texts) and texts[link.sentence] == corpus[link.sentence]]
    return alignment.resolve_coreference(links, aligned) if links else None


def clark_analysis(model, texts=None, parses=None, name: str | None = None) -> ClarkAnalysis:
    """Notebook 05's analysis of `model` (anything with `run(texts) -> Cache` whose inputs are
    BERT `Encoding`s: `load_minilm()`, `load_bert(path)`) on `texts` (default: the course corpus).

    parses: spaCy's parses of the same texts (`alignment.parse(texts)`), to parse only once when
    several models are compared; name: how to call the model (default: its repr).
    """
    corpus = alignment.load_corpus()
    texts = corpus if texts is None else texts
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise TypeError("texts must be a non-empty list of str (default: the course corpus)")
    if not callable(getattr(model, "run", None)):
        raise TypeError(f"model must have run(texts) -> Cache (load_minilm(), load_bert(path)); "
                        f"got {type(model).__name__}")
    parses = alignment.parse(texts) if parses is None else parses
    if len(parses) != len(texts):
        raise ValueError(f"one parse per text: got {len(parses)} parses for {len(texts)} texts")
    cache = model.run(texts)
    attentions = [cache.attention_of(b) for b in range(len(texts))]  # each (L, H, n_b, n_b)
    aligned = [alignment.align_result(enc, p) for enc, p in zip(cache.inputs, parses)]
    report = syntax.analyse_syntax(attentions, aligned, _coreference_links(texts, corpus, aligned))
    counts = real_roles.word_counts(cache.inputs)
    scores = real_roles.with_syntax(real_roles.minilm_role_scores(cache, counts), report)
    n_layers, n_heads = scores["local"].shape
    return ClarkAnalysis(
        name=name or repr(model), n_layers=n_layers, n_heads=n_heads, n_texts=len(texts),
        report=report, rows=syntax.clark_rows(report.relations), scores=scores,
        best=metrics.best_heads(scores), profile=real_roles.minilm_layer_profile(cache),
        sink_by_layer={token: mass.mean(axis=1) for token, mass in report.sink.items()})


def model_dir(value=None, environ=None) -> Path | None:
    """The BERT folder a student names: `value` if given (a str or Path, "" for none), else the
    environment variable MODEL_DIR; None when neither names one."""
    environ = os.environ if environ is None else environ
    value = environ.get(MODEL_DIR_VARIABLE, "") if value is None else value
    if not isinstance(value, (str, Path)):
        raise TypeError(f"MODEL_DIR must be a str or Path (a folder); got {type(value).__name__}")
    value = str(value).strip()
    return Path(value).expanduser() if value else None


def analyse_model_dir(folder=None, backend: str = "numpy", texts=None, parses=None,
                      environ=None) -> ClarkAnalysis | None:
    """`clark_analysis` of the BERT folder `folder` (default: $MODEL_DIR), loaded with
    `load_bert(folder, backend)`; None when no folder is named. A folder load_bert cannot read
    raises its error, which names what is missing or unsupported."""
    path = model_dir(folder, environ)
    if path is None:
        return None
    model = load_bert(path, backend=backend)
    return clark_analysis(model, texts=texts, parses=parses, name=f"{path.name} ({model!r})")
