"""A small pure-numpy safetensors reader and FP8 (E4M3FN) decoder for the tests.

Independent of weightd's C++ code: the E4M3FN table is built from the format's
definition (bias 7, no infinities, S.1111.111 is NaN).
"""
import json
import struct
from pathlib import Path

import numpy as np

_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16, "F8_E4M3": np.uint8, "F64": np.float64,
           "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def _e4m3_table():
    table = np.empty(256, dtype=np.float32)
    for q in range(256):
        sign = -1.0 if q & 0x80 else 1.0
        exponent, mantissa = (q >> 3) & 0xF, q & 0x7
        if exponent == 0xF and mantissa == 0x7:
            table[q] = np.nan
        elif exponent == 0:
            table[q] = sign * mantissa * 2.0**-9
        else:
            table[q] = sign * (1 + mantissa / 8) * 2.0 ** (exponent - 7)
    return table


E4M3 = _e4m3_table()


def read_tensors(path):
    """Every tensor of one .safetensors file, keyed by name, with its dtype name:
    {name: (dtype, array)}. BF16, F16, F32 and F8_E4M3 (decoded to its values)
    become float32 arrays; other dtypes keep their own."""
    data = Path(path).read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    body = memoryview(data)[8 + length :]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        raw = np.frombuffer(body[begin:end], dtype=_DTYPES[info["dtype"]])
        if info["dtype"] == "BF16":
            values = (raw.astype(np.uint32) << 16).view(np.float32)
        elif info["dtype"] == "F8_E4M3":
            values = E4M3[raw]
        elif info["dtype"] in ("F16", "F32"):
            values = raw.astype(np.float32)
        else:
            values = raw
        tensors[name] = (info["dtype"], values.reshape(info["shape"]))
    return tensors


def read_checkpoint(directory):
    """read_tensors over every .safetensors file of a directory."""
    tensors = {}
    for path in sorted(Path(directory).glob("*.safetensors")):
        tensors.update(read_tensors(path))
    return tensors


def dequantize(codes, scale):
    """FP8 values times their scale: a scalar, one per row ([rows, 1]), or one per
    128x128 block ([ceil(rows/128), ceil(cols/128)])."""
    if scale.ndim == 0 or scale.shape == (codes.shape[0], 1):
        return codes * scale
    rows, cols = codes.shape
    expanded = np.repeat(np.repeat(scale, 128, axis=0), 128, axis=1)[:rows, :cols]
    return codes * expanded
