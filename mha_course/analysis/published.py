"""Published numbers to set a measured model beside: Clark et al. (2019) on BERT-base.

Kevin Clark, Urvashi Khandelwal, Omer Levy, Christopher D. Manning. "What Does BERT Look At? An
Analysis of BERT's Attention". BlackboxNLP 2019, pages 276-286 (arXiv:1906.04341,
doi:10.18653/v1/W19-4828).

Their setting differs from the course's: BERT-base uncased (12 layers x 12 heads), the Wall Street
Journal part of the Penn Treebank with Stanford Dependencies (the course: its own 299 sentences
parsed by spaCy, with the same relation labels). A relation's accuracy is the share of its arcs
whose other end is the head's most-attended word ([CLS] and [SEP] ignored), as in
`analysis.syntax`; their baseline is the best fixed offset from -3 to +2.

Where these numbers come from (checked 2026-12-05 with the course's reference search): the output
of the authors' own notebook, clarkkev/attention-analysis, Syntax_Analysis.ipynb, in the cell
that says "This produces the scores in Table 1" (heads counted from 0 there: "7-10 dep->head"),
and, row for row, a reading note that transcribes Table 1 (viktor-shcherb/msc_thesis,
references/2019-08-bert-attention-analysis/analysis.md; heads counted from 1 as in the paper:
"8-11"). Only rows on which both agree are kept. Left out: the "all" row (the two differ: 34.7 and
26.7 against 34.5 and 26.3), Table 2's coreference numbers and section 3.2's figures on [SEP]
(found only in secondary notes, so not verified here).
"""

from __future__ import annotations

__all__ = ["CLARK_2019", "CLARK_2019_TABLE1", "paper_head", "clark_comparison",
           "clark_comparison_lines"]

CLARK_2019 = ("Clark et al. 2019, \"What Does BERT Look At?\" (BlackboxNLP), BERT-base, "
              "Penn Treebank WSJ")

# relation -> (best head (layer, head) counted from 0 as the course counts, its direction,
# its accuracy %, the best fixed offset's accuracy %); the paper names a head layer-head from 1.
# pobj's best head is the authors' "head<-dep" (attention transposed: the word that attends most
# to the dependent), the course's nearest direction being head_to_dep.
CLARK_2019_TABLE1 = {
    "prep": ((6, 3), "dep_to_head", 66.7, 61.8),
    "pobj": ((8, 5), "head_to_dep", 76.3, 34.6),
    "det": ((7, 10), "dep_to_head", 94.3, 51.7),
    "nsubj": ((7, 1), "dep_to_head", 58.5, 45.5),
    "amod": ((3, 9), "dep_to_head", 75.6, 68.3),
    "dobj": ((7, 9), "dep_to_head", 86.8, 40.0),
    "aux": ((3, 9), "dep_to_head", 81.1, 71.5),
    "poss": ((6, 5), "dep_to_head", 80.5, 47.7),
}


def paper_head(layer: int, head: int) -> str:
    """The paper's name of the course's head LxHy: "layer-head" counted from 1 (L7H10 -> 8-11)."""
    return f"{layer + 1}-{head + 1}"


def clark_comparison(rows: list[dict]) -> list[dict]:
    """One row per relation that both Clark et al.'s Table 1 and `rows` (`syntax.clark_rows`)
    have, in the paper's direction for that relation: the measured model's best head, accuracy
    and fixed-offset baseline (fractions) beside the paper's (head as LxHy and as the paper
    names it, percent as published)."""
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise TypeError(f"rows must be the list of dicts of syntax.clark_rows; "
                        f"got {type(rows).__name__}")
    out = []
    for relation, ((layer, head), direction, accuracy, baseline) in CLARK_2019_TABLE1.items():
        ours = [r for r in rows if r["relation"] == relation and r["direction"] == direction]
        if not ours:
            continue
        (r,) = ours
        out.append({"relation": relation, "direction": direction,
                    "direction_words": r["direction_words"], "best_head": r["best_head"],
                    "accuracy": r["accuracy"], "baseline_accuracy": r["baseline_accuracy"],
                    "n_arcs": r["n_arcs"], "paper_head": f"L{layer}H{head}",
                    "paper_label": paper_head(layer, head), "paper_accuracy": accuracy,
                    "paper_baseline": baseline})
    return out


def clark_comparison_lines(comparison: list[dict], model: str = "MiniLM") -> list[str]:
    """`clark_comparison` as aligned text lines (percent), the paper's columns labelled: the
    best head, its accuracy and the best fixed offset's accuracy on each side."""
    ours, paper = f"{model} (measured)", "BERT-base (paper: Clark et al. 2019, Table 1)"
    lines = [f"{'':<17}| {ours:<24}| {paper}",
             f"{'relation':<17}| {'head':<8}{'acc.':>6}{'offset':>8}  | {'head':<15}{'acc.':>6}"
             f"{'offset':>8}"]
    for r in comparison:
        arrow = "dep → head" if r["direction"] == "dep_to_head" else "head → dep"
        lines.append(f"{r['relation']:<5} {arrow:<11}| {r['best_head']:<8}"
                     f"{100 * r['accuracy']:6.1f}{100 * r['baseline_accuracy']:8.1f}  | "
                     f"{r['paper_head'] + ' (' + r['paper_label'] + ')':<15}"
                     f"{r['paper_accuracy']:6.1f}{r['paper_baseline']:8.1f}")
    return lines
