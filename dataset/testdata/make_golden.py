"""Writes the NumPy-made golden files that dataset's tests read.

Run once with NumPy (tests never call Python): python3 make_golden.py
Values are arange-based so the Go tests can recompute them.
"""
import numpy as np

def ar(n, dtype):
    return np.arange(n).astype(dtype)

arrays = {
    "f32": ar(6, np.float32).reshape(2, 3) * np.float32(0.5),
    "f64": ar(6, np.float64).reshape(3, 2) - 2.5,
    "i64": ar(4, np.int64) * -3,
    "i32": ar(6, np.int32).reshape(1, 2, 3) * 7,
    "u8": ar(5, np.uint8) * 50,
    "b": np.array([True, False, True, True]),
    "f16": np.array([0, 1, -2, 0.5, 65504, 2 ** -24, np.inf, np.nan], np.float16),
    "scalar": np.array(3.25, np.float64),
    "empty": np.zeros((0, 3), np.float32),
    "fortran": np.asfortranarray(ar(24, np.float64).reshape(2, 3, 4)),
    "be_i32": ar(6, ">i4").reshape(2, 3),
    "be_f64": ar(3, ">f8") + 0.25,
}

# np.save: C-order little-endian arrays here must match Go's WriteNPY byte for byte.
for name in ["f32", "f64", "i64", "i32", "u8", "b", "f16", "scalar", "empty"]:
    np.save("golden_%s.npy" % name, arrays[name])
np.save("golden_fortran.npy", arrays["fortran"])
np.save("golden_be_f64.npy", arrays["be_f64"])
with open("golden_v2.npy", "wb") as f:
    np.lib.format.write_array(f, arrays["i32"], version=(2, 0))
with open("golden_v3.npy", "wb") as f:
    np.lib.format.write_array(f, arrays["f32"], version=(3, 0))

np.savez("golden_stored.npz", **arrays)
np.savez_compressed(
    "golden_compressed.npz",
    input=ar(2 * 1 * 2 * 2, np.float32).reshape(2, 1, 2, 2) / 4,
    labels=np.array([3, 1], np.int64),
)
