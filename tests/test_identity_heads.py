"""The identity-head experiment: the task's answers, the identity score, and what training gives."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # in-process drawing only

import numpy as np  # noqa: E402 (after matplotlib.use)
import pytest  # noqa: E402 (after matplotlib.use)
import torch  # noqa: E402 (after matplotlib.use)

from mha_course.experiments import identity_heads as ih  # noqa: E402 (after matplotlib.use)

SMALL = ih.NeighbourConfig(symbols=5, length=6, offsets=(0, -1, 1))


def test_targets_name_the_symbol_and_its_neighbours():
    batch = ih.make_batch(SMALL, 4, torch.Generator().manual_seed(0))
    n = SMALL.length + 2
    assert batch.ids.shape == (4, n)
    assert batch.targets.shape == (4, n, 3)
    edge = SMALL.symbols
    for ids, targets in zip(batch.ids.tolist(), batch.targets.tolist()):
        assert ids[0] == SMALL.symbols and ids[-1] == SMALL.symbols + 1  # [BOS], [EOS]
        assert targets[0] == targets[-1] == [ih.IGNORE] * 3
        for i in range(1, n - 1):
            left = ids[i - 1] if i > 1 else edge
            right = ids[i + 1] if i < n - 2 else edge
            assert targets[i] == [ids[i], left, right]


def test_identity_scores_is_the_mean_diagonal_over_symbols():
    torch.manual_seed(0)
    model = ih.NeighbourModel(SMALL)
    batch = ih.make_batch(SMALL, 8, torch.Generator().manual_seed(1))
    scores, accuracy = ih.identity_scores(model, batch)
    _, weights = model(batch.ids)  # (batch, n_heads, n, n)
    diagonal = torch.diagonal(weights, dim1=-2, dim2=-1)[:, :, 1:-1]  # symbols only
    expected = diagonal.mean(dim=(0, 2)).detach().numpy()  # (n_heads,)
    np.testing.assert_allclose(scores, expected, rtol=1e-5)
    assert 0.0 <= accuracy <= 1.0


def test_positional_queries_make_where_a_row_looks_blind_to_its_own_token():
    # changing the token at position 3 changes no query, so row 3 moves only through key 3
    torch.manual_seed(0)
    model = ih.NeighbourModel(SMALL).eval()
    ids = ih.make_batch(SMALL, 1, torch.Generator().manual_seed(2)).ids
    other = ids.clone()
    other[0, 3] = (ids[0, 3] + 1) % SMALL.symbols
    _, a = model(ids)
    _, b = model(other)
    logits_a = torch.log(a[0, :, 3])  # (n_heads, n) row 3's log-weights
    logits_b = torch.log(b[0, :, 3])
    shift = logits_a - logits_b  # the same for every key except key 3 (softmax normalisation)
    others = [k for k in range(ids.shape[1]) if k != 3]
    torch.testing.assert_close(shift[:, others], shift[:, others[:1]].expand(-1, len(others)))


def test_bad_config_is_named():
    with pytest.raises(ValueError, match="offsets"):
        ih.NeighbourConfig(offsets=(2,))
    with pytest.raises(ValueError, match="unknown variant"):
        ih.compare(seeds=(0,), variants=("no attention",))


@pytest.mark.slow
def test_without_the_residual_a_head_attends_to_itself():
    runs = ih.compare(seeds=(0,), variants=("with residual", "no residual"))
    by_name = {r.variant: r for r in runs}
    assert all(r.accuracy > 0.95 for r in runs)
    assert by_name["no residual"].best_identity > 0.6
    assert by_name["with residual"].best_identity < 0.3
    tokens, A = ih.example(by_name["no residual"])
    assert A.shape == (len(tokens), len(tokens))
    assert "best head identity score" in ih.format_runs(runs)
    ax = ih.plot_runs(runs, reference=0.4)
    assert len(ax.collections) == 2 and ax.get_title()  # one set of dots per variant
    assert [t.get_text() for t in ax.get_xticklabels()] == ["with residual", "no residual"]
