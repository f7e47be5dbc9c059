"""Dtypes: names, kernel codes, promotion. float32 is the default float; int32/int64 index;
bfloat16 is the compute dtype of mixed precision (lamina.mixed_precision)."""
import numpy as np

FLOAT32, INT32, INT64, BOOL, BFLOAT16 = "float32", "int32", "int64", "bool", "bfloat16"
CODES = {FLOAT32: 0, INT32: 1, INT64: 2, BOOL: 3, BFLOAT16: 5}  # csrc/types.h (4 is int8: quantized weights)
NAMES = {v: k for k, v in CODES.items()}
FLOATS = frozenset((FLOAT32, BFLOAT16))
ITEMSIZE = {FLOAT32: 4, INT32: 4, INT64: 8, BOOL: 1, BFLOAT16: 2}
# Narrow integer dtypes are held in a wider one that represents every value exactly.
_ALIASES = {"float": FLOAT32, "float32": FLOAT32, "int": INT64, "int32": INT32, "int64": INT64, "bool": BOOL,
            "int8": INT32, "int16": INT32, "uint8": INT32, "uint16": INT32, "uint32": INT64,
            "bfloat16": BFLOAT16}
# Promotion as JAX / Keras 3: integers with bfloat16 give bfloat16, bfloat16 with float32 gives float32.
_RANK = {BOOL: 0, INT32: 1, INT64: 2, BFLOAT16: 3, FLOAT32: 4}


def standardize(dtype, op=None):
    """Returns lamina's dtype name for a name, numpy dtype or Python type.

    lamina computes in float32 (and bfloat16 for mixed precision): asking for float64 or float16
    (or complex, uint64...) is a TypeError naming the dtype and the supported ones (and `op`, the
    op that was asked), not a silent float32. (Data converted without a dtype still becomes float32, as Keras does with
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
        if name in ("float64", "double"):
            hint = ("; lamina computes in float32 only, and bfloat16 for mixed precision (float data converted "
                    "without a dtype becomes float32): use dtype='float32'")
        elif name in ("float16", "half"):
            hint = ("; lamina's 16-bit float is bfloat16 (the same range as float32, 8 bits of mantissa): use "
                    "dtype='bfloat16', or the 'mixed_bfloat16' policy in place of 'mixed_float16'")
        where = f"{op}: " if op else ""
        raise TypeError(f"{where}Unsupported dtype {dtype!r}: lamina supports float32, int32, int64 and bool "
                        f"(and bfloat16, for mixed precision; and holds int8, int16, uint8, uint16 and uint32 in int32 / int64){hint}")
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
    return dtype in FLOATS


def is_int(dtype):
    return dtype in (INT32, INT64)


def result_type(a, b):
    """Promotion between two tensor dtypes: bool < int32 < int64 < bfloat16 < float32."""
    return a if _RANK[a] >= _RANK[b] else b


def to_numpy_dtype(dtype):
    """The numpy dtype of a tensor's host copy: bfloat16 tensors come to numpy as float32 (numpy
    has no bfloat16; every bfloat16 value is exact in float32)."""
    return np.dtype(np.float32) if dtype == BFLOAT16 else np.dtype(dtype)


def bf16_bits_to_float32(bits):
    """float32 values of bfloat16 data held as uint16 bits."""
    return (np.asarray(bits, np.uint16).astype(np.uint32) << 16).view(np.float32)


# Keras's dtype names (keras.backend.standardize_dtype): every dtype Keras knows, whether or not
# lamina computes in it (a layer can be asked about float64 data it will refuse).
_KERAS_INTS = ("uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64")
_KERAS_FLOATS = ("bfloat16", "float16", "float32", "float64")
_KERAS_DTYPES = _KERAS_INTS + _KERAS_FLOATS + ("bool", "string", "complex64", "complex128")
_PYTHON_DTYPES = {bool: "bool", int: INT64, float: FLOAT32, str: STRING, complex: "complex64", "int": INT64,
                  "float": FLOAT32}


def standardize_dtype(dtype):
    """Keras's `keras.backend.standardize_dtype`: a dtype's name ('float32', 'int8', ...) for a name,
    numpy dtype or type, or Python type (int is lamina's int64); None is floatx(). Unknown names
    raise ValueError."""
    from .settings import floatx
    if dtype is None:
        return floatx()
    try:
        dtype = _PYTHON_DTYPES.get(dtype, dtype)
    except TypeError:  # unhashable
        pass
    if isinstance(dtype, type) and issubclass(dtype, np.generic):
        dtype = np.dtype(dtype).name
    elif hasattr(dtype, "name") and not isinstance(dtype, str):
        dtype = dtype.name
    elif hasattr(dtype, "__name__") and not isinstance(dtype, str):
        dtype = dtype.__name__
    if not isinstance(dtype, str) or dtype not in _KERAS_DTYPES:
        raise ValueError(f"standardize_dtype: invalid dtype {dtype!r}; expected one of {', '.join(_KERAS_DTYPES)}")
    return dtype


def is_float_dtype(dtype):
    """Whether `dtype` (anything standardize_dtype takes) is a floating type, float16 and float64 included."""
    return standardize_dtype(dtype) in _KERAS_FLOATS


def is_int_dtype(dtype):
    """Whether `dtype` (anything standardize_dtype takes) is a signed or unsigned integer type."""
    return standardize_dtype(dtype) in _KERAS_INTS


# Keras's type promotion (keras.backend.result_type, after jnp.result_type): a lattice over Keras's
# dtype names and the weak types of Python's int and float, whose least upper bound is the result.
_LATTICE = {
    "bool": ["int"], "uint8": ["int16", "uint16"], "uint16": ["int32", "uint32"], "uint32": ["int64", "uint64"],
    "uint64": ["float"], "int": ["uint8", "int8", "complex64"], "int8": ["int16"], "int16": ["int32"],
    "int32": ["int64"], "int64": ["float"], "float": ["bfloat16", "float16"], "bfloat16": ["float32"],
    "float16": ["float32"], "float32": ["float64", "complex64"], "float64": ["complex128"],
    "complex64": ["complex128"], "complex128": [],
}


def _upper_bounds():
    out = {}
    for node in _LATTICE:
        ub, todo = {node}, [node]
        while todo:
            for up in _LATTICE[todo.pop()]:
                if up not in ub:
                    ub.add(up)
                    todo.append(up)
        out[node] = ub
    return out


_UPPER = _upper_bounds()
# What a 64-bit result becomes: JAX's 32-bit types, except int64, which lamina computes in.
_NARROW = {"uint64": "uint32", "float64": "float32", "complex128": "complex64"}


def keras_result_type(*dtypes_):
    """Keras's `keras.backend.result_type`: the dtype that mixing `dtypes_` gives under Keras's
    promotion rules (int32 and float32 give float32; Python int and float are weak: bfloat16 with
    float stays bfloat16). No dtype gives floatx(); float64 results are float32, as with Keras on
    JAX, and int64 stays int64 (lamina's Python int is int64 when converted, but a weak int alone
    resolves to int32 as in Keras)."""
    from .settings import floatx
    if not dtypes_:
        return floatx()
    nodes = []
    for d in dtypes_:
        if d is int or d is float:
            nodes.append((d.__name__, True))
            continue
        name = standardize_dtype(floatx() if d is None else d)
        if name == STRING:
            raise ValueError(f"result_type: strings do not take part in numeric promotion; received {dtypes_!r}")
        nodes.append((name, False))
    names = [n for n, _ in nodes]
    if len(set(names)) == 1 and not all(w for _, w in nodes):
        out = names[0]
    else:
        bounds = set.intersection(*(_UPPER[n] for n in set(names)))
        lub = (bounds & set(names)) or {c for c in bounds if bounds.issubset(_UPPER[c])}
        if len(lub) != 1:
            raise ValueError(f"result_type: the dtypes {tuple(names)} have no implicit promotion; cast them to "
                             "one dtype first")
        out = lub.pop()
    if out == "int":
        out = "int32"
    elif out == "float":
        out = floatx()
    return _NARROW.get(out, out)
