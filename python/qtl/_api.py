"""The qtl Python API over libqtl.so (see qtl/__init__.py for the overview)."""
from __future__ import annotations

import ctypes
import os
from ctypes import byref, c_char_p, c_int, c_size_t, c_uint32, c_uint64, c_void_p
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, Union

from . import _dtypes, _lib
from ._lib import enc, lib, s

PathLike = Union[str, "os.PathLike[str]"]

__all__ = ["QtlError", "Finding", "TensorInfo", "ParamInfo", "LayerInfo", "CopyOp", "Checkpoint", "Plan", "Weights",
           "open", "inspect", "verify", "plan", "load", "version", "finding_catalogue", "pp_layers", "status_name"]


# ---- errors and findings --------------------------------------------------------------------

def status_name(status: int) -> str:
    """qtl_errname: the name of a status code without its prefix ("INVALID_OFFSET"), "UNKNOWN" outside the table."""
    return s(lib.qtl_errname(status)) or "UNKNOWN"


@dataclass(frozen=True)
class Finding:
    """One finding (struct qtl_diag): a stable ID from qtl.h's QTL_FINDING_MAP ("scale.nan"), the
    severity reported ("info", "warning" or "error", after `allow`), the message, the file and the
    checkpoint tensor it is about (None when it has none), the status name of its code ("OK" for
    warnings, "CHECKPOINT" for the loading rules, ...), and the global rank (pp_rank * tp +
    tp_rank) of the load that reported it."""
    id: str
    severity: str
    message: str
    file: str | None = None
    tensor: str | None = None
    status: str = "OK"
    rank: int | None = None

    @property
    def is_error(self) -> bool:
        return self.severity == "error"

    def __str__(self) -> str:
        return "%s [%s]: %s" % (self.severity, self.id, self.message)


class QtlError(Exception):
    """A qtl call failed. Attributes:

    status       the qtl_status code (an int < 0), or None for a failure the Python layer found
                 (e.g. a vLLM model whose parameters differ from qtl's plan);
    status_name  its name without prefix: "CHECKPOINT" (a loading rule the checkpoint breaks: see
                 finding_id), "OPEN", "TRUNCATED", ...; "PLAN_MISMATCH" for the vLLM comparison;
    message      the library's message (with file, tensor and rule);
    finding_id   the ID of the finding that caused it ("scale.nan", "tp.heads", ...) or None;
    tensor, file the checkpoint tensor and the file of that finding (None when it has none);
    findings     every error-level finding of the load (the first is the one named above).
    """

    def __init__(self, message: str, *, status: int | None = None, name: str | None = None,
                 finding: Finding | None = None, findings: Sequence[Finding] = (), finding_id: str | None = None,
                 tensor: str | None = None, file: str | None = None) -> None:
        self.status = status
        self.status_name = name or (status_name(status) if status is not None else "ERROR")
        self.message = message
        self.finding = finding
        self.finding_id = finding_id or (finding.id if finding else None)
        self.tensor = tensor or (finding.tensor if finding else None)
        self.file = file or (finding.file if finding else None)
        self.findings = list(findings)
        super().__init__(self._text())

    def _text(self) -> str:
        t = self.status_name + ": "
        if self.finding_id:
            t += "[%s] " % self.finding_id
        t += self.message
        where = []
        if self.tensor and ("'%s'" % self.tensor) not in self.message:
            where.append("tensor '%s'" % self.tensor)
        if self.file:
            where.append("file %s" % self.file)
        if where:
            t += " (%s)" % ", ".join(where)
        more = [f for f in self.findings if f is not self.finding and f.is_error]
        if more:
            t += "; %d more error(s): %s" % (len(more), "; ".join("[%s] %s" % (f.id, f.message) for f in more[:8]))
            if len(more) > 8:
                t += "; ..."
        return t


def _finding(d: _lib.Diag, rank: int | None = None) -> Finding:
    sev = d.severity
    return Finding(id=s(d.id) or "", severity=_lib.SEVERITY_NAMES[sev] if 0 <= sev < 3 else "error",
                   message=s(d.message) or "", file=s(d.file), tensor=s(d.tensor), status=status_name(d.code),
                   rank=rank)


def finding_catalogue() -> list[tuple[str, str, str]]:
    """Every finding ID qtl reports, with its default severity and one-line description, in the
    order of qtl.h's QTL_FINDING_MAP: [(id, severity, doc), ...]."""
    out = []
    i = 0
    while True:
        fid = lib.qtl_finding_id(i)
        if fid is None:
            return out
        out.append((s(fid), _lib.SEVERITY_NAMES[lib.qtl_finding_severity(i)], s(lib.qtl_finding_doc(i))))
        i += 1


def _check_finding_id(fid: str) -> None:
    v = c_int()
    if not isinstance(fid, str) or lib.qtl_finding_lookup(enc(fid), byref(v)) != _lib.OK:
        raise ValueError("allow: %r is not a qtl finding ID (qtl.finding_catalogue() lists them)" % (fid,))


def version() -> str:
    """The version of the libqtl.so loaded ("MAJOR.MINOR.PATCH")."""
    return s(lib.qtl_version_string()) or ""


def pp_layers(layers: int, pp: int, pp_rank: int, partition: str | None = None) -> tuple[int, int]:
    """vLLM 0.32's get_pp_indices: pipeline stage pp_rank of pp holds decoder layers [start, end).
    `partition` is VLLM_PP_LAYER_PARTITION ("10,12,10"). Raises ValueError with vLLM's text."""
    start, end = c_uint32(), c_uint32()
    msg = ctypes.create_string_buffer(512)
    rc = lib.qtl_pp_layers(layers, pp, pp_rank, enc(partition), byref(start), byref(end),
                           ctypes.cast(msg, c_char_p), len(msg))
    if rc:
        raise ValueError(msg.value.decode("utf-8", "replace"))
    return start.value, end.value


# ---- descriptions ---------------------------------------------------------------------------

def _shape(ndim: int, ptr: Any) -> tuple[int, ...]:
    return tuple(int(ptr[k]) for k in range(ndim)) if ndim else ()


@dataclass(frozen=True)
class TensorInfo:
    """One checkpoint tensor (struct qtl_tensor_info): its name, the shard file holding it, the
    safetensors dtype name ("F8_E4M3"), its shape, element and byte counts, data_offsets
    (relative to the file's data buffer) and the absolute offset of its first byte."""
    name: str
    file: str
    dtype: str
    shape: tuple[int, ...]
    numel: int
    nbytes: int
    data_offsets: tuple[int, int]
    file_offset: int


@dataclass(frozen=True)
class ParamInfo:
    """One parameter of the rank (struct qtl_param_info): vLLM's name and parameter class, the
    safetensors dtype name, the per-rank shape, its size in bytes, and its index in the plan."""
    name: str
    kind: str
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    index: int


@dataclass(frozen=True)
class LayerInfo:
    """One vLLM linear layer of the rank (struct qtl_layer_info): its module name, the scheme the
    config gives it (qtl_layer_scheme_name, e.g. "ct-w8a8-fp8-tensor") and the checkpoint modules
    it loads from."""
    prefix: str
    scheme: str
    bits: int
    group_size: int
    modules: tuple[str, ...]


@dataclass(frozen=True)
class CopyOp:
    """One planned copy (struct qtl_copy_op): `rows` rows of `row_bytes` bytes from `src_offset`
    of file `file` (index into Plan.files), `src_pitch` apart, to byte `dst_offset` of parameter
    `param` (index into Plan.params), `dst_pitch` apart."""
    tensor: str
    file: int
    param: int
    src_offset: int
    rows: int
    row_bytes: int
    src_pitch: int
    dst_offset: int
    dst_pitch: int
    slot: int
    expert: int | None
    src_dtype: str
    dst_dtype: str
    superseded: bool


# ---- buffers --------------------------------------------------------------------------------

def _address(buf: Any) -> tuple[int, int]:
    """(address, nbytes) of writable, C-contiguous host memory: a torch tensor on the CPU (pinned
    or not), a numpy array, or any writable buffer (bytearray, memoryview, mmap, ctypes array)."""
    if hasattr(buf, "data_ptr") and hasattr(buf, "is_contiguous"):  # torch.Tensor
        if buf.device.type != "cpu":
            raise ValueError("a %s tensor: qtl fills host memory; fill a pinned CPU tensor and copy it to the "
                             "device (qtl.vllm does)" % buf.device)
        if not buf.is_contiguous():
            raise ValueError("a non-contiguous tensor: qtl fills contiguous C-order memory")
        return int(buf.data_ptr()), int(buf.numel() * buf.element_size())
    if hasattr(buf, "__array_interface__") and hasattr(buf, "ctypes"):  # numpy.ndarray
        if not buf.flags["C_CONTIGUOUS"] or not buf.flags["WRITEABLE"]:
            raise ValueError("a numpy array that is not C-contiguous and writable")
        return int(buf.ctypes.data), int(buf.nbytes)
    mv = memoryview(buf)
    if mv.readonly or not mv.c_contiguous:
        raise ValueError("a read-only or non-contiguous buffer")
    n = mv.nbytes
    if n == 0:
        return 0, 0
    return ctypes.addressof(ctypes.c_char.from_buffer(mv.cast("B"))), n


def _wrap(addr: int, nbytes: int, owner: Any) -> Any:
    """A ctypes byte array over [addr, addr + nbytes) that keeps `owner` alive."""
    arr = (ctypes.c_uint8 * nbytes).from_address(addr)
    arr._qtl_owner = owner  # the handle whose memory this is: closed only after the last view goes
    return arr


def _alloc(backend: str, p: ParamInfo, pin_memory: bool = False) -> Any:
    if backend == "torch":
        import torch
        t, shape = _dtypes.torch_layout(p.dtype, p.shape, p.nbytes)
        return torch.empty(shape, dtype=t, pin_memory=pin_memory)
    import numpy as np
    t, shape = _dtypes.numpy_layout(p.dtype, p.shape, p.nbytes)
    return np.empty(shape, dtype=t)


def _view(backend: str, p: ParamInfo, addr: int, owner: Any) -> Any:
    """The parameter's bytes at addr as a tensor / array without a copy (keeps owner alive)."""
    if backend == "torch":
        import torch
        t, shape = _dtypes.torch_layout(p.dtype, p.shape, p.nbytes)
        if p.nbytes == 0:
            return torch.empty(shape, dtype=t)
        return torch.frombuffer(_wrap(addr, p.nbytes, owner), dtype=torch.uint8).view(t).reshape(shape)
    import numpy as np
    t, shape = _dtypes.numpy_layout(p.dtype, p.shape, p.nbytes)
    if p.nbytes == 0:
        return np.empty(shape, dtype=t)
    return np.frombuffer(_wrap(addr, p.nbytes, owner), dtype=np.uint8).view(t).reshape(shape)


class Weights(dict):
    """The rank's parameters: a dict of vLLM's parameter names to torch tensors or numpy arrays,
    in the plan's order, plus

    dtypes    name -> the safetensors dtype of the parameter ("F8_E4M3", "BF16", ...): with the
              numpy backend this says what a uint8 array holds;
    shapes    name -> the parameter's logical per-rank shape;
    findings  the load's findings (warnings and infos: errors raise);
    backend   "torch" or "numpy";
    zero_copy True when the values are views of qtl's memory (stage "processed" without copy):
              that memory stays allocated while any of them is referenced.
    """

    def __init__(self, backend: str) -> None:
        super().__init__()
        self.backend = backend
        self.dtypes: dict[str, str] = {}
        self.shapes: dict[str, tuple[int, ...]] = {}
        self.findings: list[Finding] = []
        self.zero_copy = False

    def typed(self, name: str) -> Any:
        """The numpy array of `name` viewed with its real dtype from ml_dtypes (bfloat16,
        float8_e4m3fn, ...) and its logical shape; numpy's own dtypes are returned as they are."""
        a = self[name]
        dt = self.dtypes[name]
        if self.backend != "numpy" or dt in _dtypes.NUMPY_NATIVE:
            return a
        if dt not in _dtypes.ML_DTYPES:
            raise TypeError("%s: no ml_dtypes type for %s" % (name, dt))
        import ml_dtypes
        v = a.view(getattr(ml_dtypes, _dtypes.ML_DTYPES[dt]))
        if dt == "F4":  # ml_dtypes' float4 is one element per byte: unpack the pairs (a copy)
            import numpy as np
            lo, hi = a & 0xF, a >> 4
            v = np.stack([lo, hi], axis=-1).reshape(self.shapes[name]).view(ml_dtypes.float4_e2m1fn)
        return v.reshape(self.shapes[name])


# ---- handles --------------------------------------------------------------------------------

class _Handle:
    _close: Callable[[Any], None]

    def __init__(self) -> None:
        self._h = c_void_p()

    def close(self) -> None:
        """Release the handle (memory it owns included). Idempotent; also run at garbage collection."""
        h = getattr(self, "_h", None)
        if h is not None and h.value:
            type(self)._close(h)
            self._h = c_void_p()

    def _live(self) -> c_void_p:
        if not self._h.value:
            raise ValueError("%s is closed" % type(self).__name__)
        return self._h

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


class Checkpoint(_Handle):
    """A checkpoint opened for inspection (qtl_ckpt_open): `path` is a directory (its
    model.safetensors.index.json, else every *.safetensors in it), an index.json file or one
    .safetensors file. Only the index is read at open; each shard is opened once, when a tensor in
    it is first described or read. Use as a context manager or call close()."""

    _close = staticmethod(lib.qtl_ckpt_close)

    def __init__(self, path: PathLike, *, max_header_bytes: int = 0) -> None:
        super().__init__()
        self.path = os.fspath(path)
        opts = _lib.new(_lib.OpenOptions)
        opts.allocator = None
        opts.max_header_bytes = max_header_bytes
        rc = lib.qtl_ckpt_open(enc(self.path), byref(opts), byref(self._h))
        if rc:
            msg = s(lib.qtl_ckpt_errmsg(self._h)) or "out of memory"
            self.close()
            raise QtlError(msg, status=rc, file=self.path)

    def _fail(self, rc: int) -> QtlError:
        return QtlError(s(lib.qtl_ckpt_errmsg(self._h)) or "", status=rc)

    @property
    def dir(self) -> str:
        """The directory the shards are in."""
        return s(lib.qtl_ckpt_dir(self._live())) or ""

    @property
    def index_path(self) -> str | None:
        """The model.safetensors.index.json read, None without one."""
        return s(lib.qtl_ckpt_index_path(self._live()))

    @property
    def files(self) -> list[str]:
        """The shard files, relative to `dir`."""
        h = self._live()
        return [s(lib.qtl_ckpt_shard_name(h, i)) or "" for i in range(lib.qtl_ckpt_shard_count(h))]

    def __len__(self) -> int:
        return int(lib.qtl_ckpt_tensor_count(self._live()))

    def _index(self, name: str) -> int:
        i = c_size_t()
        rc = lib.qtl_ckpt_tensor_find(self._live(), enc(name), byref(i))
        if rc:
            raise KeyError(name)
        return i.value

    def __contains__(self, name: object) -> bool:
        try:
            return isinstance(name, str) and self._index(name) >= 0
        except KeyError:
            return False

    def _info(self, i: int) -> TensorInfo:
        ti = _lib.new(_lib.TensorInfo)
        rc = lib.qtl_ckpt_tensor_at(self._live(), i, byref(ti))
        if rc:
            raise self._fail(rc)
        return TensorInfo(name=s(ti.name) or "", file=s(ti.file) or "", dtype=_lib.DTYPE_NAMES[ti.dtype],
                          shape=_shape(ti.ndim, ti.shape), numel=ti.numel, nbytes=ti.nbytes,
                          data_offsets=(ti.begin, ti.end), file_offset=ti.file_offset)

    def tensor(self, name: str) -> TensorInfo:
        """The description of tensor `name` (KeyError if the checkpoint has none)."""
        return self._info(self._index(name))

    def __getitem__(self, name: str) -> TensorInfo:
        return self.tensor(name)

    def tensors(self) -> list[TensorInfo]:
        """Every tensor: the index's entries, then those a shard holds that the index does not
        list (vLLM loads them too). Runs qtl_ckpt_check first, which opens every shard; a tensor
        whose shard cannot be read raises QtlError (check() lists every such finding instead)."""
        lib.qtl_ckpt_check(self._live())
        return [self._info(i) for i in range(len(self))]

    def names(self) -> list[str]:
        """Every tensor's name (opens every shard: the index may not list them all)."""
        return [t.name for t in self.tensors()]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def metadata(self, shard: int | str = 0) -> dict[str, str]:
        """The __metadata__ of a shard (its index in `files` or its name)."""
        h = self._live()
        i = self.files.index(shard) if isinstance(shard, str) else shard
        st = c_void_p()
        rc = lib.qtl_ckpt_shard(h, i, byref(st))
        if rc:
            raise self._fail(rc)
        out = {}
        k, v = c_char_p(), c_char_p()
        for j in range(lib.qtl_st_metadata_count(st)):
            lib.qtl_st_metadata_at(st, j, byref(k), byref(v))
            out[s(k.value) or ""] = s(v.value) or ""
        return out

    def check(self) -> list[Finding]:
        """qtl_ckpt_check: open every shard and check the index against them; every finding
        (shard-missing, shard-invalid, tensor-missing, tensor-duplicate, tensor-not-in-index)."""
        h = self._live()
        lib.qtl_ckpt_check(h)
        out = []
        d = _lib.new(_lib.Diag)
        for i in range(lib.qtl_ckpt_diag_count(h)):
            lib.qtl_ckpt_diag_at(h, i, byref(d))
            out.append(_finding(d))
        return out

    def read(self, name: str, backend: str = "torch") -> Any:
        """Tensor `name`'s bytes as stored (no conversion): a torch tensor, a numpy array (uint8
        plus Checkpoint.tensor(name).dtype where numpy has no such dtype) or bytes."""
        i = self._index(name)
        ti = self._info(i)
        p = ParamInfo(ti.name, "", ti.dtype, ti.shape, ti.nbytes, i)
        buf = bytearray(ti.nbytes) if backend == "bytes" else _alloc(backend, p)
        addr, n = _address(buf)
        rc = lib.qtl_ckpt_read_tensor(self._live(), i, c_void_p(addr), n)
        if rc:
            raise self._fail(rc)
        return bytes(buf) if backend == "bytes" else buf


def open(path: PathLike, **kw: Any) -> Checkpoint:  # noqa: A001 (qtl.open, as gzip.open)
    """Open a checkpoint for inspection: qtl.open(path).tensors(), .files, .check(), .read(name)."""
    return Checkpoint(path, **kw)


def inspect(path: PathLike) -> list[TensorInfo]:
    """Every tensor of the checkpoint at `path`: name, file, dtype, shape, sizes and offsets."""
    with Checkpoint(path) as ck:
        return ck.tensors()


_ENV = object()  # pp_partition default: VLLM_PP_LAYER_PARTITION, as vLLM and the CLI read it
_READ_LEVELS = {"all": _lib.READ_ALL, "scales": _lib.READ_SCALES, "scales-deep": _lib.READ_SCALES_DEEP,
                "none": _lib.READ_NONE}


class Plan(_Handle):
    """The rank's plan (qtl_load_open): every parameter vLLM creates on this rank (vLLM's names,
    dtypes, per-rank shapes) and every copy its weight loaders make, built from the shard headers
    and config.json; no tensor data is read until run() / fill().

    Arguments: `tp` and `rank` (the tensor-parallel size and this rank's tp rank), `pp` and
    `pp_rank` (pipeline stages and this rank's stage; vLLM's global rank is pp_rank * tp + rank),
    `read` ("all"; "scales", "scales-deep", "none" for verification: unread parameters get no
    data), `allow` (finding IDs downgraded to warnings), `dtype` (None: config.json's torch_dtype;
    "bfloat16" / "float16" / a torch dtype: vLLM's --dtype), `threads` (reader threads; None: the
    cores), `direct` (O_DIRECT reads), `pp_partition` (VLLM_PP_LAYER_PARTITION; default: the
    environment's when pp > 1), `ep` (expert parallelism, vLLM's --enable-expert-parallel: the
    tp ranks split a MoE model's experts), `progress(done_bytes, total_bytes)` (called during
    run from one thread at a time).

    Raises QtlError when the checkpoint cannot be planned: finding_id names a layout rule the tp
    size breaks (tp.heads, tp.kv-heads, ...) or config.unsupported. Plan-level findings
    (tensor.shape, scale.unwritten, ...) do not raise here: they are in `findings`, and run()
    / fill() raise for those at error level.

    A plan runs once (qtl_load_run is once per handle). Use as a context manager or call close();
    tensors that view the plan's memory (weights(copy=False)) keep it alive.
    """

    _close = staticmethod(lib.qtl_load_close)

    def __init__(self, path: PathLike, tp: int = 1, rank: int = 0, pp: int = 1, pp_rank: int = 0, *,
                 read: str | int = "all", allow: Iterable[str] = (), dtype: Any = None, threads: int | None = None,
                 direct: bool = False, pp_partition: Any = _ENV, ep: bool = False,
                 progress: Callable[[int, int], None] | None = None) -> None:
        super().__init__()
        self.path = os.fspath(path)
        self.tp, self.rank, self.pp, self.pp_rank = int(tp), int(rank), int(pp), int(pp_rank)
        if self.tp < 1 or not 0 <= self.rank < self.tp:
            raise ValueError("tp must be >= 1 and 0 <= rank < tp (tp=%r, rank=%r)" % (tp, rank))
        if self.pp < 1 or not 0 <= self.pp_rank < self.pp:
            raise ValueError("pp must be >= 1 and 0 <= pp_rank < pp (pp=%r, pp_rank=%r)" % (pp, pp_rank))
        level = _READ_LEVELS.get(read, read) if isinstance(read, str) else int(read)
        if level not in _READ_LEVELS.values():
            raise ValueError("read: one of %s" % ", ".join(_READ_LEVELS))
        self.read_level = level
        allow = list(allow)
        for a in allow:
            _check_finding_id(a)
        if pp_partition is _ENV:
            pp_partition = os.environ.get("VLLM_PP_LAYER_PARTITION") if self.pp > 1 else None
        if threads is not None and int(threads) < 0:
            raise ValueError("threads: a count >= 1, or None for the number of cores")
        # every field set: the C side uses designated initializers (the rest zero)
        self._allow = (c_char_p * max(len(allow), 1))(*[enc(a) for a in allow])
        self._progress = _lib.PROGRESS_BYTES_FN(lambda ud, done, total: progress(done, total)) if progress else \
            _lib.PROGRESS_BYTES_FN()
        self._partition = enc(pp_partition)
        o = _lib.new(_lib.LoadOptions)
        o.tp, o.rank = self.tp, self.rank
        o.dtype_override = _dtypes.override_code(dtype)
        o.allow = ctypes.cast(self._allow, ctypes.POINTER(c_char_p)) if allow else None
        o.nallow = len(allow)
        o.allocator = None
        o.progress = _lib.PROGRESS_FN()  # NULL: no planning progress
        o.verify = level
        o.threads = int(threads or 0)
        o.direct = 1 if direct else 0
        o.progress_bytes = self._progress
        o.progress_ud = None
        o.pp, o.pp_rank = self.pp, self.pp_rank
        o.pp_partition = self._partition
        o.ep = 1 if ep else 0
        self._options = o
        self._bound: dict[int, Any] = {}
        self._ran = False
        self._processed = False
        self._params: list[ParamInfo] | None = None
        self._files_of: dict[str, str] | None = None
        rc = lib.qtl_load_open(enc(self.path), byref(o), byref(self._h))
        if rc:
            msg = s(lib.qtl_load_errmsg(self._h)) if self._h.value else "out of memory"
            fid = s(lib.qtl_load_fail_id(self._h)) if self._h.value else None
            self.close()
            raise QtlError(msg or "", status=rc, finding_id=fid, file=self.path if not fid else None)

    # -- the plan --

    @property
    def global_rank(self) -> int:
        """vLLM's global rank of this plan: pp_rank * tp + rank."""
        return self.pp_rank * self.tp + self.rank

    @property
    def params(self) -> list[ParamInfo]:
        """Every parameter of the rank, in the plan's order (re-read after process())."""
        if self._params is None:
            h = self._live()
            pi = _lib.new(_lib.ParamInfo)
            out = []
            for i in range(lib.qtl_load_param_count(h)):
                lib.qtl_load_param_at(h, i, byref(pi))
                out.append(ParamInfo(name=s(pi.name) or "", kind=s(pi.kind) or "", dtype=_lib.DTYPE_NAMES[pi.dtype],
                                     shape=_shape(pi.ndim, pi.shape), nbytes=int(pi.nbytes), index=i))
            self._params = out
        return self._params

    def param(self, name: str) -> ParamInfo:
        """The parameter called `name` (KeyError if the plan has none)."""
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def __len__(self) -> int:
        return len(self.params)

    @property
    def findings(self) -> list[Finding]:
        """Every finding so far: the plan's, and after run() the values' and the files'."""
        h = self._live()
        d = _lib.new(_lib.Diag)
        out = []
        for i in range(lib.qtl_load_finding_count(h)):
            lib.qtl_load_finding_at(h, i, byref(d))
            f = _finding(d, self.global_rank)
            if f.file is None and f.tensor:  # the library names the tensor; its file is in the plan
                f = replace(f, file=self._tensor_files().get(f.tensor))
            out.append(f)
        return out

    def _tensor_files(self) -> dict[str, str]:
        if self._files_of is None:
            files = [f for f, _ in self.files]
            self._files_of = {op.tensor: files[op.file] for op in self.ops() if op.file < len(files)}
        return self._files_of

    def errors(self) -> list[Finding]:
        """The error-level findings so far."""
        return [f for f in self.findings if f.is_error]

    def raise_for_errors(self, status: int | None = None) -> None:
        """Raise QtlError for the first error-level finding (all of them listed), if there is one."""
        errs = self.errors()
        if errs:
            code = status if status else _lib.ERR_CHECKPOINT
            raise QtlError(errs[0].message, status=code, finding=errs[0], findings=errs)

    @property
    def files(self) -> list[tuple[str, int]]:
        """The files the plan reads: (path, size when planned)."""
        h = self._live()
        out = []
        size = c_uint64()
        for i in range(lib.qtl_load_file_count(h)):
            p = lib.qtl_load_file_at(h, i, byref(size))
            out.append((s(p) or "", size.value))
        return out

    @property
    def layers(self) -> list[LayerInfo]:
        """The rank's linear layers with the scheme the config gives each."""
        h = self._live()
        li = _lib.new(_lib.LayerInfo)
        out = []
        for i in range(lib.qtl_load_layer_count(h)):
            lib.qtl_load_layer_at(h, i, byref(li))
            out.append(LayerInfo(prefix=s(li.prefix) or "", scheme=s(lib.qtl_layer_scheme_name(li.quant.scheme)) or "",
                                 bits=li.quant.bits, group_size=li.quant.group_size,
                                 modules=tuple(s(li.modules[k]) or "" for k in range(min(li.nmodules, 3)))))
        return out

    def ops(self) -> list[CopyOp]:
        """Every planned copy."""
        h = self._live()
        op = _lib.new(_lib.CopyOp)
        out = []
        for i in range(lib.qtl_load_op_count(h)):
            lib.qtl_load_op_at(h, i, byref(op))
            out.append(CopyOp(tensor=s(op.tensor) or "", file=op.file, param=op.param, src_offset=op.src_offset,
                              rows=op.rows, row_bytes=op.row_bytes, src_pitch=op.src_pitch, dst_offset=op.dst_offset,
                              dst_pitch=op.dst_pitch, slot=op.slot,
                              expert=None if op.expert == 0xFFFFFFFF else op.expert,
                              src_dtype=_lib.DTYPE_NAMES[op.src_dtype], dst_dtype=_lib.DTYPE_NAMES[op.dst_dtype],
                              superseded=bool(op.superseded)))
        return out

    @property
    def plan_hash(self) -> int:
        """64-bit FNV-1a of the files, tensor table, config and layout (equal on every rank)."""
        return int(lib.qtl_load_plan_hash(self._live()))

    @property
    def bytes_needed(self) -> int:
        """Bytes of parameter memory qtl allocates at run for the parameters not bound."""
        return int(lib.qtl_load_bytes_needed(self._live()))

    @property
    def bytes_to_read(self) -> int:
        return int(lib.qtl_load_bytes_to_read(self._live()))

    @property
    def bytes_read(self) -> int:
        return int(lib.qtl_load_bytes_read(self._live()))

    @property
    def seconds(self) -> float:
        return float(lib.qtl_load_seconds(self._live()))

    @property
    def process_seconds(self) -> float:
        return float(lib.qtl_load_process_seconds(self._live()))

    # -- filling --

    def _param_index(self, key: str | int) -> int:
        if isinstance(key, int):
            if not 0 <= key < len(self.params):
                raise IndexError(key)
            return key
        return self.param(key).index

    def bind(self, key: str | int, buffer: Any) -> None:
        """Parameter `key` (name or index) is written into `buffer` by run(): writable C-contiguous
        host memory of exactly the parameter's bytes (a CPU torch tensor, pinned or not, of any
        dtype; a numpy array; a bytearray, memoryview, mmap or ctypes array). The buffer is kept
        referenced until the plan is closed. Unbound parameters go into qtl's own memory."""
        if self._ran:
            raise ValueError("bind after run: bind every buffer first")
        i = self._param_index(key)
        addr, n = _address(buffer)
        p = self.params[i]
        if n != p.nbytes:
            raise ValueError("%s: a buffer of %d bytes, the parameter has %d (%s %s)" % (p.name, n, p.nbytes, p.dtype,
                                                                                        list(p.shape)))
        rc = lib.qtl_load_bind(self._live(), i, c_void_p(addr or None), n)
        if rc:
            raise QtlError(s(lib.qtl_load_errmsg(self._h)) or "", status=rc)
        self._bound[i] = buffer

    def set_buffer(self, buffer: Any) -> None:
        """qtl_load_set_buffer: the parameters not bound go into `buffer` (writable host memory of
        at least bytes_needed bytes: pinned memory, an arena reused across loads) instead of a
        fresh arena, laid out by qtl (weights() gives the views). Kept referenced until close."""
        if self._ran:
            raise ValueError("set_buffer after run")
        addr, n = _address(buffer)
        rc = lib.qtl_load_set_buffer(self._live(), c_void_p(addr or None), n)
        if rc:
            raise QtlError(s(lib.qtl_load_errmsg(self._h)) or "", status=rc)
        self._buffer = buffer

    def run(self, check: bool = True) -> list[Finding]:
        """qtl_load_run: read every planned byte (at the read level) into the bound buffers and
        qtl's memory, then check the values. Returns the findings; with `check`, raises QtlError
        for the first error-level finding (its ID, tensor and file; all errors in .findings)."""
        if self._ran:
            raise ValueError("a plan runs once (qtl_load_run is once per handle)")
        self._ran = True
        rc = lib.qtl_load_run(self._live())
        if rc == _lib.ERR_NOMEM or (rc and not self.errors()):
            raise QtlError(s(lib.qtl_load_errmsg(self._h)) or "", status=rc)
        if check and rc:
            self.raise_for_errors(rc)
        return self.findings

    def fill(self, buffers: Mapping[str, Any], check: bool = True) -> list[Finding]:
        """Bind each named buffer (see bind) and run. With `check` (the default) an error-level
        finding of the plan raises QtlError before any byte is written, and one found while reading
        (scale.nan, tensor.read, ...) raises after the run."""
        if check:
            self.raise_for_errors()
        names = {p.name for p in self.params}
        unknown = [k for k in buffers if k not in names]
        if unknown:
            raise KeyError("not parameters of this plan: %s" % ", ".join(sorted(unknown)))
        for k, b in buffers.items():
            self.bind(k, b)
        return self.run(check=check)

    def process(self) -> None:
        """qtl_load_process: stage "processed" (docs/processed.md), each scheme's post-processing
        as vLLM's process_weights_after_loading, without kernel layout changes. Parameters may be
        renamed, replaced or dropped: `params` is re-read."""
        rc = lib.qtl_load_process(self._live())
        if rc:
            raise QtlError(s(lib.qtl_load_errmsg(self._h)) or "", status=rc)
        self._processed = True
        self._params = None

    def weights(self, backend: str = "torch", copy: bool = False) -> Weights:
        """After run (and process): every parameter read, as tensors (backend "torch") or arrays
        ("numpy"). Bound parameters are the caller's buffers; the others are views of qtl's memory
        without a copy (that memory lives while a view does), or copies with `copy`."""
        if not self._ran:
            raise ValueError("weights before run")
        if backend not in ("torch", "numpy"):
            raise ValueError("backend: 'torch' or 'numpy'")
        h = self._live()
        out = Weights(backend)
        out.findings = self.findings
        out.zero_copy = not copy
        pi = _lib.new(_lib.ParamInfo)
        for p in self.params:
            lib.qtl_load_param_at(h, p.index, byref(pi))
            if not pi.data and p.nbytes:
                continue  # not read at this read level
            b = self._bound.get(p.index) if not self._processed else None
            if b is None:
                b = _view(backend, p, int(pi.data or 0), self)
                if copy:
                    b = b.clone() if backend == "torch" else b.copy()
            out[p.name] = b
            out.dtypes[p.name] = p.dtype
            out.shapes[p.name] = p.shape
        return out

    def write(self, path: PathLike, source: str | None = None) -> None:
        """qtl_load_write: the rank's parameters as one safetensors file (qtl shard's format)."""
        rc = lib.qtl_load_write(self._live(), enc(os.fspath(path)), enc(source))
        if rc:
            raise QtlError(s(lib.qtl_load_errmsg(self._h)) or "", status=rc)


def plan(path: PathLike, tp: int = 1, rank: int = 0, pp: int = 1, pp_rank: int = 0, **kw: Any) -> Plan:
    """The rank's plan: Plan(path, tp, rank, pp, pp_rank, ...); see Plan."""
    return Plan(path, tp, rank, pp, pp_rank, **kw)


def verify(path: PathLike, tp: int = 1, pp: int = 1, *, deep: bool = False, allow: Iterable[str] = (),
           dtype: Any = None, ranks: Iterable[int] | None = None, threads: int | None = None,
           ep: bool = False) -> list[Finding]:
    """Check a checkpoint as vLLM would load it at tp x pp, reading only headers and scales
    (with `deep`, group and block scales too): qtl_load_open at the scale read level, then
    qtl_load_run, for every global rank (or those in `ranks`). Returns every finding once (the
    first rank that reported it in .rank): the file rules, the plan's (tensor.shape,
    scale.unwritten, ...), the scale values' (scale.nan, ...), and a layout the tp size breaks
    (tp.heads, ...) as an error finding. These are the loader's findings; the CLI's `qtl verify`
    adds checks of its own (scale.convention, name.*, quant.layer-*) and every tp size. Raises
    QtlError only when the path cannot be opened."""
    allow = list(allow)
    out: list[Finding] = []
    seen = set()
    for g in (range(tp * pp) if ranks is None else ranks):
        found: list[Finding]
        try:
            with Plan(path, tp, g % tp, pp, g // tp, read="scales-deep" if deep else "scales", allow=allow,
                      dtype=dtype, threads=threads, ep=ep) as p:
                p.run(check=False)
                found = p.findings
        except QtlError as e:
            if e.status in (_lib.ERR_OPEN, _lib.ERR_NO_CHECKPOINT, _lib.ERR_INVALID_ARGUMENT, _lib.ERR_NOMEM) \
                    and not e.finding_id:
                raise
            found = [Finding(id=e.finding_id or "load.open", severity="error", message=e.message,
                             status=e.status_name, rank=g)]
        for f in found:
            key = (f.id, f.severity, f.file, f.tensor, f.message)
            if key not in seen:
                seen.add(key)
                out.append(f)
    return out


def load(path: PathLike, tp: int = 1, rank: int = 0, pp: int = 1, pp_rank: int = 0, stage: str = "loaded",
         threads: int | None = None, *, backend: str = "torch", allow: Iterable[str] = (), dtype: Any = None,
         copy: bool = False, pin_memory: bool = False, direct: bool = False, pp_partition: Any = _ENV,
         ep: bool = False, progress: Callable[[int, int], None] | None = None) -> Weights:
    """Load one rank's parameters as vLLM does: a Weights dict of vLLM's parameter names to
    torch tensors (backend "torch": FP8 as torch.float8_e4m3fn, BF16 as torch.bfloat16, F4 as
    torch.float4_e2m1fn_x2 when torch has it, else uint8, ...) or numpy arrays (backend "numpy":
    uint8 where numpy has no such dtype, the name in Weights.dtypes).

    stage "loaded": vLLM's state right after load_weights. The tensors are allocated here
    (torch.empty / numpy.empty; pinned with `pin_memory`) and qtl reads straight into them: no
    copy after qtl's read, and they belong to the caller (qtl's handle is closed on return).
    stage "processed": after qtl's post-processing (docs/processed.md). qtl's own memory holds
    the result; the tensors are views of it without a copy, which keep that memory alive until
    the last of them is gone (Weights.zero_copy); `copy=True` copies them into fresh tensors and
    frees qtl's memory at once.

    `rank` is the tensor-parallel rank and `pp_rank` the pipeline stage (vLLM's global rank is
    pp_rank * tp + rank); `ep` splits a MoE model's experts over the tp ranks. Strict: an error-level finding raises QtlError with its ID, tensor
    and file (`allow` downgrades IDs to warnings, listed in Weights.findings).
    """
    if stage not in ("loaded", "processed"):
        raise ValueError("stage: 'loaded' or 'processed'")
    if backend not in ("torch", "numpy"):
        raise ValueError("backend: 'torch' or 'numpy'")
    p = Plan(path, tp, rank, pp, pp_rank, read="all", allow=allow, dtype=dtype, threads=threads, direct=direct,
             pp_partition=pp_partition, ep=ep, progress=progress)
    keep = False
    try:
        if stage == "loaded":
            p.raise_for_errors()
            bufs = {q.name: _alloc(backend, q, pin_memory) for q in p.params}
            p.fill(bufs)
            out = p.weights(backend)
            out.zero_copy = False
            return out
        p.run()
        p.process()
        if copy and pin_memory and backend == "torch":
            views = p.weights(backend)
            out = Weights(backend)
            out.findings, out.dtypes, out.shapes = views.findings, views.dtypes, views.shapes
            for k, v in views.items():
                t = _alloc("torch", p.param(k), True)
                t.copy_(v)
                out[k] = t
            return out
        out = p.weights(backend, copy=copy)
        keep = not copy
        return out
    finally:
        if not keep:
            p.close()
