"""The ctypes binding against qtl.h and the installed libqtl.so: every structure's size and field
offsets (a C program compiled against qtl.h prints them), every prototype's parameter count,
the library's exports, and no compiled Python extension. conftest.py runs the layout check once
before any test too, and stops the session on a mismatch (a wrong layout can crash the process)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

import qtl
from conftest import ROOT, struct_layout_problems


def test_structs_mirror_qtl_h(tmp_path):
    problems = struct_layout_problems(str(tmp_path))
    if problems is None:
        pytest.skip("no C compiler to compile qtl.h's structs with")
    assert not problems, "; ".join(problems)


def test_prototypes_match_qtl_h():
    """Each function the binding declares has qtl.h's number of parameters."""
    from qtl import _lib
    h = open(os.path.join(ROOT, "include", "qtl.h")).read()
    h = re.sub(r"/\*.*?\*/", " ", h, flags=re.S)
    for name, (_res, args) in _lib._PROTOTYPES.items():
        m = re.search(r"QTL_API[^;]*?\b%s\s*\(([^;]*?)\)\s*;" % name, h, re.S)
        assert m, "%s is not declared in qtl.h" % name
        params = m.group(1).strip()
        n = 0 if params in ("", "void") else params.count(",") + 1
        assert n == len(args), "%s: qtl.h has %d parameters, the binding %d" % (name, n, len(args))


def test_library_exports_only_the_api():
    nm = shutil.which("nm")
    if not nm:
        pytest.skip("no nm to list libqtl.so's dynamic symbols")
    out = subprocess.run([nm, "-D", "--defined-only", "-P", qtl.library_path()], capture_output=True, text=True,
                         check=True).stdout
    syms = {line.split()[0] for line in out.splitlines() if line.strip()}
    syms -= {"_init", "_fini", "_edata", "_end", "__bss_start"}
    assert syms and all(x.startswith("qtl_") for x in syms), sorted(x for x in syms if not x.startswith("qtl_"))
    assert "qtl_load_bind" in syms and not any(x.startswith(("qtl_fixture_", "qtl_dist_", "qtl__")) for x in syms)


def test_installed_package_is_pure_python_plus_libqtl():
    pkg = os.path.dirname(qtl.__file__)
    assert os.path.realpath(qtl.library_path()) == os.path.realpath(os.path.join(pkg, "libqtl.so")), \
        "QTL_LIBRARY overrides the installed library"
    exts = [f for f in os.listdir(pkg) if f.endswith((".so", ".pyd")) and f != "libqtl.so"]
    assert exts == [] and "qtl._lib" in sys.modules


def test_reserve_after_every_structure():
    """Structures given to the library carry zeroed room after them (see qtl._lib.new)."""
    import ctypes
    from qtl import _lib
    o = _lib.new(_lib.LoadOptions)
    raw = (ctypes.c_uint8 * (ctypes.sizeof(o) + _lib.RESERVE)).from_address(ctypes.addressof(o))
    assert _lib.RESERVE >= 64 and bytes(raw) == bytes(len(raw))
