"""Views: pictures of attention. They take NumPy arrays and draw; they never train.

- `heatmap`: `attention_heatmap` (one head) and `head_grid` (every head of every layer);
- `head_view`: `head_view`, attention as lines between the words, one style per head;
- `projection`: `projected_tokens`, one head's queries and keys on a 2-D plane;
- `widgets`: the ipywidgets panels the notebooks use (`scaling_explorer`, `head_explorer`,
  `pruning_explorer`);
- `training`: role scores as static figures (their growth during training, trained vs untrained);
- `sweep`: a seed sweep's role scores and where each role's best head sits, over seeds, with
  their table (notebook 04), imported from the module like `training`;
- `circuits`: a causal model's circuits (the phase change, a previous-token / induction pair,
  ablation bars, QK and OV circuits, `circuit_explorer`), notebook 09, imported as a module;
- `tables`: per-head numbers (layer x head tables, probe panels, similarity matrices, a map of
  heads, labelled scatters of heads, pruning curves), used as a module:
  `tables.layer_head_table(...)`;
- `export`: `save(fig, path)` writes a view as PNG, SVG or PDF, `save_attention` one head's
  weights with their tokens as CSV or NPZ (`load_attention` reads them back);
- `palette`: the course's colour-blind-safe colours and colour maps (every view takes its
  colours from there); `labels`: point labels placed without overlaps.
"""

from mha_course.viz import tables  # a module of views, used as tables.X
from mha_course.viz.head_view import ROLE_STYLES, head_view
from mha_course.viz.heatmap import attention_heatmap, head_grid
from mha_course.viz.projection import projected_tokens

__all__ = ["ROLE_STYLES", "attention_heatmap", "head_grid", "head_view", "projected_tokens",
           "tables"]
