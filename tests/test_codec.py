"""The grader's data format: `to_plain` (the one walker, in the self-checks) and the codec that
carries its plain data out of the student's process (`grading/codec.py`), and the judge on outputs
of an odd form as they may arrive."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mha_course.checks import EXERCISES, to_plain
from mha_course.grading import codec


def test_to_plain():
    plain = to_plain((np.float32(1.5), torch.ones(2), {"k": (1, None)}, np.array(0.25)))
    assert plain[0] == 1.5 and isinstance(plain[1], np.ndarray) and plain[2] == {"k": [1, None]}
    assert plain[3] == 0.25 and isinstance(plain[3], float)
    with pytest.raises(TypeError, match="expected numbers"):
        to_plain(np.array(["a"], dtype=object))
    with pytest.raises(TypeError, match="a set; expected arrays"):
        to_plain({1, 2})


# ----------------------------------------------------------------------------------------------
# The codec: the only thing that crosses from the student's process


def test_codec_round_trip():
    value = {"a": [np.arange(6, dtype=np.int32).reshape(2, 3), np.array([True]), 1.5, None,
                   float("nan"), "s"], "b": np.zeros((0, 4), dtype=np.float32)}
    back = codec.decode(codec.encode(value))
    assert np.array_equal(back["a"][0], value["a"][0]) and back["a"][0].dtype == np.int32
    assert back["b"].shape == (0, 4) and back["a"][3] is None and np.isnan(back["a"][4])


@pytest.mark.parametrize("raw", [
    b"\x80\x04\x95",  # a pickle
    b'{"__ndarray__": ["|O", [1], "AAAAAAAAAAA="]}',  # object dtype
    b'{"__ndarray__": ["<f8", [2], "AAAAAAAAAAA="]}',  # 8 bytes for 2 float64
    b'{"__ndarray__": ["<f8", [-1], ""]}',
    b'{"__ndarray__": ["<f8", [1], "AAAAAAAAAAA="], "extra": 1}',
    b"[" * 100 + b"]" * 100,
    b"{not json",
])
def test_codec_rejects_malformed_messages(raw):
    with pytest.raises(codec.CodecError):
        codec.decode(raw)


def test_the_codec_walks_with_to_plain():
    """One walker: what to_plain refuses, encode refuses; what it converts, encode converts."""
    for bad in ({1, 2}, np.array(["a"], dtype=object), {"__ndarray__": 1},
                [[[[[[[[[[[[[[1]]]]]]]]]]]]]]):
        with pytest.raises(codec.CodecError):
            codec.encode(bad)
    with pytest.raises(TypeError, match="reserves"):
        to_plain({"__ndarray__": np.zeros(2)})
    back = codec.decode(codec.encode({"k": (np.int64(3), torch.ones(2), np.array(0.5))}))
    assert back["k"][0] == 3 and isinstance(back["k"][0], int)
    assert np.array_equal(back["k"][1], np.ones(2, dtype=np.float32))
    assert back["k"][2] == 0.5 and isinstance(back["k"][2], float)


def test_the_wire_accepts_only_its_dtypes():
    with pytest.raises(codec.CodecError, match="cannot be sent"):
        codec.encode({"ok": np.zeros(2, dtype=">f8")})  # numbers, but not in the wire's byte order
    assert to_plain(np.zeros(2, dtype=">f8")).dtype == np.dtype(">f8")


@pytest.mark.parametrize("got", [None, "text", [1, 2], {"a": 1}, np.zeros((2, 2)),
                                 [np.zeros(1)] * 5, float("nan")])
def test_odd_outputs_never_crash_the_judge(got):
    for exercise_id, ex in EXERCISES.items():
        if exercise_id == "ablation":
            continue  # its reference runs the model; the shape check comes first anyway
        case = ex.cases(hidden=False)[0]
        message = ex.judge(case, got)
        assert isinstance(message, str) and message
