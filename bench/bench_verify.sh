#!/usr/bin/env bash
# What `qtl verify` reads of a 7B-shaped checkpoint (Llama-2-7B dimensions, 2 layers,
# embeddings and lm_head included), per scheme, without and with --deep.
# Target (issue 7): without --deep, under 1% of the checkpoint's bytes.
# Usage: bench/bench_verify.sh [QTL] [SCHEME...]   (env TMPDIR: where fixtures go)
set -euo pipefail
QTL=${1:-build/qtl}
shift || true
schemes=("$@")
[ ${#schemes[@]} -gt 0 ] || schemes=(ct-nvfp4 modelopt-nvfp4 ct-w4a16 fp8-block ct-fp8-channel fp8 ct-int8)
dims=(--layers 2 --hidden 4096 --heads 32 --kv-heads 32 --head-dim 128 --intermediate 11008 --vocab 32000)
dir=$(mktemp -d "${TMPDIR:-/tmp}/qtl-bench-verify.XXXXXX")
trap 'rm -rf "$dir"' EXIT
printf '%-16s %10s | %12s %8s %8s | %12s %8s %8s\n' scheme ckpt_MB read_KB share sec deep_KB share sec
over=0
for sc in "${schemes[@]}"; do
    "$QTL" fixture --scheme "$sc" "${dims[@]}" -o "$dir/$sc" >/dev/null
    total=$(du -cb "$dir/$sc"/*.safetensors | tail -1 | cut -f1)
    "$QTL" verify "$dir/$sc" --tp 1 --json >"$dir/plain.json" || true
    "$QTL" verify "$dir/$sc" --tp 1 --deep --json >"$dir/deep.json" || true
    row=$(python3 - "$sc" "$total" "$dir/plain.json" "$dir/deep.json" <<'PY'
import json, sys
sc, total = sys.argv[1], int(sys.argv[2])
cols = ["%-16s %10.1f" % (sc, total / 1e6)]
for f in sys.argv[3:]:
    d = json.load(open(f))
    cols.append("%12.1f %7.4f%% %8.3f" % (d["bytes_read"] / 1e3, 100.0 * d["bytes_read"] / total, d["seconds"]))
print(" | ".join(cols) + ("" if json.load(open(sys.argv[3]))["bytes_read"] < total / 100 else "  OVER 1%"))
PY
)
    case $row in *OVER*) over=1 ;; esac
    echo "$row"
    rm -rf "${dir:?}/$sc"
done
[ $over -eq 0 ] && echo "without --deep: every scheme under 1% of the checkpoint" || echo "OVER 1% for some scheme"
