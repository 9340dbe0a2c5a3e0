#!/usr/bin/env bash
# qtl load against the machine's bounds on a 1.4 GB compressed-tensors FP8
# checkpoint with Llama-3-8B layer shapes (4 layers, 2 shards), warm page cache:
# qtl bench load at tp 1, every rank of tp 2, ranks 0 and 7 of tp 8, tp 2 under mpiexec
# with the launch cost; peak RSS of
# `qtl load` against parameters + 2 x threads x 8 MiB; cold reads with --direct
# against dd iflag=direct (when root can drop the page cache).
# Usage: bench/bench_load.sh [QTL] [DIR]   (DIR keeps the checkpoint between runs)
set -euo pipefail
QTL=${1:-build/qtl}
DIR=${2:-build/bench-ct-fp8}
REPS=${REPS:-9}
if [ ! -f "$DIR/model.safetensors.index.json" ]; then
    "$QTL" fixture --arch llama --scheme ct-fp8 --hidden 4096 --heads 32 --kv-heads 8 --head-dim 128 \
        --intermediate 14336 --vocab 32000 --layers 4 --shards 2 -o "$DIR"
fi
for tr in "1 0" "2 0" "2 1" "8 0" "8 7"; do
    read -r tp rank <<< "$tr"
    "$QTL" bench load "$DIR" --tp "$tp" --rank "$rank" --reps "$REPS"
done

# one process per rank (MPI builds): mpiexec -n 2 against two processes preading at once,
# and what starting under mpiexec costs (launch + MPI_Init + MPI_Finalize, medians of 5)
if command -v mpiexec.mpich >/dev/null && mpiexec.mpich -n 2 "$QTL" bench load "$DIR" --tp 2 --reps "$REPS"; then
    small="$DIR-small"
    [ -f "$small/config.json" ] || "$QTL" fixture --layers 1 --hidden 256 --intermediate 512 --vocab 200 -o "$small" >/dev/null
    python3 - "$QTL" "$small" <<'PY'
import statistics, subprocess, sys, time
def run(cmd):
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t
q, d = sys.argv[1:]
one = statistics.median(run([q, "load", d, "--tp", "2", "--stage", "loaded"]) for _ in range(5))
two = statistics.median(run(["mpiexec.mpich", "-n", "2", q, "load", d, "--tp", "2", "--stage", "loaded"]) for _ in range(5))
print(f"mpiexec start-up: qtl load of a 1-layer fixture at tp 2 takes {one * 1e3:.0f} ms in one process, "
      f"{two * 1e3:.0f} ms under mpiexec -n 2 (+{(two - one) * 1e3:.0f} ms)")
PY
else
    echo "mpiexec -n 2: skipped (no mpiexec.mpich, or qtl built without MPI)"
fi

# peak RSS of one rank's load (the process: arena + staging + plan)
threads=$(nproc)
rss_kb=$(python3 - "$QTL" "$DIR" <<'PY'
import resource, subprocess, sys
subprocess.run([sys.argv[1], "load", sys.argv[2], "--tp", "1", "--stage", "loaded"], check=True,
               stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
PY
)
held=$("$QTL" load "$DIR" --tp 1 --stage loaded --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["ranks"][0]["bytes_held"])')
limit=$(( held / 1024 + 2 * threads * 8192 ))
echo "peak RSS of qtl load --tp 1: $(( rss_kb / 1024 )) MiB; parameters $(( held / 1048576 )) MiB + 2 x $threads x 8 MiB = $(( limit / 1024 )) MiB: $([ "$rss_kb" -le "$limit" ] && echo within || echo OVER)"

# cold: O_DIRECT reads against dd's
if [ -w /proc/sys/vm/drop_caches ]; then
    drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }
    files=("$DIR"/*.safetensors)
    now() { date +%s%N; }
    drop
    t0=$(now)
    for f in "${files[@]}"; do dd if="$f" of=/dev/null iflag=direct bs=8M status=none; done
    dd_ns=$(( $(now) - t0 ))
    drop
    t0=$(now)
    "$QTL" load "$DIR" --tp 1 --stage loaded --direct > /dev/null
    q_ns=$(( $(now) - t0 ))
    bytes=$(du -cb "${files[@]}" | tail -1 | cut -f1)
    python3 -c 'import sys; b, d, q = map(int, sys.argv[1:]); print(f"cold, O_DIRECT: dd iflag=direct bs=8M {b / d:.2f} GB/s, qtl load --direct {b / q:.2f} GB/s (whole process): qtl/dd = {d / q:.2f}")' "$bytes" "$dd_ns" "$q_ns"
else
    echo "cold, O_DIRECT: skipped (cannot drop the page cache: not root)"
fi
