"""Published numbers to set a measured model beside: Clark et al. (2019) on BERT-base.

Kevin Clark, Urvashi Khandelwal, Omer Levy, Christopher D. Manning. "What Does BERT Look At? An
Analysis of BERT's Attention". BlackboxNLP 2019, pages 276-286 (arXiv:1906.04341,
doi:10.18653/v1/W19-4828).

Their setting differs from the course's: BERT-base uncased (12 layers x 12 heads), the Wall Street
Journal part of the Penn Treebank with Stanford Dependencies (the course: its own 299 sentences
parsed by spaCy), and heads named "layer-head" counted from 1 (the course's LxHy counts from 0).
The course's relations use the same labels. A relation's accuracy is the share of its arcs whose
other end is the head's most-attended word ([CLS] and [SEP] ignored), as in `analysis.syntax`.

Where these numbers were checked (2026-12-05, with the course's reference search, not against the
PDF itself): Table 1's rows for the course's relations and Table 2's coreference row as transcribed
in a reading note of the paper (viktor-shcherb/msc_thesis, references/2019-08-bert-attention-
analysis/analysis.md), consistent with the paper's own sentence, quoted by two other reading notes,
that heads find direct objects, determiners, objects of prepositions and objects of possessive
pronouns "with >75% accuracy". Table 1 gives the best direction of each relation; per that note,
dependent -> head for every relation except pobj.
"""

from __future__ import annotations

__all__ = ["CLARK_2019", "CLARK_2019_TABLE1", "CLARK_2019_COREFERENCE", "CLARK_2019_SEP",
           "clark_comparison", "clark_comparison_lines"]

CLARK_2019 = ("Clark et al. 2019, \"What Does BERT Look At?\" (BlackboxNLP), BERT-base, "
              "Penn Treebank WSJ")

# relation -> (best head "layer-head" counted from 1, its accuracy %, best fixed-offset baseline %)
CLARK_2019_TABLE1 = {
    "all": ("7-6", 34.5, 26.3),
    "prep": ("7-4", 66.7, 61.8),
    "pobj": ("9-6", 76.3, 34.6),
    "det": ("8-11", 94.3, 51.7),
    "nsubj": ("8-2", 58.5, 45.5),
    "amod": ("4-10", 75.6, 68.3),
    "dobj": ("8-10", 86.8, 40.0),
    "aux": ("4-10", 81.1, 71.5),
    "poss": ("7-6", 80.5, 47.7),
}
# Table 2 (CoNLL-2012, antecedent selection, all mentions): head 5-4 and the nearest mention
CLARK_2019_COREFERENCE = ("5-4", 65.0, 27.0)
# Section 3.2, in words
CLARK_2019_SEP = "over half of BERT-base's attention in layers 6-10 goes to [SEP]"


def clark_comparison(rows: list[dict]) -> list[dict]:
    """One row per relation that both Clark et al.'s Table 1 and `rows` (`syntax.clark_rows`) have:
    the measured model's better direction (its best head, accuracy and fixed-offset baseline, as
    fractions) beside the paper's (percent, as published)."""
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise TypeError(f"rows must be the list of dicts of syntax.clark_rows; "
                        f"got {type(rows).__name__}")
    out = []
    for relation, (head, accuracy, baseline) in CLARK_2019_TABLE1.items():
        ours = [r for r in rows if r["relation"] == relation]
        if not ours:
            continue
        best = max(ours, key=lambda r: r["accuracy"])
        out.append({"relation": relation, "direction_words": best["direction_words"],
                    "best_head": best["best_head"], "accuracy": best["accuracy"],
                    "baseline_accuracy": best["baseline_accuracy"], "n_arcs": best["n_arcs"],
                    "paper_head": head, "paper_accuracy": accuracy,
                    "paper_baseline": baseline})
    return out


def clark_comparison_lines(comparison: list[dict], model: str = "MiniLM") -> list[str]:
    """`clark_comparison` as aligned text lines (percent), the paper's columns labelled: the
    best head, its accuracy and the best fixed offset's accuracy on each side."""
    ours, paper = f"{model} (measured)", "BERT-base (paper: Clark et al. 2019)"
    lines = [f"{'':<9}| {ours:<24}| {paper}",
             f"{'relation':<9}| {'head':<8}{'acc.':>6}{'offset':>8}  | {'head':<8}{'acc.':>6}"
             f"{'offset':>8}"]
    for r in comparison:
        lines.append(f"{r['relation']:<9}| {r['best_head']:<8}{100 * r['accuracy']:6.1f}"
                     f"{100 * r['baseline_accuracy']:8.1f}  | {r['paper_head']:<8}"
                     f"{r['paper_accuracy']:6.1f}{r['paper_baseline']:8.1f}")
    return lines
