#!/usr/bin/env bash
# `qtl shard` output must not change when the load layer changes: every fixture
# scheme x {llama, phi3} x tp {1,2,4,8} x stage {loaded, processed}, each rank
# file's SHA-256 (or the exit code of a refusal), against tests/data/shard-hashes.txt
# (recorded with the loader before the plan/execute rebuild, commit 97adac3).
#   QTL=path/to/qtl TMP=dir bash test_shard_hashes.sh [--record OUT]
set -euo pipefail
: "${QTL:?}" "${TMP:?}"
here=$(cd "$(dirname "$0")" && pwd)
expected="$here/data/shard-hashes.txt"
rm -rf "$TMP"; mkdir -p "$TMP"; cd "$TMP"
# small: kv heads replicated from tp 4 on, vocab padded, block FP8 refused from tp 2;
# wide: every scheme (block FP8 and WNA16 g128 included) fits every tp
shapes=("small --layers 2 --hidden 512 --heads 8 --kv-heads 2 --head-dim 64 --intermediate 1024 --vocab 300"
        "wide --layers 1 --hidden 1024 --heads 8 --kv-heads 4 --head-dim 128 --intermediate 2048 --vocab 1000")
out=hashes.txt; : > "$out"
schemes=$("$QTL" fixture --help | awk '/^schemes:/{s=1;next} /^breaks/{s=0} s{print $1}')
for sh in "${shapes[@]}"; do
 read -r sname shape <<< "$sh"
 for arch in llama phi3; do
  for scheme in $schemes; do
    rm -rf ckpt; "$QTL" fixture --arch "$arch" --scheme "$scheme" $shape -o ckpt >/dev/null
    for tp in 1 2 4 8; do
      for stage in loaded processed; do
        rm -rf out
        if "$QTL" shard ckpt --tp "$tp" --stage "$stage" -o out >/dev/null 2>&1; then
          for ((r = 0; r < tp; r++)); do
            echo "$sname $arch $scheme tp=$tp $stage rank=$r $(sha256sum < "out/model-rank-$r-part-0.safetensors" | cut -c1-64)" >> "$out"
          done
        else
          echo "$sname $arch $scheme tp=$tp $stage refused exit=$?" >> "$out"
        fi
      done
    done
  done
 done
done
if [[ "${1:-}" == --record ]]; then cp "$out" "$2"; echo "recorded $(wc -l < "$out") lines"; exit 0; fi
if diff -u "$expected" "$out"; then
  echo "shard hashes: $(wc -l < "$out") lines identical"
else
  echo "shard hashes differ from $expected"; exit 1
fi
