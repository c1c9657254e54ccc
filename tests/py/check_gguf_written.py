#!/usr/bin/env python3
"""check_gguf_written.py — read the GGUF that tests/unit/test_gguf.c wrote (write_sample) with
gguf.GGUFReader and check keys, value types, values, tensor types, shapes and bytes.

Usage: check_gguf_written.py FILE.gguf
"""
import sys

import numpy as np
import gguf
from gguf import GGUFValueType as T

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL", what)


def main():
    r = gguf.GGUFReader(sys.argv[1])
    want = {
        "general.architecture": (T.STRING, "llama"),
        "t.u8": (T.UINT8, 200), "t.i8": (T.INT8, -100), "t.u16": (T.UINT16, 60000), "t.i16": (T.INT16, -30000),
        "t.u32": (T.UINT32, 4000000000), "t.i32": (T.INT32, -2000000000), "t.u64": (T.UINT64, 1 << 50),
        "t.i64": (T.INT64, -(1 << 50)), "t.f32": (T.FLOAT32, float(np.float32(0.1))), "t.f64": (T.FLOAT64, 0.1),
        "t.bool": (T.BOOL, True), "t.str": (T.STRING, "birdbone"),
        "t.arr_str": ((T.ARRAY, T.STRING), ["a", "bc", "", "d\u00e9"]),
        "t.arr_i32": ((T.ARRAY, T.INT32), [-1, 0, 1, 2147483647]),
        "t.arr_f32": ((T.ARRAY, T.FLOAT32), [0.5, -1.25, 3.0]),
        "t.arr_bool": ((T.ARRAY, T.BOOL), [True, False, True]),
        "t.arr_u64": ((T.ARRAY, T.UINT64), [1, 1 << 63]),
    }
    check(r.fields["GGUF.version"].contents() == 3, "version 3")
    for key, (typ, val) in want.items():
        f = r.fields.get(key)
        check(f is not None, f"key {key} present")
        if f is None:
            continue
        types = tuple(f.types) if isinstance(typ, tuple) else f.types[0]
        check(types == typ, f"{key}: type {f.types}, expected {typ}")
        got = f.contents()
        if isinstance(got, list):
            got = [x.item() if hasattr(x, "item") else x for x in got]
        elif hasattr(got, "item"):
            got = got.item()
        check(got == val, f"{key}: value {got!r}, expected {val!r}")

    base = (np.arange(32, dtype=np.float32) * np.float32(0.25) - np.float32(1.0)).astype(np.float32)
    bf16 = ((base.view(np.uint32).astype(np.uint64) + 0x7FFF + ((base.view(np.uint32) >> 16) & 1)) >> 16)
    tens = {t.name: t for t in r.tensors}
    expect = {
        "w.f32": (gguf.GGMLQuantizationType.F32, [5, 3], base[:15].tobytes()),
        "w.f16": (gguf.GGMLQuantizationType.F16, [8, 4], base.astype(np.float16).tobytes()),
        "w.bf16": (gguf.GGMLQuantizationType.BF16, [4, 3, 2], bf16[:24].astype(np.uint16).tobytes()),
        "w.q8_0": (gguf.GGMLQuantizationType.Q8_0, [64, 2], bytes((i * 7) & 0xFF for i in range(136))),
    }
    check(len(r.tensors) == len(expect), f"{len(r.tensors)} tensors, expected {len(expect)}")
    for name, (typ, shape, data) in expect.items():
        t = tens.get(name)
        check(t is not None, f"tensor {name} present")
        if t is None:
            continue
        check(t.tensor_type == typ, f"{name}: type {t.tensor_type.name}, expected {typ.name}")
        check([int(x) for x in t.shape] == shape, f"{name}: GGUF shape {list(t.shape)}, expected {shape}")
        check(t.n_bytes == len(data), f"{name}: {t.n_bytes} bytes, expected {len(data)}")
        check(np.asarray(t.data).tobytes() == data, f"{name}: bytes differ")
    print(f"{sys.argv[1]}: {len(want)} keys and {len(expect)} tensors checked, {len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
