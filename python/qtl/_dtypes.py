"""safetensors dtypes (qtl's names) to torch and numpy dtypes, and the buffers' shapes.

torch: every dtype qtl knows maps to the torch dtype of the same bits where torch has one
(F8_E4M3 -> float8_e4m3fn, F8_E8M0 -> float8_e8m0fnu, BF16 -> bfloat16, ...). F4 (E2M1, two
per byte) is torch.float4_e2m1fn_x2 when torch has it (shape counted in bytes: the last
dimension halved, as torch counts it), else uint8 with the same byte shape. F6_* have no torch
dtype: a flat uint8 tensor of their bytes.

numpy: the dtypes numpy has (bool, u8, i8, i16, u16, f16, i32, u32, f32, c64, f64, i64, u64)
map to them; for the others (F8_*, BF16, F4, F6_*) the array is uint8 and the dtype name says
what the bytes are. Its shape is the logical shape with the last dimension counted in bytes
(multiplied by the element's bytes; F4: halved); a 0-d tensor becomes a [nbytes] array. So
`a.view(ml_dtypes.bfloat16)` / `a.view(ml_dtypes.float8_e4m3fn)` gives the logical shape back
(Weights.typed does it).
"""
from __future__ import annotations

from typing import Any

from . import _lib

NUMPY_NATIVE = {"BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16", "U16": "uint16", "F16": "float16",
                "I32": "int32", "U32": "uint32", "F32": "float32", "C64": "complex64", "F64": "float64",
                "I64": "int64", "U64": "uint64"}

# ml_dtypes' names of the dtypes numpy lacks (Weights.typed)
ML_DTYPES = {"BF16": "bfloat16", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "F8_E8M0": "float8_e8m0fnu",
             "F8_E4M3FNUZ": "float8_e4m3fnuz", "F8_E5M2FNUZ": "float8_e5m2fnuz", "F4": "float4_e2m1fn"}

_TORCH_NAMES = {"BOOL": "bool", "U8": "uint8", "I8": "int8", "F8_E5M2": "float8_e5m2", "F8_E4M3": "float8_e4m3fn",
                "F8_E8M0": "float8_e8m0fnu", "F8_E4M3FNUZ": "float8_e4m3fnuz", "F8_E5M2FNUZ": "float8_e5m2fnuz",
                "I16": "int16", "U16": "uint16", "F16": "float16", "BF16": "bfloat16", "I32": "int32",
                "U32": "uint32", "F32": "float32", "C64": "complex64", "F64": "float64", "I64": "int64",
                "U64": "uint64", "F4": "float4_e2m1fn_x2"}


def bits(dtype: str) -> int:
    """Bits per element of a safetensors dtype name."""
    return int(_lib.lib.qtl_dtype_bits(_lib.DTYPE[dtype]))


def byte_shape(dtype: str, shape: tuple[int, ...], nbytes: int) -> tuple[int, ...]:
    """The shape of a byte-typed (uint8) buffer of a tensor: the last dimension counted in bytes."""
    b = bits(dtype)
    if not shape:
        return (nbytes,)
    if b % 8 == 0:
        return tuple(shape[:-1]) + (shape[-1] * (b // 8),)
    if b == 4 and shape[-1] % 2 == 0:
        return tuple(shape[:-1]) + (shape[-1] // 2,)
    return (nbytes,)  # F6, or an odd F4 row: the bytes, flat


def torch_layout(dtype: str, shape: tuple[int, ...], nbytes: int):
    """(torch dtype, shape) of the tensor that holds a parameter's bytes (see the module doc)."""
    import torch
    name = _TORCH_NAMES.get(dtype)
    t = getattr(torch, name, None) if name else None
    if dtype == "F4":
        bs = byte_shape(dtype, shape, nbytes)
        return (t if t is not None else torch.uint8), bs
    if t is None:
        return torch.uint8, byte_shape(dtype, shape, nbytes)
    return t, tuple(shape)


def numpy_layout(dtype: str, shape: tuple[int, ...], nbytes: int):
    """(numpy dtype, shape) of the array that holds a parameter's bytes (see the module doc)."""
    import numpy as np
    name = NUMPY_NATIVE.get(dtype)
    if name:
        return np.dtype(name), tuple(shape)
    return np.dtype("uint8"), byte_shape(dtype, shape, nbytes)


def dtype_from_torch(t: Any) -> str | None:
    """The safetensors name of a torch dtype (float4_e2m1fn_x2 -> F4), None if qtl has none."""
    for k, v in _TORCH_NAMES.items():
        if str(t) == "torch." + v:
            return k
    return None


def override_code(dtype: Any) -> int:
    """qtl_load_options.dtype_override from None / "bfloat16" / "float16" / "BF16" / "F16" / a torch dtype."""
    if dtype is None:
        return _lib.DTYPE_COUNT
    name = str(dtype).replace("torch.", "")
    code = {"bfloat16": "BF16", "bf16": "BF16", "BF16": "BF16", "float16": "F16", "half": "F16", "fp16": "F16",
            "F16": "F16"}.get(name)
    if code is None:
        raise ValueError("dtype: qtl loads parameters as bfloat16 or float16 (or None: the config's torch_dtype), "
                         "not %r" % (dtype,))
    return _lib.DTYPE[code]
