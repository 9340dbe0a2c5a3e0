#!/usr/bin/env python3
"""Writes small quantized checkpoints for the CLI test (independently of qtl's
writer): the NVFP4 worked example of formats.md §7 (compressed-tensors and
ModelOpt names) and an FP8 per-channel weight, plus the expected f32 values
computed here."""
import json, os, struct, sys

def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]

def write(path, tensors):  # tensors: name -> (dtype, shape, bytes)
    off, hdr, data = 0, {}, b""
    for name, (dt, shape, raw) in tensors.items():
        hdr[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        data += raw
    h = json.dumps(hdr, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + data)

out = sys.argv[1]
os.makedirs(out + "/ct", exist_ok=True)
os.makedirs(out + "/mo", exist_ok=True)
packed = bytes.fromhex("90A1A2B3C4C4D5F5571BE0642FD1F7C4")
write(out + "/ct/model.safetensors", {
    "model.layers.0.mlp.down_proj.weight_packed": ("U8", [2, 8], packed),
    "model.layers.0.mlp.down_proj.weight_scale": ("F8_E4M3", [2, 1], bytes([0x7E, 0x71])),
    "model.layers.0.mlp.down_proj.weight_global_scale": ("F32", [1], struct.pack("<f", 896.0)),
})
s2 = f32(3.0 / 2688.0)
write(out + "/mo/model.safetensors", {
    "model.layers.0.mlp.down_proj.weight": ("U8", [2, 8], packed),
    "model.layers.0.mlp.down_proj.weight_scale": ("F8_E4M3", [2, 1], bytes([0x7E, 0x71])),
    "model.layers.0.mlp.down_proj.weight_scale_2": ("F32", [], struct.pack("<f", s2)),
})
E2M1 = [0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6]
codes = []
for b in packed:
    codes += [b & 15, b >> 4]
ct = [f32(E2M1[c] * f32((448.0 if i < 16 else 144.0) / 896.0)) for i, c in enumerate(codes)]
mo = [f32(E2M1[c] * f32((448.0 if i < 16 else 144.0) * s2)) for i, c in enumerate(codes)]
# FP8 per-channel: codes 0x38 (1.0), 0x40 (2.0), 0xB8 (-1.0), 0x01 (2^-9); scales 0.5 and 3
os.makedirs(out + "/fp8", exist_ok=True)
write(out + "/fp8/model.safetensors", {
    "lm.weight": ("F8_E4M3", [2, 4], bytes([0x38, 0x40, 0xB8, 0x01, 0x38, 0x40, 0xB8, 0x01])),
    "lm.weight_scale": ("F32", [2, 1], struct.pack("<2f", 0.5, 3.0)),
})
fp8 = [0.5, 1.0, -0.5, 2 ** -10, 3.0, 6.0, -3.0, 3 * 2 ** -9]
json.dump({"ct": ct, "mo": mo, "fp8": fp8}, open(out + "/expected.json", "w"))
