#!/usr/bin/env bash
# The CLI's exit-code rule, inspect's output and the demo path.
# Env: QTL (binary), DATA (tests/data), REAL (shared fixtures), TMP (scratch).
set -u
fails=0
pass=0
expect() { # expect CODE DESCRIPTION -- command...
    local want=$1 what=$2
    shift 3
    "$@" >"$TMP/out" 2>"$TMP/err"
    local got=$?
    if [ "$got" != "$want" ]; then
        echo "FAIL: $what: exit $got, want $want"; sed 's/^/  | /' "$TMP/err" | head -5
        fails=$((fails + 1))
    else
        pass=$((pass + 1))
    fi
}
contains() { # contains FILE TEXT DESCRIPTION
    if grep -qF -- "$2" "$1"; then pass=$((pass + 1)); else echo "FAIL: $3: '$2' not in $1"; fails=$((fails + 1)); fi
}
rm -rf "$TMP" && mkdir -p "$TMP"

expect 0 "--version" -- "$QTL" --version
contains "$TMP/out" "qtl 0." "version text"
expect 0 "--help" -- "$QTL" --help
expect 2 "no command" -- "$QTL"
expect 2 "unknown command" -- "$QTL" frobnicate
expect 2 "inspect without path" -- "$QTL" inspect
expect 2 "inspect bad option" -- "$QTL" inspect --bogus x
expect 2 "inspect missing path" -- "$QTL" inspect "$TMP/nope"

expect 0 "inspect a valid file" -- "$QTL" inspect "$REAL/safetensors-java__src__test__resources__sample.safetensors"
contains "$TMP/out" "some_floats" "tensor listed"
contains "$TMP/out" "[1, 2, 2]" "shape listed"
contains "$TMP/out" "total: 2 tensors, 48 bytes" "totals"

expect 0 "inspect --json" -- "$QTL" inspect --json "$REAL/fastsafetensors__examples__a.safetensors"
python3 - "$TMP/out" <<'PY' || { echo "FAIL: inspect --json output"; fails=$((fails + 1)); }
import json, sys
d = json.load(open(sys.argv[1]))
t = d["tensors"][0]
assert t["name"] == "a0" and t["dtype"] == "F16" and t["shape"] == [16, 8] and t["bytes"] == 256, t
assert t["data_offsets"] == [0, 256]
assert d["files"][0]["metadata"] == {"fst": "sample"}
assert d["totals"] == {"tensors": 1, "bytes": 256, "files": 1}
assert d["findings"] == []
PY

# A malformed file given directly: exit 2, status and file named.
expect 2 "inspect malformed file" -- "$QTL" inspect "$DATA/bad/INVALID_OFFSET__overlap.safetensors"
contains "$TMP/err" "INVALID_OFFSET" "status named"
contains "$TMP/err" "INVALID_OFFSET__overlap.safetensors: tensor 'b'" "file and tensor named"
expect 2 "inspect lfs pointer" -- "$QTL" inspect "$DATA/bad/LFS_POINTER__pointer.safetensors"
contains "$TMP/err" "git-lfs pointer" "lfs named"

# Sharded checkpoint: fixture writes it, inspect reads it.
expect 0 "fixture" -- "$QTL" fixture -o "$TMP/ck" --shards 3
expect 0 "inspect checkpoint" -- "$QTL" inspect "$TMP/ck"
contains "$TMP/out" "model.layers.1.mlp.down_proj.weight" "tensor from the last shard"
contains "$TMP/out" "3 file(s)" "shards counted"
contains "$TMP/out" "total: 21 tensors" "tensor total"
# A bad shard inside a checkpoint: exit 1, with the finding.
printf 'version https://git-lfs.github.com/spec/v1\nsize 99\n' > "$TMP/ck/model-00002-of-00003.safetensors"
expect 1 "inspect checkpoint with an lfs shard" -- "$QTL" inspect "$TMP/ck"
contains "$TMP/out" "error [shard-invalid]" "finding listed"
contains "$TMP/out" "model-00002-of-00003.safetensors" "shard named"
expect 2 "fixture usage" -- "$QTL" fixture
expect 0 "bench header (small)" -- "$QTL" bench header --tensors 2000 --reps 1
contains "$TMP/out" "qtl open+validate" "bench table"

echo "$pass passed, $fails failed"
[ "$fails" -eq 0 ]
