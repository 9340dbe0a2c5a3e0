"""ctypes declarations of libqtl.so (include/qtl.h): structures, enums and prototypes.

Private: the public API is in qtl/__init__.py. Every structure mirrors its C definition field
for field, in order, with the C types' ctypes equivalents (a C enum is an int here: 4 bytes on
every ABI qtl builds for). The library is the one installed next to this file (pip install .),
or the file named by the environment variable QTL_LIBRARY (a development build).
"""
from __future__ import annotations

import ctypes
import os
from ctypes import (POINTER, Structure, c_char_p, c_double, c_int, c_int32, c_size_t, c_uint, c_uint32, c_uint64,
                    c_void_p)

# ---- enums (values pinned in qtl.h) -------------------------------------------------------

# enum qtl_dtype, in the reference crate's declaration order
DTYPE_NAMES = ("BOOL", "F4", "F6_E2M3", "F6_E3M2", "U8", "I8", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F8_E4M3FNUZ",
               "F8_E5M2FNUZ", "I16", "U16", "F16", "BF16", "I32", "U32", "F32", "C64", "F64", "I64", "U64")
DTYPE_COUNT = 22
DTYPE = {name: i for i, name in enumerate(DTYPE_NAMES)}

SEV_INFO, SEV_WARNING, SEV_ERROR = 0, 1, 2
SEVERITY_NAMES = ("info", "warning", "error")

# enum qtl_read_level
READ_ALL, READ_SCALES, READ_SCALES_DEEP, READ_NONE = 0, 1, 2, 3

# enum qtl_status values the Python layer tests for
OK = 0
ERR_INVALID_ARGUMENT = -1
ERR_NOMEM = -2
ERR_OPEN = -4
ERR_UNSUPPORTED = -6
ERR_NO_CHECKPOINT = -45
ERR_CHECKPOINT = -46


# ---- structures ---------------------------------------------------------------------------

class Allocator(Structure):
    """struct qtl_allocator"""
    _fields_ = [("alloc", c_void_p), ("free", c_void_p), ("opaque", c_void_p)]


class OpenOptions(Structure):
    """struct qtl_open_options"""
    _fields_ = [("allocator", POINTER(Allocator)), ("max_header_bytes", c_uint64)]


class Diag(Structure):
    """struct qtl_diag"""
    _fields_ = [("severity", c_int), ("code", c_int), ("id", c_char_p), ("file", c_char_p), ("tensor", c_char_p),
                ("message", c_char_p)]


class TensorInfo(Structure):
    """struct qtl_tensor_info"""
    _fields_ = [("name", c_char_p), ("file", c_char_p), ("dtype", c_int), ("ndim", c_uint32),
                ("shape", POINTER(c_uint64)), ("numel", c_uint64), ("nbytes", c_uint64), ("begin", c_uint64),
                ("end", c_uint64), ("file_offset", c_uint64)]


class ModelShape(Structure):
    """struct qtl_model_shape"""
    _fields_ = [("arch", c_int), ("hidden", c_uint32), ("heads", c_uint32), ("kv_heads", c_uint32),
                ("head_dim", c_uint32), ("intermediate", c_uint32), ("layers", c_uint32), ("vocab", c_uint32),
                ("tie_word_embeddings", c_int), ("qkv_bias", c_int), ("qk_norm", c_int), ("params_dtype", c_int),
                ("experts", c_uint32), ("moe_intermediate", c_uint32), ("experts_per_tok", c_uint32),
                ("sparse_step", c_uint32)]


class LayerQuant(Structure):
    """struct qtl_layer_quant"""
    _fields_ = [("scheme", c_int), ("bits", c_uint32), ("group_size", c_uint32), ("block", c_uint32 * 2),
                ("symmetric", c_int), ("actorder", c_int), ("static_input", c_int), ("input_symmetric", c_int)]


class LayerInfo(Structure):
    """struct qtl_layer_info"""
    _fields_ = [("prefix", c_char_p), ("quant", LayerQuant), ("nmodules", c_size_t), ("modules", c_char_p * 3)]


PROGRESS_FN = ctypes.CFUNCTYPE(None, c_void_p, c_size_t, c_size_t)
PROGRESS_BYTES_FN = ctypes.CFUNCTYPE(None, c_void_p, c_uint64, c_uint64)


class LoadOptions(Structure):
    """struct qtl_load_options (C callers use designated initializers; here every field is set
    by the constructor's caller, see qtl._api._load_options)."""
    _fields_ = [("tp", c_uint32), ("rank", c_uint32),
                ("dtype_override", c_int),
                ("allow", POINTER(c_char_p)), ("nallow", c_size_t),
                ("allocator", POINTER(Allocator)),
                ("progress", PROGRESS_FN), ("progress_ud", c_void_p),
                ("verify", c_int),
                ("threads", c_uint),
                ("direct", c_int),
                ("progress_bytes", PROGRESS_BYTES_FN),
                ("pp", c_uint32), ("pp_rank", c_uint32),
                ("pp_partition", c_char_p),
                ("ep", c_int)]


class ParamInfo(Structure):
    """struct qtl_param_info"""
    _fields_ = [("name", c_char_p), ("kind", c_char_p), ("dtype", c_int), ("ndim", c_uint32),
                ("shape", POINTER(c_uint64)), ("data", c_void_p), ("nbytes", c_uint64)]


class CopyOp(Structure):
    """struct qtl_copy_op"""
    _fields_ = [("tensor", c_char_p), ("file", c_size_t), ("param", c_size_t),
                ("src_offset", c_uint64), ("rows", c_uint64), ("row_bytes", c_uint64), ("src_pitch", c_uint64),
                ("dst_offset", c_uint64), ("dst_pitch", c_uint64),
                ("slot", c_int32), ("expert", c_uint32), ("src_dtype", c_int), ("dst_dtype", c_int),
                ("superseded", c_int)]


RESERVE = 256


def new(struct: type) -> Structure:
    """A zeroed instance of `struct` followed by RESERVE zero bytes. Every structure passed to the
    library is made this way: a field a newer qtl.h appends to an options structure then reads as
    0 (what C's designated initializers give it), and one it appends to an output structure is
    written into the reserve instead of past the object. The exact layout is still tested
    (tests/python/test_binding.py compiles qtl.h and compares every size and offset)."""
    return struct.from_buffer(bytearray(ctypes.sizeof(struct) + RESERVE))


# ---- the library --------------------------------------------------------------------------

def library_path() -> str:
    """The libqtl.so this package loads: $QTL_LIBRARY, else the one installed beside this file."""
    return os.environ.get("QTL_LIBRARY") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "libqtl.so")


_P = c_void_p  # every opaque handle (qtl_ckpt_t *, qtl_load_t *, ...)
_PROTOTYPES = {
    # name: (restype, argtypes)
    "qtl_version_string": (c_char_p, []),
    "qtl_version_number": (c_uint, []),
    "qtl_strerror": (c_char_p, [c_int]),
    "qtl_errname": (c_char_p, [c_int]),
    "qtl_finding_id": (c_char_p, [c_int]),
    "qtl_finding_severity": (c_int, [c_int]),
    "qtl_finding_doc": (c_char_p, [c_int]),
    "qtl_finding_lookup": (c_int, [c_char_p, POINTER(c_int)]),
    "qtl_dtype_name": (c_char_p, [c_int]),
    "qtl_dtype_bits": (c_uint, [c_int]),
    # one safetensors file
    "qtl_st_open_file": (c_int, [c_char_p, POINTER(OpenOptions), POINTER(_P)]),
    "qtl_st_close": (None, [_P]),
    "qtl_st_errmsg": (c_char_p, [_P]),
    "qtl_st_metadata_count": (c_size_t, [_P]),
    "qtl_st_metadata_at": (c_int, [_P, c_size_t, POINTER(c_char_p), POINTER(c_char_p)]),
    "qtl_st_header_size": (c_uint64, [_P]),
    "qtl_st_file_size": (c_uint64, [_P]),
    # checkpoints
    "qtl_ckpt_open": (c_int, [c_char_p, POINTER(OpenOptions), POINTER(_P)]),
    "qtl_ckpt_close": (None, [_P]),
    "qtl_ckpt_errmsg": (c_char_p, [_P]),
    "qtl_ckpt_errcode": (c_int, [_P]),
    "qtl_ckpt_dir": (c_char_p, [_P]),
    "qtl_ckpt_index_path": (c_char_p, [_P]),
    "qtl_ckpt_shard_count": (c_size_t, [_P]),
    "qtl_ckpt_shard_name": (c_char_p, [_P, c_size_t]),
    "qtl_ckpt_shard": (c_int, [_P, c_size_t, POINTER(_P)]),
    "qtl_ckpt_check": (c_int, [_P]),
    "qtl_ckpt_diag_count": (c_size_t, [_P]),
    "qtl_ckpt_diag_at": (c_int, [_P, c_size_t, POINTER(Diag)]),
    "qtl_ckpt_tensor_count": (c_size_t, [_P]),
    "qtl_ckpt_tensor_at": (c_int, [_P, c_size_t, POINTER(TensorInfo)]),
    "qtl_ckpt_tensor_find": (c_int, [_P, c_char_p, POINTER(c_size_t)]),
    "qtl_ckpt_read_tensor": (c_int, [_P, c_size_t, c_void_p, c_size_t]),
    # model configuration
    "qtl_config_open": (c_int, [c_char_p, POINTER(OpenOptions), c_int, POINTER(_P)]),
    "qtl_config_close": (None, [_P]),
    "qtl_config_errmsg": (c_char_p, [_P]),
    "qtl_config_shape": (POINTER(ModelShape), [_P]),
    "qtl_config_method": (c_int, [_P]),
    "qtl_layer_scheme_name": (c_char_p, [c_int]),
    "qtl_arch_name": (c_char_p, [c_int]),
    # loading
    "qtl_pp_layers": (c_int, [c_uint32, c_uint32, c_uint32, c_char_p, POINTER(c_uint32), POINTER(c_uint32),
                              ctypes.c_char_p, c_size_t]),
    "qtl_load_open": (c_int, [c_char_p, POINTER(LoadOptions), POINTER(_P)]),
    "qtl_load_run": (c_int, [_P]),
    "qtl_load_bytes_needed": (c_uint64, [_P]),
    "qtl_load_set_buffer": (c_int, [_P, c_void_p, c_size_t]),
    "qtl_load_bind": (c_int, [_P, c_size_t, c_void_p, c_uint64]),
    "qtl_load_process": (c_int, [_P]),
    "qtl_load_write": (c_int, [_P, c_char_p, c_char_p]),
    "qtl_load_close": (None, [_P]),
    "qtl_load_errmsg": (c_char_p, [_P]),
    "qtl_load_errcode": (c_int, [_P]),
    "qtl_load_fail_id": (c_char_p, [_P]),
    "qtl_load_param_count": (c_size_t, [_P]),
    "qtl_load_param_at": (c_int, [_P, c_size_t, POINTER(ParamInfo)]),
    "qtl_load_finding_count": (c_size_t, [_P]),
    "qtl_load_finding_at": (c_int, [_P, c_size_t, POINTER(Diag)]),
    "qtl_load_layer_count": (c_size_t, [_P]),
    "qtl_load_layer_at": (c_int, [_P, c_size_t, POINTER(LayerInfo)]),
    "qtl_load_op_count": (c_size_t, [_P]),
    "qtl_load_op_at": (c_int, [_P, c_size_t, POINTER(CopyOp)]),
    "qtl_load_file_count": (c_size_t, [_P]),
    "qtl_load_file_at": (c_char_p, [_P, c_size_t, POINTER(c_uint64)]),
    "qtl_load_plan_hash": (c_uint64, [_P]),
    "qtl_load_bytes_to_read": (c_uint64, [_P]),
    "qtl_load_bytes_read": (c_uint64, [_P]),
    "qtl_load_seconds": (c_double, [_P]),
    "qtl_load_process_seconds": (c_double, [_P]),
}


def _load() -> ctypes.CDLL:
    path = library_path()
    try:
        lib = ctypes.CDLL(path)  # CDLL: the GIL is released during every call
    except OSError as e:
        raise ImportError("qtl: cannot load %s (%s); reinstall the package (pip install .) or set QTL_LIBRARY to a "
                          "libqtl.so built with -DQTL_SHARED=ON" % (path, e)) from e
    for name, (res, args) in _PROTOTYPES.items():
        fn = getattr(lib, name)
        fn.restype = res
        fn.argtypes = args
    return lib


lib = _load()


def s(b: bytes | None) -> str | None:
    """A C string from the library as str (UTF-8; names and messages are UTF-8)."""
    return None if b is None else b.decode("utf-8", "replace")


def enc(x: str | os.PathLike | None) -> bytes | None:
    """A str or path as a C string."""
    if x is None:
        return None
    return os.fsencode(x) if not isinstance(x, str) else x.encode("utf-8")
