"""Per-relation and per-query-type diagnostics of a saved toy model (research only)."""
import sys
import numpy as np
import torch
from mha_course.models import toy_language as lang, toy_model
from mha_course.analysis import heads as H

torch.set_num_threads(1)
model = toy_model.load(sys.argv[1])
sents = lang.generate(400, seed=10_000)
att = model.attentions(sents)
for rel in ("nsubj", "det"):
    class S:  # a view of the sentences with only one relation in `head`
        pass
    views = []
    for s in sents:
        v = S(); v.__dict__.update(s.__dict__)
        v.head = [h if r == rel else -1 for h, r in zip(s.head, s.rel)]
        views.append(v)
    print(rel, "baseline", H.fixed_offset_baseline(views), np.round(H.syntactic_score(att, views), 2).tolist())
print("self", np.round(H.self_attention_mass(att, sents), 2).tolist())
print("repeat", np.round(H.repeat_score(att, sents), 2).tolist())
# mass on the closer and on names, by query part of speech, for every head
for pos in ("VERB", "NOUN", "DET", "ADJ", "PREP", "PRON"):
    closer, name = [], []
    for A, s in zip(att, sents):
        q = [i for i, p in enumerate(s.pos) if p == pos]
        closer.append(A[:, :, q, len(s) - 2])
        if any(s.is_rare):
            name.append(A[:, :, q][..., np.array(s.is_rare)].sum(-1))
    print(pos, "closer", np.round(np.concatenate(closer, -1).mean(-1), 2).tolist())
    print(pos, "names ", np.round(np.concatenate(name, -1).mean(-1), 2).tolist())
