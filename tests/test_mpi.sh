#!/usr/bin/env bash
# One process per rank under MPICH's mpiexec: the output equals the single
# process's, rank disagreements and failures stop every rank with a named error
# and nothing hangs. Env: QTL (an MPI build of the CLI), MPIEXEC (mpiexec.mpich), TMP.
# Small data: oversubscribed MPICH busy-polls on 2 cores.
set -u
fails=0
pass=0
ok() { pass=$((pass + 1)); }
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
rm -rf "$TMP" && mkdir -p "$TMP"
# -n N, with a timeout: a hang is a failure, not a stuck CI job
mpi() { local n=$1; shift; timeout 60 "$MPIEXEC" -n "$n" "$@"; }
no_leaks() { # MPICH's yaksa reports leaked derived datatypes on stderr
    if grep -q "leaked" "$1"; then bad "$2: MPI leak report: $(grep leaked "$1" | head -2)"; else ok; fi
}
strip_times() { sed -E 's/ in [0-9.]+ s \([0-9.]+ GB\/s\)//; s/, post-processed in [0-9.]+ s//; s/ [0-9.]+ MB read//' "$1"; }

"$QTL" fixture --arch llama --scheme ct-nvfp4 --layers 3 --hidden 256 --heads 2 --kv-heads 2 --intermediate 512 \
    --vocab 200 -o "$TMP/ck" >/dev/null || exit 1
"$QTL" fixture --arch phi3 --scheme fp8 --layers 3 --hidden 256 --heads 2 --kv-heads 2 --intermediate 512 \
    --vocab 200 -o "$TMP/phi" >/dev/null || exit 1

# 1. load: tp, pp, tp x pp, and one process, against the single process (--params hashes every byte)
for layout in "1 1 1" "2 2 1" "3 1 3" "4 2 2" "2 1 2"; do
    set -- $layout
    n=$1 tp=$2 pp=$3
    for ck in ck phi; do
        mpi "$n" "$QTL" load "$TMP/$ck" --tp "$tp" --pp "$pp" --params >"$TMP/mpi.txt" 2>"$TMP/mpi.err"
        rc=$?
        "$QTL" load "$TMP/$ck" --tp "$tp" --pp "$pp" --params >"$TMP/one.txt" 2>/dev/null
        if [ $rc -eq 0 ] && diff <(strip_times "$TMP/mpi.txt") <(strip_times "$TMP/one.txt") >/dev/null &&
            [ "$(grep -c '^rank' "$TMP/mpi.txt")" -eq "$n" ]; then ok; else
            bad "load $ck -n $n --tp $tp --pp $pp differs from one process (rc $rc)"; sed 's/^/  | /' "$TMP/mpi.err" | head -5
        fi
        no_leaks "$TMP/mpi.err" "load -n $n"
    done
done

# 2. --json: the same document as one process, times aside
mpi 4 "$QTL" load "$TMP/ck" --tp 2 --pp 2 --json >"$TMP/mpi.json" 2>"$TMP/mpi.err"
"$QTL" load "$TMP/ck" --tp 2 --pp 2 --json >"$TMP/one.json"
python3 - "$TMP/mpi.json" "$TMP/one.json" <<'PY' && ok || bad "load --json under mpiexec differs"
import json, sys
a, b = (json.load(open(p)) for p in sys.argv[1:])
for d in (a, b):
    for r in d["ranks"]:
        for k in ("seconds", "process_seconds", "bytes_read"):
            r.pop(k)
assert a == b, (a, b)
assert [r["rank"] for r in a["ranks"]] == [0, 1, 2, 3]
PY

# 3. --check: rank 0 replays every rank's plan
mpi 2 "$QTL" load "$TMP/ck" --tp 2 --check >"$TMP/out" 2>"$TMP/err" && grep -q "^check: every rank" "$TMP/out" && ok ||
    bad "load --check"

# 4. shard: every rank writes its own file, byte-identical to the single process's
for layout in "2 2 1" "4 2 2" "3 1 3"; do
    set -- $layout
    n=$1 tp=$2 pp=$3
    rm -rf "$TMP/s-mpi" "$TMP/s-one"
    mpi "$n" "$QTL" shard "$TMP/ck" --tp "$tp" --pp "$pp" --stage loaded -o "$TMP/s-mpi" >/dev/null 2>"$TMP/err"
    rc=$?
    "$QTL" shard "$TMP/ck" --tp "$tp" --pp "$pp" --stage loaded -o "$TMP/s-one" >/dev/null
    if [ $rc -eq 0 ] && diff -r "$TMP/s-mpi" "$TMP/s-one" >/dev/null && [ "$(ls "$TMP/s-mpi" | wc -l)" -eq $((n + 1)) ]; then
        ok
    else
        bad "shard -n $n --tp $tp --pp $pp: not byte-identical to one process (rc $rc)"
    fi
done

# 5. the world must be tp x pp
mpi 3 "$QTL" load "$TMP/ck" --tp 2 >"$TMP/out" 2>"$TMP/err"
[ $? -eq 2 ] && grep -q "needs 2 (one per rank)" "$TMP/err" && ok || bad "-n 3 with --tp 2 is a usage error"

# 6. one rank sees different files (3 shards instead of 2): every rank exits 1, rank 0 names them
"$QTL" fixture --arch llama --scheme ct-nvfp4 --layers 3 --hidden 256 --heads 2 --kv-heads 2 --intermediate 512 \
    --vocab 200 --shards 3 -o "$TMP/ck3" >/dev/null
timeout 60 "$MPIEXEC" -n 1 "$QTL" load "$TMP/ck" --tp 2 : -n 1 "$QTL" load "$TMP/ck3" --tp 2 >"$TMP/out" 2>"$TMP/err"
rc=$?
if [ $rc -eq 1 ] && grep -q "ranks disagree on the plan" "$TMP/err" && grep -q "rank 1 has" "$TMP/err" &&
    grep -q "model-00001-of-00003.safetensors only there" "$TMP/err" &&
    grep -q "model-00001-of-00002.safetensors missing there" "$TMP/err"; then ok; else
    bad "a rank with other files: rc $rc"; sed 's/^/  | /' "$TMP/err" | head -5
fi

# 7. one rank cannot open its checkpoint: every rank exits non-zero with that rank's message, no hang
timeout 60 "$MPIEXEC" -n 1 "$QTL" load "$TMP/ck" --tp 2 : -n 1 "$QTL" load "$TMP/nope" --tp 2 >"$TMP/out" 2>"$TMP/err"
rc=$?
[ $rc -eq 2 ] && grep -q "rank 1: " "$TMP/err" && ok || { bad "a rank that cannot open: rc $rc"; sed 's/^/  | /' "$TMP/err" | head -5; }

# 8. one rank's shard is broken (a git-lfs pointer): its plan fails, all stop; shard writes nothing
cp -r "$TMP/ck" "$TMP/lfs"
printf 'version https://git-lfs.github.com/spec/v1\noid sha256:%064d\nsize 123\n' 0 >"$TMP/lfs/model-00002-of-00002.safetensors"
rm -rf "$TMP/s-bad"
timeout 60 "$MPIEXEC" -n 1 "$QTL" shard "$TMP/ck" --tp 2 -o "$TMP/s-bad" : -n 1 "$QTL" shard "$TMP/lfs" --tp 2 -o "$TMP/s-bad" \
    >"$TMP/out" 2>"$TMP/err"
rc=$?
[ $rc -ne 0 ] && [ ! -e "$TMP/s-bad/model-rank-0-part-0.safetensors" ] && ok ||
    { bad "a rank with a broken shard: rc $rc, files: $(ls "$TMP/s-bad" 2>/dev/null)"; sed 's/^/  | /' "$TMP/err" | head -5; }

# 9. verify: rank 0 reports once, every rank exits with its status
mpi 2 "$QTL" verify "$TMP/ck" --tp 2 >"$TMP/out" 2>"$TMP/err"
[ $? -eq 0 ] && [ "$(grep -c '^verdict' "$TMP/out")" -eq 1 ] && ok || bad "verify under mpiexec"
"$QTL" fixture --arch llama --scheme ct-nvfp4 --layers 1 --break scale.nan -o "$TMP/nan" >/dev/null
mpi 2 "$QTL" verify "$TMP/nan" --tp 2 >"$TMP/out" 2>"$TMP/err"
[ $? -eq 1 ] && ok || bad "verify of a NaN scale under mpiexec: every rank exits 1"

# 10. expert parallel (MoE) under mpiexec: each rank its whole experts, as one process gives them
python3 "$(dirname "$0")/moe/make_moe_ckpt.py" qwen3 "$TMP/moe" || exit 1
mpi 2 "$QTL" load "$TMP/moe" --tp 2 --ep --stage loaded --params >"$TMP/mpi.txt" 2>"$TMP/mpi.err"
rc=$?
"$QTL" load "$TMP/moe" --tp 2 --ep --stage loaded --params >"$TMP/one.txt" 2>/dev/null
if [ $rc -eq 0 ] && diff <(strip_times "$TMP/mpi.txt") <(strip_times "$TMP/one.txt") >/dev/null &&
    grep -q "experts.routed_experts.w13_weight BF16 \[2," "$TMP/mpi.txt"; then ok; else bad "load --ep under mpiexec -n 2 (rc $rc)"; fi

# 11. commands that run in one process refuse a multi-process launch
mpi 2 "$QTL" inspect "$TMP/ck" >"$TMP/out" 2>"$TMP/err"
[ $? -eq 2 ] && ok || bad "inspect under mpiexec -n 2"

echo "$pass passed, $fails failed"
[ "$fails" -eq 0 ]
