"""The several-heads demonstration: the task is what its docstring says, the models have equal
parameter counts, several heads beat one on it, and bad input is refused with a clear message."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402 (after matplotlib.use)
import numpy as np  # noqa: E402 (after matplotlib.use)
import pytest  # noqa: E402 (after matplotlib.use)
import torch  # noqa: E402 (after matplotlib.use)

from mha_course.experiments import several_heads as S  # noqa: E402 (after matplotlib.use)
from mha_course.viz import palette  # noqa: E402 (after matplotlib.use)


@pytest.fixture(scope="module")
def trained():
    """One head and four heads, seed 0, the notebook's settings (about 1.5 s per model)."""
    return S.compare_on_conflict_task(S.SeveralHeadsConfig(head_counts=(1, 4)), seeds=(0,))


def test_batches_pair_every_tag_once_and_name_the_right_symbols():
    task = S.ConflictTask(n_pairs=5, n_symbols=6, min_distance=3)
    data = S.make_batch(task, 64, np.random.default_rng(1))
    n = task.length
    assert data.tags.shape == data.symbols.shape == data.partner.shape == (64, n)
    for b in range(64):
        assert sorted(data.tags[b]) == list(range(n))  # every tag exactly once
        for i in range(n):
            j = data.partner[b, i]
            assert data.partner[b, j] == i and j != i  # partners come in pairs
            assert data.tags[b, i] // 2 == data.tags[b, j] // 2  # A with a, B with b, ...
            assert abs(i - j) >= 3
            assert data.partner_target[b, i] == data.symbols[b, j]
            assert data.left_target[b, i] == (data.symbols[b, i - 1] if i else S.IGNORE)
    assert data.symbols.min() >= 0 and data.symbols.max() < 6
    labels = S.token_labels(data, 0)
    assert len(labels) == n and all(len(t) == 2 for t in labels)
    assert sorted(t[0] for t in labels) == sorted("ABCDEabcde")


def test_head_counts_have_equal_parameter_counts():
    task = S.ConflictTask()
    d = 32
    expected = (2 * task.length + task.n_symbols) * d  # the tag, position and symbol tables
    expected += 4 * d * d  # W_Q, W_K, W_V (h, d, d/h) and W_O (d, d): h * d * d/h = d * d each
    expected += 2 * (d * task.n_symbols + task.n_symbols)  # the two read-outs
    counts = {h: S.n_parameters(S.ConflictModel(task, d, h)) for h in (1, 2, 4, 8, 32)}
    assert set(counts.values()) == {expected}, counts


def test_attention_mass_against_a_loop():
    data = S.make_batch(S.ConflictTask(n_pairs=3), 5, np.random.default_rng(2))
    weights = np.random.default_rng(3).dirichlet(np.ones(6), size=(5, 2, 6))  # (batch, h, n, n)
    mass = S.attention_mass(weights, data)
    for head in range(2):
        left = np.mean([weights[b, head, i, i - 1] for b in range(5) for i in range(1, 6)])
        partner = np.mean([weights[b, head, i, data.partner[b, i]] for b in range(5)
                           for i in range(6)])
        np.testing.assert_allclose(mass[head], [left, partner])
    with pytest.raises(ValueError, match="do not match the batch's tags"):
        S.attention_mass(weights[:4], data)


@pytest.mark.slow  # two trainings
def test_training_is_reproducible_for_a_seed():
    config = S.SeveralHeadsConfig(steps=3)
    first, _ = S.train(config, 4, seed=5)
    again, _ = S.train(config, 4, seed=5)
    other, _ = S.train(config, 4, seed=6)
    for (name, a), b, c in zip(first.state_dict().items(), again.state_dict().values(),
                               other.state_dict().values()):
        assert torch.equal(a, b), name
    assert not all(torch.equal(a, c) for a, c in zip(first.state_dict().values(),
                                                     other.state_dict().values()))


@pytest.mark.slow  # trains two models, the notebook's settings: 3-5 s
def test_several_heads_beat_one_at_the_same_parameter_count(trained):
    assert trained.n_params[0] == trained.n_params[1]
    single, multi = trained.accuracy["both"][:, 0]
    assert multi > 0.9, trained.rows()
    assert single < 0.3, trained.rows()
    for target in ("left", "partner"):  # "both right" can never beat either read-out alone
        assert (trained.accuracy["both"] <= trained.accuracy[target] + 1e-12).all()
    # the single head looks at the two places (one of them, or both unevenly) and names one;
    # among the four heads, one takes each place
    (one,) = trained.mass[1][0]
    assert one.sum() > 0.6, one
    assert max(trained.accuracy["left"][0, 0], trained.accuracy["partner"][0, 0]) > 0.8
    four = trained.mass[4][0]  # (4, 2)
    assert four[:, 0].max() > 0.8 and four[:, 1].max() > 0.8, four
    roles = [r["heads"] for r in trained.rows()]
    assert "left" in roles[1] and "partner" in roles[1]


@pytest.mark.slow  # shares the two trained models
def test_attention_to_show_and_its_figure(trained):
    shown = S.attention_to_show(trained)
    n = trained.config.task.length
    assert shown.seed == 0 and shown.d_model == 32 and len(shown.tokens) == n
    assert shown.weights[1].shape == (1, n, n) and shown.weights[4].shape == (4, n, n)
    np.testing.assert_allclose(shown.weights[4].sum(-1), 1.0, atol=1e-5)  # softmax rows
    fig = S.plot_attention(shown)
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 5  # the single head, then the four heads
    for ax in panels:
        assert ax.images[0].get_clim() == (0.0, 1.0)  # a fixed 0-1 scale
        assert ax.images[0].get_cmap().name == palette.ATTENTION_CMAP
    assert any(ax.get_label() == "<colorbar>" for ax in fig.axes)
    plt.close(fig)
    with pytest.raises(ValueError, match="seed 9 was not trained"):
        S.attention_to_show(trained, seed=9)


def test_bad_input_is_refused_with_what_was_expected():
    with pytest.raises(ValueError, match="n_pairs must be an int from 2 to 13"):
        S.ConflictTask(n_pairs=1)
    with pytest.raises(ValueError, match="n_symbols must be an int from 2 to 10"):
        S.ConflictTask(n_symbols=11)
    with pytest.raises(ValueError, match="min_distance must be an int from 1 to n_pairs = 6"):
        S.ConflictTask(min_distance=7)
    with pytest.raises(ValueError, match="divide d_model = 32; got \\(1, 3\\)"):
        S.SeveralHeadsConfig(head_counts=(1, 3))
    with pytest.raises(ValueError, match="must not repeat"):
        S.SeveralHeadsConfig(head_counts=(4, 4))
    with pytest.raises(ValueError, match="steps must be a positive int; got 0"):
        S.SeveralHeadsConfig(steps=0)
    with pytest.raises(ValueError, match="n_heads must be a positive int that divides d_model"):
        S.train(S.SeveralHeadsConfig(), 5, seed=0)
    with pytest.raises(ValueError, match="seeds must be a non-empty sequence"):
        S.compare_on_conflict_task(S.SeveralHeadsConfig(steps=1), seeds=())
    with pytest.raises(ValueError, match="batch must be a positive int; got 0"):
        S.make_batch(S.ConflictTask(), 0, np.random.default_rng(0))


@pytest.mark.slow  # trains models (a few steps each)
def test_command_prints_one_line_per_model(capsys):
    assert S.main(["--seeds", "0", "1", "--steps", "2", "--head-counts", "1", "2"]) == 0
    printed = capsys.readouterr().out
    assert "parameters per model: [5648, 5648] (equal)" in printed
    table = [line.split() for line in printed.splitlines() if line.startswith(" ")]
    assert [(row[0], row[2]) for row in table] == [("1", "0"), ("1", "1"), ("2", "0"), ("2", "1")]
    assert S.main(["--head-counts", "3"]) == 2
    assert "divide d_model = 32" in capsys.readouterr().out
