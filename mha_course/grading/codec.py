"""The only format that crosses from a student's process to the grader's: JSON with arrays.

A student's process can send anything down its pipe, so the grader never unpickles what comes back
(unpickling runs code). Messages are UTF-8 JSON; an array travels as
{"__ndarray__": [dtype, shape, base64 bytes]} and is rebuilt with `np.frombuffer` after its dtype
(bool, integers or floats only), shape and byte count have been checked. Size and depth are bounded.

What counts as plain data is decided in one place, `mha_course.checks._framework.to_plain`, the
walker that `Exercise.run` applies to every output in the student's process; `encode` walks a
message with the same function and only adds the wire form of an array. The walker lives with the
self-checks, a layer below the grader, so that the checks need nothing from `grading` (the grader
imports the checks, never the other way round). The key "__ndarray__" is reserved (`to_plain`
rejects it).
"""

from __future__ import annotations

import base64
import json
import math
from typing import Any

import numpy as np

from mha_course.checks._framework import RESERVED_KEY, to_plain

__all__ = ["CodecError", "encode", "decode", "MAX_MESSAGE_BYTES"]

MAX_MESSAGE_BYTES = 16 * 2**20
_ARRAY = RESERVED_KEY
_DTYPES = {np.dtype(t).str for t in ("?", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8",
                                     "f2", "f4", "f8")}
_MAX_DEPTH = 12


class CodecError(ValueError):
    """A message that is not valid plain data."""


def _wire_array(value: np.ndarray) -> dict:
    if value.dtype.str not in _DTYPES:
        raise CodecError(f"arrays of dtype {value.dtype} cannot be sent")
    data = np.ascontiguousarray(value).tobytes()
    return {_ARRAY: [value.dtype.str, list(value.shape), base64.b64encode(data).decode()]}


def encode(value: Any) -> bytes:
    """Plain data (arrays, lists, dicts with str keys, str, numbers, bool, None) as bytes."""
    try:
        wire = to_plain(value, max_depth=_MAX_DEPTH, array=_wire_array)
    except TypeError as error:
        raise CodecError(f"the value cannot be sent: {error}") from None
    data = json.dumps(wire, separators=(",", ":"), allow_nan=True).encode()
    if len(data) > MAX_MESSAGE_BYTES:
        raise CodecError(f"the message is {len(data)} bytes, more than {MAX_MESSAGE_BYTES}")
    return data


def _array(spec) -> np.ndarray:
    if not (isinstance(spec, list) and len(spec) == 3 and isinstance(spec[0], str)
            and isinstance(spec[1], list) and isinstance(spec[2], str)):
        raise CodecError("malformed array")
    dtype, shape, data = spec
    if dtype not in _DTYPES:
        raise CodecError(f"arrays of dtype {dtype!r} are not accepted")
    if not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s for s in shape) \
            or len(shape) > 32:
        raise CodecError(f"malformed shape {shape!r}")
    raw = base64.b64decode(data.encode(), validate=True)
    if len(raw) != math.prod(shape) * np.dtype(dtype).itemsize:
        raise CodecError("the array's bytes do not match its shape")
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()  # the declared shape


def _unpack(value: Any, depth: int = 0) -> Any:
    if depth > _MAX_DEPTH:
        raise CodecError("the value is nested too deeply")
    if isinstance(value, list):
        return [_unpack(v, depth + 1) for v in value]
    if isinstance(value, dict):
        if _ARRAY in value:
            if len(value) != 1:
                raise CodecError("malformed array")
            return _array(value[_ARRAY])
        return {k: _unpack(v, depth + 1) for k, v in value.items()}
    return value


def decode(data: bytes) -> Any:
    """The value `encode` made; raises CodecError on anything else (never runs code)."""
    if not isinstance(data, (bytes, bytearray)) or len(data) > MAX_MESSAGE_BYTES:
        raise CodecError("not a message of acceptable size")
    try:
        return _unpack(json.loads(data.decode("utf-8")))
    except CodecError:
        raise
    except (ValueError, TypeError, RecursionError, UnicodeDecodeError) as error:
        raise CodecError(f"not valid JSON: {error}") from None
