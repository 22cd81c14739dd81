"""Views: pictures of attention. They take NumPy arrays and draw; they never train.

- `heatmap`: `attention_heatmap` (one head) and `head_grid` (every head of every layer);
- `projection`: `projected_tokens`, one head's queries and keys on a 2-D plane;
- `widgets`: the ipywidgets panels the notebooks use (`scaling_explorer`, `head_explorer`).
"""

from mha_course.viz.heatmap import attention_heatmap, head_grid
from mha_course.viz.projection import projected_tokens

__all__ = ["attention_heatmap", "head_grid", "projected_tokens"]
