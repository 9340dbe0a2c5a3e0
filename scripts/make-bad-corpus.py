#!/usr/bin/env python3
"""Writes tests/data/bad/: one malformed safetensors file per validation rule.

File names are STATUS__what.safetensors; tests/test_bad_corpus.c checks that
each is rejected with that qtl status (qtl_errname). Run once; the output is
committed, so builds need no Python.
"""
import os
import struct
import sys

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "bad")
os.makedirs(out, exist_ok=True)


def image(header, data=b"", n=None, pad=True):
    if isinstance(header, str):
        header = header.encode()
    if pad:
        header += b" " * ((8 - len(header) % 8) % 8)
    return struct.pack("<Q", len(header) if n is None else n) + header + data


def t(name, dtype="I32", shape="[2,2]", offs="[0,16]"):
    return '"%s":{"dtype":"%s","shape":%s,"data_offsets":%s}' % (name, dtype, shape, offs)


ok16 = bytes(16)
cases = {
    "HEADER_TOO_SMALL__empty": b"",
    "HEADER_TOO_SMALL__seven_bytes": b"\x08\x00\x00\x00\x00\x00\x00",
    "HEADER_TOO_LARGE__over_100MB": struct.pack("<Q", 100_000_001) + b"{}" + b" " * 6,
    "HEADER_TOO_LARGE__high_bytes": bytes.fromhex("3c000000000000ff") + b"{}",
    "INVALID_HEADER_LENGTH__past_eof": struct.pack("<Q", 1000) + b"{}      " + bytes(16),
    "INVALID_HEADER_LENGTH__only_length": struct.pack("<Q", 60),
    "INVALID_HEADER__byte_ff": struct.pack("<Q", 1) + b"\xff",
    "INVALID_HEADER__overlong_slash": image(b'{"a\xc0\xaf":{}}'),
    "INVALID_HEADER__surrogate_bytes": image(b'{"\xed\xa0\x80":{}}'),
    "INVALID_HEADER__cut_sequence": image(b'{"\xe2\x82":1}', pad=False),
    "INVALID_HEADER_DESER__open_brace": struct.pack("<Q", 1) + b"{",
    "INVALID_HEADER_DESER__array_top": image("[]"),
    "INVALID_HEADER_DESER__unknown_dtype": image("{" + t("x", dtype="F128") + "}", ok16),
    "INVALID_HEADER_DESER__lowercase_dtype": image("{" + t("x", dtype="i32") + "}", ok16),
    "INVALID_HEADER_DESER__negative_offset": image("{" + t("x", offs="[-1,16]") + "}", ok16),
    "INVALID_HEADER_DESER__float_shape": image("{" + t("x", shape="[2.0,2]") + "}", ok16),
    "INVALID_HEADER_DESER__exponent_offset": image("{" + t("x", offs="[0,1.6e1]") + "}", ok16),
    "INVALID_HEADER_DESER__leading_zero": image("{" + t("x", offs="[0,016]") + "}", ok16),
    "INVALID_HEADER_DESER__offset_2pow64": image("{" + t("x", offs="[0,18446744073709551616]") + "}", ok16),
    "INVALID_HEADER_DESER__three_offsets": image("{" + t("x", offs="[0,8,16]") + "}", ok16),
    "INVALID_HEADER_DESER__one_offset": image("{" + t("x", offs="[16]") + "}", ok16),
    "INVALID_HEADER_DESER__shape_string": image("{" + t("x", shape='"2x2"') + "}", ok16),
    "INVALID_HEADER_DESER__missing_dtype": image('{"x":{"shape":[2,2],"data_offsets":[0,16]}}', ok16),
    "INVALID_HEADER_DESER__missing_offsets": image('{"x":{"dtype":"I32","shape":[2,2]}}', ok16),
    "INVALID_HEADER_DESER__entry_not_object": image('{"x":[1,2]}'),
    "INVALID_HEADER_DESER__metadata_number": image('{"__metadata__":{"step":1}}'),
    "INVALID_HEADER_DESER__metadata_nested": image('{"__metadata__":{"q":{"a":"b"}}}'),
    "INVALID_HEADER_DESER__metadata_array": image('{"__metadata__":["a"]}'),
    "INVALID_HEADER_DESER__trailing_garbage": image("{" + t("x") + "}x", ok16),
    "INVALID_HEADER_DESER__two_objects": image("{}{}"),
    "INVALID_HEADER_DESER__trailing_comma": image("{" + t("x") + ",}", ok16),
    "INVALID_HEADER_DESER__nul_padding": image(b'{}\x00\x00\x00\x00\x00\x00', pad=False),
    "INVALID_HEADER_DESER__lone_surrogate": image('{"\\ud800":{}}'),
    "INVALID_HEADER_DESER__nul_escape": image("{" + t("a\\u0000b") + "}", ok16),
    "INVALID_HEADER_DESER__raw_newline_in_name": image("{" + t("a\nb") + "}", ok16),
    "INVALID_HEADER_DESER__bad_escape": image("{" + t("a\\qb") + "}", ok16),
    "INVALID_HEADER_DESER__deep_nesting": image('{"x":{"dtype":"I32","shape":[2,2],"data_offsets":[0,16],"u":'
                                                + "[" * 200 + "]" * 200 + "}}", ok16),
    "INVALID_HEADER_DESER__unterminated_string": image('{"abc', pad=False),
    "INVALID_HEADER_DESER__bare_word": image('{"x":nul}'),
    "DUPLICATE_KEY__tensor_name": image("{" + t("x") + "," + t("x", offs="[16,32]") + "}", bytes(32)),
    "DUPLICATE_KEY__escaped_twin": image("{" + t("ab") + "," + t("a\\u0062", offs="[16,32]") + "}", bytes(32)),
    "DUPLICATE_KEY__metadata_key": image('{"__metadata__":{"a":"1","a":"2"}}'),
    "DUPLICATE_KEY__metadata_twice": image('{"__metadata__":{},"__metadata__":{}}'),
    "DUPLICATE_KEY__dtype_field": image('{"x":{"dtype":"I32","dtype":"I32","shape":[2,2],"data_offsets":[0,16]}}',
                                        ok16),
    "INVALID_OFFSET__not_from_zero": image("{" + t("x", offs="[4,20]") + "}", bytes(20)),
    "INVALID_OFFSET__hole": image("{" + t("a") + "," + t("b", offs="[20,36]") + "}", bytes(36)),
    "INVALID_OFFSET__overlap": image("{" + t("a") + "," + t("b", offs="[8,24]") + "}", bytes(24)),
    "INVALID_OFFSET__end_before_begin": image("{" + t("a", shape="[0]", offs="[0,0]") + ","
                                              + t("b", offs="[16,0]") + "}", ok16),
    "INVALID_OFFSET__ten_at_zero": image("{" + ",".join(t("t%d" % i) for i in range(10)) + "}", ok16),
    "VALIDATION_OVERFLOW__numel": image("{" + t("x", shape="[2,18446744073709551614]") + "}", ok16),
    "VALIDATION_OVERFLOW__bits": image("{" + t("x", shape="[2,9223372036854775807]") + "}", ok16),
    "MISALIGNED_SLICE__f4_odd": image("{" + t("x", dtype="F4", shape="[1,3]", offs="[0,2]") + "}", bytes(2)),
    "MISALIGNED_SLICE__f6_one": image("{" + t("x", dtype="F6_E2M3", shape="[1]", offs="[0,1]") + "}", bytes(1)),
    "TENSOR_INVALID_INFO__short_offsets": image("{" + t("x", offs="[0,4]") + "}", bytes(4)),
    "TENSOR_INVALID_INFO__f4_two_bytes": image("{" + t("x", dtype="F4", shape="[1,2]", offs="[0,2]") + "}", bytes(2)),
    "TENSOR_INVALID_INFO__scalar_size": image("{" + t("x", shape="[]", offs="[0,8]") + "}", bytes(8)),
    "INCOMPLETE_BUFFER__trailing_bytes": image("{" + t("x") + "}", bytes(17)),
    "INCOMPLETE_BUFFER__polyglot_tail": image("{" + t("x") + "}", ok16 + b"PK\x03\x04zip-data"),
    "TRUNCATED__cut_data": image("{" + t("x") + "}", bytes(14)),
    "TRUNCATED__no_data": image("{" + t("x", dtype="BF16", shape="[4096,4096]", offs="[0,33554432]") + "}"),
    "LFS_POINTER__pointer": b"version https://git-lfs.github.com/spec/v1\n"
                            b"oid sha256:4d7a2149f1c4a2b0a7bde8a0fd1e8b5d4a25e34e7a5cbd1a5f1a6c5d2b9f2e1a\n"
                            b"size 4976698672\n",
    "NOT_SAFETENSORS__html": b"<!DOCTYPE html>\n<html><head><title>Access denied</title></head>"
                             b"<body>Please log in</body></html>\n",
    "NOT_SAFETENSORS__json_index": b'{\n  "metadata": {"total_size": 16},\n  "weight_map": {}\n}\n',
}

for name, data in cases.items():
    with open(os.path.join(out, name + ".safetensors"), "wb") as f:
        f.write(data)
print("wrote %d files to %s" % (len(cases), os.path.normpath(out)), file=sys.stderr)
