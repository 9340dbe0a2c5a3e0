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

# A raw non-ASCII byte where JSON syntax was expected is named as \xNN: messages stay UTF-8.
expect 2 "inspect a header with a stray byte" -- "$QTL" inspect "$DATA/../fuzz/corpus/3a9d2d456aa2dee3fc18f12faa7a281f550cb189"
contains "$TMP/err" "found byte \xf1" "stray byte escaped"
python3 -c "import sys; open(sys.argv[1], 'rb').read().decode('utf-8')" "$TMP/err" || { echo "FAIL: message not UTF-8"; fails=$((fails + 1)); }

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


# dequant: the NVFP4 worked example (both conventions) and FP8 per-channel, bit-exact.
python3 "$DATA/../make_quant_ckpt.py" "$TMP/q" || { echo "FAIL: make_quant_ckpt"; fails=$((fails + 1)); }
expect 0 "dequant nvfp4 ct" -- "$QTL" dequant "$TMP/q/ct" model.layers.0.mlp.down_proj.weight_packed -o "$TMP/ct.safetensors"
expect 0 "dequant nvfp4 modelopt" -- "$QTL" dequant "$TMP/q/mo" model.layers.0.mlp.down_proj.weight --to f32 -o "$TMP/mo.safetensors"
expect 0 "dequant fp8 channel" -- "$QTL" dequant "$TMP/q/fp8/model.safetensors" lm.weight -o "$TMP/fp8.safetensors"
expect 0 "dequant bf16 out" -- "$QTL" dequant "$TMP/q/fp8" lm.weight --to bf16 -o "$TMP/fp8b.safetensors"
python3 - "$TMP" <<'PY' || { echo "FAIL: dequant values"; fails=$((fails + 1)); }
import json, struct, sys
t = sys.argv[1]
exp = json.load(open(t + "/q/expected.json"))
def load(path, name):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    h = json.loads(b[8:8 + n])
    e = h[name]
    s, f = e["data_offsets"]
    raw = b[8 + n + s:8 + n + f]
    return e, raw
for key, path, name in (("ct", "ct", "model.layers.0.mlp.down_proj.weight_packed"),
                        ("mo", "mo", "model.layers.0.mlp.down_proj.weight"), ("fp8", "fp8", "lm.weight")):
    e, raw = load("%s/%s.safetensors" % (t, path), name)
    assert e["dtype"] == "F32", e
    vals = list(struct.unpack("<%df" % (len(raw) // 4), raw))
    want = [struct.unpack("<f", struct.pack("<f", v))[0] for v in exp[key]]
    assert [struct.pack("<f", v) for v in vals] == [struct.pack("<f", v) for v in want], (key, vals, want)
e, raw = load(t + "/fp8b.safetensors", "lm.weight")
assert e["dtype"] == "BF16" and e["shape"] == [2, 4]
assert struct.unpack("<8H", raw)[:3] == (0x3F00, 0x3F80, 0xBF00), struct.unpack("<8H", raw)
PY
expect 1 "dequant missing tensor" -- "$QTL" dequant "$TMP/q/ct" nope.weight -o "$TMP/x.safetensors"
expect 2 "dequant bad --to" -- "$QTL" dequant "$TMP/q/ct" x --to f64 -o "$TMP/x.safetensors"
expect 2 "dequant unknown scheme" -- "$QTL" dequant "$TMP/q/fp8" lm.weight --scheme q9 -o "$TMP/x.safetensors"

# fixture: same arguments -> the same bytes in every build (gcc, clang, sanitizers);
# these sha256 values were committed when the generator was written.
expect 0 "fixture ct-nvfp4 phi3 (small)" -- "$QTL" fixture --arch phi3 --scheme ct-nvfp4 --layers 1 --hidden 256 \
    --heads 4 --kv-heads 2 --head-dim 64 --intermediate 512 --vocab 64 -o "$TMP/det"
(cd "$TMP/det" && sha256sum -c --quiet) > "$TMP/sha" 2>&1 <<'SUMS' || { echo "FAIL: fixture bytes changed"; cat "$TMP/sha"; fails=$((fails + 1)); }
d96fb4047b59e541f8ef91251de1211379cc305bca1c13784cb558b6da502911  config.json
e3c9dc088efd99663a17734213b64d0a9a6cac07ffbf6500d2782b67d7e2c865  model-00001-of-00002.safetensors
01ffe6cddcf4c500224022c69936166e0571d66644161970f96e9e685d8ac66f  model-00002-of-00002.safetensors
b7d3c214f1a080e40752e09d2e097baaeb57f18a8dceddc8328f2b38eddba1a9  model.safetensors.index.json
SUMS
expect 2 "fixture unknown scheme" -- "$QTL" fixture --scheme q9 -o "$TMP/x"
expect 2 "fixture bad arch" -- "$QTL" fixture --arch gpt2 -o "$TMP/x"
expect 2 "fixture indivisible group" -- "$QTL" fixture --scheme ct-w4a16 --hidden 200 -o "$TMP/x"
expect 0 "fixture --help" -- "$QTL" fixture --help
contains "$TMP/out" "ct-w4a16-actorder" "schemes listed"

# dequant finds the scales of every fixture scheme by name (fused phi3 gate_up_proj).
for sc in $("$QTL" fixture --help | awk '/^schemes:/{f=1; next} /^breaks/{f=0} f{print $1}'); do
    "$QTL" fixture --arch phi3 --scheme "$sc" --layers 1 --hidden 256 --heads 4 --kv-heads 2 --head-dim 64 \
        --intermediate 512 --vocab 64 --shards 2 -o "$TMP/all/$sc" >/dev/null 2>&1
    w=model.layers.0.mlp.gate_up_proj.weight
    case "$sc" in ct-nvfp4*|ct-w*) w=${w}_packed ;; esac
    expect 0 "dequant fixture $sc" -- "$QTL" dequant "$TMP/all/$sc" "$w" -o "$TMP/all/$sc.f32.safetensors"
    contains "$TMP/out" "[1024, 256]" "dequant $sc shape"
done

# shard creates missing parent directories of -o; the shards reload.
expect 0 "shard into a new nested directory" -- "$QTL" shard "$TMP/all/ct-fp8" --tp 2 -o "$TMP/nested/a/b"
contains "$TMP/out" "$TMP/nested/a/b/model-rank-1-part-0.safetensors" "rank 1 written"
expect 0 "reload the nested shards" -- "$QTL" load "$TMP/nested/a/b" --tp 2
expect 1 "shard into a path under a file" -- "$QTL" shard "$TMP/all/ct-fp8" --tp 1 -o "$TMP/out/x"
contains "$TMP/err" "cannot create its directory" "directory error named"

# Every --json document is built with jansson (tools/cli_json.c): under a directory whose name
# holds a double quote, a backslash, a newline and non-ASCII characters each one parses and
# the path round-trips exactly; bytes that are not UTF-8 become U+FFFD, one per maximal
# ill-formed subsequence (what Python's decode("utf-8", "replace") gives).
W1="$TMP/we\"ird\\dir"$'\n'"namé 日本 😀"
# a stray byte, a truncated sequence, an encoded surrogate, an overlong, a cut 4-byte one, > U+10FFFF
W2="$TMP/bad"$'\xff'"utf8"$'\xe2\x82'"x"$'\xed\xa0\x80\xc0\xaf\xf0\x9f\x98'"y"$'\xf4\x90\x80\x80'"z"
for w in "$W1" "$W2"; do
    rm -rf "$TMP/j" && mkdir -p "$TMP/j"
    expect 0 "fixture in an odd directory" -- "$QTL" fixture -o "$w" --shards 2
    expect 0 "verify --json, odd path" -- "$QTL" verify "$w" --json
    cp "$TMP/out" "$TMP/j/verify"
    expect 0 "verify --tp 2 --json, odd path" -- "$QTL" verify "$w" --tp 2 --json
    cp "$TMP/out" "$TMP/j/verify2"
    expect 0 "load --json, odd path" -- "$QTL" load "$w" --tp 2 --json
    cp "$TMP/out" "$TMP/j/load"
    expect 0 "load --plan --json, odd path" -- "$QTL" load "$w" --tp 2 --plan --json
    cp "$TMP/out" "$TMP/j/plan"
    expect 0 "inspect --json, odd path" -- "$QTL" inspect "$w" --json
    cp "$TMP/out" "$TMP/j/inspect"
    expect 0 "inspect --json of one file, odd path" -- "$QTL" inspect "$w/model-00001-of-00002.safetensors" --json
    cp "$TMP/out" "$TMP/j/inspect1"
    expect 2 "load --json, odd missing path" -- "$QTL" load "$w/nope" --tp 2 --json
    cp "$TMP/out" "$TMP/j/load-missing"
    expect 2 "load --plan --json, odd missing path" -- "$QTL" load "$w/nope" --tp 2 --plan --json
    cp "$TMP/out" "$TMP/j/plan-missing"
    printf 'version https://git-lfs.github.com/spec/v1\nsize 99\n' > "$w/model-00002-of-00002.safetensors"
    expect 1 "inspect --json, odd path, lfs shard" -- "$QTL" inspect "$w" --json
    cp "$TMP/out" "$TMP/j/inspect-lfs"
    expect 1 "load --json, odd path, lfs shard" -- "$QTL" load "$w" --tp 1 --json
    cp "$TMP/out" "$TMP/j/load-lfs"
    python3 - "$w" "$TMP/j" <<'PY' || { echo "FAIL: --json under an odd path ($(printf %q "$w"))"; fails=$((fails + 1)); }
import json, os, sys
want = os.fsencode(sys.argv[1]).decode("utf-8", "replace")  # the path as JSON must carry it
d = {}
for name in sorted(os.listdir(sys.argv[2])):
    with open(os.path.join(sys.argv[2], name), encoding="utf-8") as f:  # strict UTF-8
        try:
            d[name] = json.load(f)
        except ValueError as e:
            sys.exit("%s: %s" % (name, e))
assert d["verify"]["checkpoint"] == want and d["verify2"]["checkpoint"] == want, d["verify"]["checkpoint"]
assert d["verify"]["verdict"] == "ok" and d["verify2"]["tp"] == [{"tp": 2, "loads": True, "reason": "ok"}]
assert d["load"]["checkpoint"] == want and [r["rank"] for r in d["load"]["ranks"]] == [0, 1], d["load"]
assert [p["rank"] for p in d["plan"]] == [0, 1]
for p in d["plan"]:
    assert [f["path"] for f in p["files"]] == [want + "/model-0000%d-of-00002.safetensors" % i for i in (1, 2)], p["files"]
assert d["inspect"]["path"] == want and d["inspect"]["index"] == want + "/model.safetensors.index.json", d["inspect"]
assert d["inspect1"]["path"] == want + "/model-00001-of-00002.safetensors"
assert d["load-missing"] == {"checkpoint": want + "/nope", "tp": 2, "pp": 1, "ranks": []}, d["load-missing"]
assert d["plan-missing"] == []
f = [f for f in d["inspect-lfs"]["findings"] if f["id"] == "shard-invalid"]
assert f and f[0]["file"] == want + "/model-00002-of-00002.safetensors", d["inspect-lfs"]["findings"]
assert d["load-lfs"]["checkpoint"] == want
assert ("\ufffd" in want) == (b"\xff" in os.fsencode(sys.argv[1])), want
PY
done

# Pipeline stages: qtl shard --pp writes vLLM's sharded_state names, and every stage's file
# loads back to the same parameters (names, dtypes, shapes, bytes) as the checkpoint itself.
rm -rf "$TMP/pp" "$TMP/pp-out"
expect 0 "fixture for pp" -- "$QTL" fixture --arch llama --scheme ct-fp8 --layers 3 --hidden 256 --heads 2 --kv-heads 2 \
    --intermediate 512 --vocab 200 -o "$TMP/pp"
expect 0 "shard --tp 2 --pp 2" -- "$QTL" shard "$TMP/pp" --tp 2 --pp 2 --stage loaded -o "$TMP/pp-out"
for f in model-pp-0-tp-0-part-0 model-pp-0-tp-1-part-0 model-pp-1-tp-0-part-0 model-pp-1-tp-1-part-0; do
    [ -f "$TMP/pp-out/$f.safetensors" ] && pass=$((pass + 1)) || { echo "FAIL: shard --pp: no $f.safetensors"; fails=$((fails + 1)); }
done
"$QTL" load "$TMP/pp" --tp 2 --pp 2 --stage loaded --params > "$TMP/pp-a.txt"
"$QTL" load "$TMP/pp-out" --tp 2 --pp 2 --stage loaded --params > "$TMP/pp-b.txt"
if diff <(grep '^  model\|^  lm_head' "$TMP/pp-a.txt") <(grep '^  model\|^  lm_head' "$TMP/pp-b.txt") >/dev/null &&
    grep -q '^rank 3/4 (stage 1, tp rank 1)' "$TMP/pp-a.txt" && grep -q '^  model.layers.2.' "$TMP/pp-a.txt"; then
    pass=$((pass + 1))
else
    echo "FAIL: pp stages do not load back identically"; fails=$((fails + 1))
fi
expect 2 "load --pp of a tp-only shard dir" -- "$QTL" load "$TMP/pp-out" --tp 2 --stage loaded
expect 2 "--rank past tp x pp" -- "$QTL" load "$TMP/pp" --tp 2 --pp 2 --rank 4
VLLM_PP_LAYER_PARTITION=1,1,1 expect 2 "VLLM_PP_LAYER_PARTITION of the wrong length" -- "$QTL" load "$TMP/pp" --tp 1 --pp 2
VLLM_PP_LAYER_PARTITION=3,0 expect 0 "VLLM_PP_LAYER_PARTITION 3,0" -- "$QTL" load "$TMP/pp" --tp 1 --pp 2 --rank 1
expect 0 "verify --pp 3" -- "$QTL" verify "$TMP/pp" --pp 3 --json
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert [(s["layer_start"], s["layer_end"]) for s in d["pp"]] == [(0, 1), (1, 2), (2, 3)], d["pp"]' "$TMP/out" \
    && pass=$((pass + 1)) || { echo "FAIL: verify --pp 3 stages"; fails=$((fails + 1)); }

# --for vllm: vLLM's sharded_state key set per rank, parts, non-weight files, and it loads back
rm -rf "$TMP/sv" "$TMP/sv-out"
expect 0 "fixture fp8 for sharded_state" -- "$QTL" fixture --arch llama --scheme fp8 --layers 2 --hidden 256 --heads 2 \
    --kv-heads 2 --intermediate 512 --vocab 200 -o "$TMP/sv"
printf '{"model_max_length": 8}\n' >"$TMP/sv/tokenizer_config.json"
expect 0 "shard --for vllm" -- "$QTL" shard "$TMP/sv" --tp 2 --for vllm --max-file-size 200KB -o "$TMP/sv-out"
expect 2 "shard --for vllm --stage processed is refused" -- "$QTL" shard "$TMP/sv" --tp 2 --for vllm --stage processed -o "$TMP/x"
contains "$TMP/err" "post-processed twice" "--for vllm --stage processed says why"
expect 2 "--max-file-size takes a size" -- "$QTL" shard "$TMP/sv" --tp 2 --for vllm --max-file-size 5XB -o "$TMP/x"
python3 - "$TMP/sv-out" <<'PY' && pass=$((pass + 1)) || { echo "FAIL: --for vllm key set"; fails=$((fails + 1)); }
import glob, json, os, struct, sys
d = sys.argv[1]
assert os.path.isfile(d + "/tokenizer_config.json") and os.path.isfile(d + "/config.json")
assert not os.path.exists(d + "/model.safetensors.index.json")
for r in (0, 1):
    parts = sorted(glob.glob(d + "/model-rank-%d-part-*.safetensors" % r))
    assert len(parts) > 1, parts
    keys = {}
    for p in parts:
        with open(p, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            h = json.loads(f.read(n))
        assert os.path.getsize(p) <= 200000 or len(h) == 2, p  # a part over the limit holds one tensor
        meta = h.pop("__metadata__")
        assert meta["qtl.for"] == "vllm" and meta["qtl.stage"] == "loaded" and meta["qtl.rank"] == str(r)
        keys.update(h)
    for l in (0, 1):  # attention buffers (F32 0-D 1.0) and Fp8's KV placeholders (model dtype 0-D -1.0)
        a = "model.layers.%d.self_attn.attn." % l
        for b in ("_k_scale", "_v_scale", "_q_scale", "_prob_scale"):
            assert keys[a + b]["dtype"] == "F32" and keys[a + b]["shape"] == [], b
        for b in ("q_scale", "k_scale", "v_scale", "prob_scale"):
            assert keys[a + b]["dtype"] == "BF16" and keys[a + b]["shape"] == [], b
    assert "lm_head.weight" in keys and "model.embed_tokens.weight" in keys
PY
"$QTL" load "$TMP/sv" --tp 2 --stage loaded --params | grep '^  ' >"$TMP/sv-a.txt"
"$QTL" load "$TMP/sv-out" --tp 2 --stage loaded --params | grep '^  ' >"$TMP/sv-b.txt"
cmp -s "$TMP/sv-a.txt" "$TMP/sv-b.txt" && pass=$((pass + 1)) || { echo "FAIL: --for vllm output loads back differently"; fails=$((fails + 1)); }
expect 0 "verify recognises a sharded_state directory" -- "$QTL" verify "$TMP/sv-out"
contains "$TMP/out" "vLLM sharded_state directory (tp=2, pp=1, stage loaded" "verify names the layout"

echo "$pass passed, $fails failed"
[ "$fails" -eq 0 ]
