"""Dtypes: names, kernel codes, promotion. float32 is the default float; int32/int64 index."""
import numpy as np

FLOAT32, INT32, INT64, BOOL = "float32", "int32", "int64", "bool"
CODES = {FLOAT32: 0, INT32: 1, INT64: 2, BOOL: 3}
NAMES = {v: k for k, v in CODES.items()}
# Narrow integer dtypes are held in a wider one that represents every value exactly.
_ALIASES = {"float": FLOAT32, "float32": FLOAT32, "int": INT64, "int32": INT32, "int64": INT64, "bool": BOOL,
            "int8": INT32, "int16": INT32, "uint8": INT32, "uint16": INT32, "uint32": INT64}
_RANK = {BOOL: 0, INT32: 1, INT64: 2, FLOAT32: 3}


def standardize(dtype, op=None):
    """Returns lamina's dtype name for a name, numpy dtype or Python type.

    lamina computes in float32: asking for float64 or float16 (or complex, uint64...) is a
    TypeError naming the dtype and the supported ones (and `op`, the op that was asked), not a
    silent float32. (Data converted without a dtype still becomes float32, as Keras does with
    floatx float32.)"""
    if dtype is None:
        return FLOAT32
    if dtype is float:
        return FLOAT32
    if dtype is int:
        return INT64
    if dtype is bool:
        return BOOL
    name = getattr(dtype, "name", None) or str(dtype)
    if isinstance(dtype, type) and issubclass(dtype, np.generic):
        name = np.dtype(dtype).name
    if name not in _ALIASES:
        hint = ""
        if name in ("float64", "float16", "double", "half", "bfloat16"):
            hint = ("; lamina computes in float32 only (float data converted without a dtype becomes float32): "
                    "use dtype='float32'")
        where = f"{op}: " if op else ""
        raise TypeError(f"{where}Unsupported dtype {dtype!r}: lamina supports float32, int32, int64 and bool "
                        f"(and holds int8, int16, uint8, uint16 and uint32 in int32 / int64){hint}")
    return _ALIASES[name]


# "string" is the dtype of symbolic string inputs (lamina.Input(..., dtype="string")) only: strings
# stay host data (numpy arrays of str / bytes), never tensors; text preprocessing layers
# (TextVectorization, StringLookup, Hashing) turn them into numbers.
STRING = "string"


def is_string_data(x):
    """Whether `x` is string data: a str / bytes, or a numpy array of them (kind U / S, or object
    holding str / bytes)."""
    if isinstance(x, (str, bytes, np.str_, np.bytes_)):
        return True
    if isinstance(x, np.ndarray):
        if x.dtype.kind in "US":
            return True
        return x.dtype.kind == "O" and x.size > 0 and isinstance(x.flat[0], (str, bytes))
    return False


def is_float(dtype):
    return dtype == FLOAT32


def is_int(dtype):
    return dtype in (INT32, INT64)


def result_type(a, b):
    """Promotion between two tensor dtypes: bool < int32 < int64 < float32."""
    return a if _RANK[a] >= _RANK[b] else b


def to_numpy_dtype(dtype):
    return np.dtype(dtype)
