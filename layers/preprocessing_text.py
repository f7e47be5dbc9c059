"""Text and lookup preprocessing layers, as Keras 3's: StringLookup, IntegerLookup, Hashing,
HashedCrossing, TextVectorization.

Strings are not tensors in lamina: string inputs are numpy arrays (or lists) of str or bytes,
and these layers turn them into int64 / float32 tensors. The string work (standardizing,
splitting, n-grams, vocabulary lookups, hashing) is Python over the distinct values of a batch;
the encodings of the ids ("one_hot", "multi_hot", "count", "tf_idf") are ops, as in
CategoryEncoding. IntegerLookup and Hashing also take int tensors.

In a model, strings come in through `lamina.Input(shape=(), dtype="string")` (or shape=(1,)):
"string" is a dtype of symbolic inputs only, and the data stays host data, a numpy array of str
sliced into batches by fit / evaluate / predict and handed as it is to the layer after the input.
StringLookup (invert=False), TextVectorization and Hashing take such inputs (`_takes_strings`);
any other layer called on a string input raises an error naming itself.

Hashing (and the OOV buckets of the lookups when num_oov_indices > 1) is TensorFlow's, which
Keras uses: without a salt, FarmHash Fingerprint64 of the UTF-8 bytes (integers hash as their
decimal strings) modulo the number of bins (tf.strings.to_hash_bucket_fast); with a salt,
SipHash-2-4 keyed by the two salt integers (tf.strings.to_hash_bucket_strong). Both are
implemented here bit for bit, so ids match Keras's.
"""
import collections
import contextlib
import os
import re

import numpy as np

from .. import ops
from ..backend import dtypes
from ..backend.device import device as device_scope
from ..backend.tensor import Tensor, convert_to_tensor
from .layer import Layer
from .preprocessing import categorical_output_shape, encode_categorical

_M64 = (1 << 64) - 1


# ---- FarmHash Fingerprint64 (farmhashna::Hash64) -----------------------------------------------------

_K0, _K1, _K2 = 0xc3a5c85c97cb3127, 0xb492b66fbe98f273, 0x9ae16a3b2f90404f


def _f64(s, i):
    return int.from_bytes(s[i:i + 8], "little")


def _f32(s, i):
    return int.from_bytes(s[i:i + 4], "little")


def _ror(v, r):
    return ((v >> r) | (v << (64 - r))) & _M64 if r else v


def _smix(v):
    return v ^ (v >> 47)


def _len16(u, v, mul):
    a = ((u ^ v) * mul) & _M64
    a ^= a >> 47
    b = ((v ^ a) * mul) & _M64
    b ^= b >> 47
    return (b * mul) & _M64


def _len0to16(s, n):
    if n >= 8:
        mul = _K2 + n * 2
        a = (_f64(s, 0) + _K2) & _M64
        b = _f64(s, n - 8)
        c = (_ror(b, 37) * mul + a) & _M64
        d = ((_ror(a, 25) + b) * mul) & _M64
        return _len16(c, d, mul)
    if n >= 4:
        mul = _K2 + n * 2
        return _len16((n + (_f32(s, 0) << 3)) & _M64, _f32(s, n - 4), mul)
    if n > 0:
        y = s[0] + (s[n >> 1] << 8)
        z = n + (s[n - 1] << 2)
        return (_smix(((y * _K2) ^ (z * _K0)) & _M64) * _K2) & _M64
    return _K2


def _len17to32(s, n):
    mul = _K2 + n * 2
    a = (_f64(s, 0) * _K1) & _M64
    b = _f64(s, 8)
    c = (_f64(s, n - 8) * mul) & _M64
    d = (_f64(s, n - 16) * _K2) & _M64
    return _len16((_ror((a + b) & _M64, 43) + _ror(c, 30) + d) & _M64,
                  (a + _ror((b + _K2) & _M64, 18) + c) & _M64, mul)


def _len33to64(s, n):
    mul = _K2 + n * 2
    a = (_f64(s, 0) * _K2) & _M64
    b = _f64(s, 8)
    c = (_f64(s, n - 8) * mul) & _M64
    d = (_f64(s, n - 16) * _K2) & _M64
    y = (_ror((a + b) & _M64, 43) + _ror(c, 30) + d) & _M64
    z = _len16(y, (a + _ror((b + _K2) & _M64, 18) + c) & _M64, mul)
    e = (_f64(s, 16) * mul) & _M64
    f = _f64(s, 24)
    g = ((y + _f64(s, n - 32)) * mul) & _M64
    h = ((z + _f64(s, n - 24)) * mul) & _M64
    return _len16((_ror((e + f) & _M64, 43) + _ror(g, 30) + h) & _M64,
                  (e + _ror((f + a) & _M64, 18) + g) & _M64, mul)


def _weak32(s, i, a, b):
    w, x, y, z = _f64(s, i), _f64(s, i + 8), _f64(s, i + 16), _f64(s, i + 24)
    a = (a + w) & _M64
    b = _ror((b + a + z) & _M64, 21)
    c = a
    a = (a + x + y) & _M64
    b = (b + _ror(a, 44)) & _M64
    return (a + z) & _M64, (b + c) & _M64


def fingerprint64(data):
    """FarmHash Fingerprint64 of `data` (bytes), as TensorFlow's Fingerprint64."""
    s, n = bytes(data), len(data)
    if n <= 16:
        return _len0to16(s, n)
    if n <= 32:
        return _len17to32(s, n)
    if n <= 64:
        return _len33to64(s, n)
    seed = 81
    x, y = seed, (seed * _K1 + 113) & _M64
    z = (_smix((y * _K2 + 113) & _M64) * _K2) & _M64
    v0 = v1 = w0 = w1 = 0
    x = (x * _K2 + _f64(s, 0)) & _M64
    end = ((n - 1) // 64) * 64
    last64 = end + ((n - 1) & 63) - 63
    i = 0
    while True:
        x = (_ror((x + y + v0 + _f64(s, i + 8)) & _M64, 37) * _K1) & _M64
        y = (_ror((y + v1 + _f64(s, i + 48)) & _M64, 42) * _K1) & _M64
        x ^= w1
        y = (y + v0 + _f64(s, i + 40)) & _M64
        z = (_ror((z + w0) & _M64, 33) * _K1) & _M64
        v0, v1 = _weak32(s, i, (v1 * _K1) & _M64, (x + w0) & _M64)
        w0, w1 = _weak32(s, i + 32, (z + w1) & _M64, (y + _f64(s, i + 16)) & _M64)
        z, x = x, z
        i += 64
        if i == end:
            break
    mul = _K1 + ((z & 0xff) << 1)
    i = last64
    w0 = (w0 + ((n - 1) & 63)) & _M64
    v0 = (v0 + w0) & _M64
    w0 = (w0 + v0) & _M64
    x = (_ror((x + y + v0 + _f64(s, i + 8)) & _M64, 37) * mul) & _M64
    y = (_ror((y + v1 + _f64(s, i + 48)) & _M64, 42) * mul) & _M64
    x ^= (w1 * 9) & _M64
    y = (y + v0 * 9 + _f64(s, i + 40)) & _M64
    z = (_ror((z + w0) & _M64, 33) * mul) & _M64
    v0, v1 = _weak32(s, i, (v1 * mul) & _M64, (x + w0) & _M64)
    w0, w1 = _weak32(s, i + 32, (z + w1) & _M64, (y + _f64(s, i + 16)) & _M64)
    z, x = x, z
    return _len16((_len16(v0, w0, mul) + _smix(y) * _K0 + z) & _M64, (_len16(v1, w1, mul) + x) & _M64, mul)


# ---- SipHash-2-4 (TensorFlow's StrongKeyedHash) ----------------------------------------------------

def _sipround(v0, v1, v2, v3):
    v0 = (v0 + v1) & _M64
    v1 = _ror(v1, 64 - 13) ^ v0
    v0 = _ror(v0, 32)
    v2 = (v2 + v3) & _M64
    v3 = _ror(v3, 64 - 16) ^ v2
    v0 = (v0 + v3) & _M64
    v3 = _ror(v3, 64 - 21) ^ v0
    v2 = (v2 + v1) & _M64
    v1 = _ror(v1, 64 - 17) ^ v2
    v2 = _ror(v2, 32)
    return v0, v1, v2, v3


def siphash24(key0, key1, data):
    """SipHash-2-4 of `data` (bytes) with the 128-bit key (key0, key1) (two uint64)."""
    k0, k1 = key0 & _M64, key1 & _M64
    v0, v1 = k0 ^ 0x736f6d6570736575, k1 ^ 0x646f72616e646f6d
    v2, v3 = k0 ^ 0x6c7967656e657261, k1 ^ 0x7465646279746573
    s, n = bytes(data), len(data)
    full = n - n % 8
    for i in range(0, full, 8):
        m = _f64(s, i)
        v3 ^= m
        v0, v1, v2, v3 = _sipround(*_sipround(v0, v1, v2, v3))
        v0 ^= m
    m = ((n & 0xff) << 56) | int.from_bytes(s[full:], "little")
    v3 ^= m
    v0, v1, v2, v3 = _sipround(*_sipround(v0, v1, v2, v3))
    v0 ^= m
    v2 ^= 0xff
    for _ in range(4):
        v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


def _salt(who, salt):
    """Keras's salt: None, an int (used twice) or a pair of ints -> None or [k0, k1]."""
    if salt is None:
        return None
    if isinstance(salt, (int, np.integer)) and not isinstance(salt, (bool, np.bool_)):
        return [int(salt), int(salt)]
    if isinstance(salt, (tuple, list)) and len(salt) == 2 and all(
            isinstance(s, (int, np.integer)) and not isinstance(s, (bool, np.bool_)) for s in salt):
        return [int(s) for s in salt]
    raise ValueError(f"{who}: `salt` must be an integer or a pair of integers, received salt={salt!r}")


def _hash_buckets(keys, num_buckets, salt):
    """Bucket of each key (bytes) in [0, num_buckets): TensorFlow's to_hash_bucket_fast /
    to_hash_bucket_strong."""
    if salt is None:
        return [fingerprint64(k) % num_buckets for k in keys]
    return [siphash24(salt[0], salt[1], k) % num_buckets for k in keys]


# ---- string inputs ---------------------------------------------------------------------------------

def _is_string_data(x):
    if isinstance(x, (str, bytes)):
        return True
    if isinstance(x, np.ndarray):
        if x.dtype.kind in "US":
            return True
        return x.dtype.kind == "O" and x.size > 0 and isinstance(x.flat[0], (str, bytes))
    if isinstance(x, (list, tuple)):
        flat = x
        while isinstance(flat, (list, tuple)) and flat:
            flat = flat[0]
        return isinstance(flat, (str, bytes))
    return False


def _as_str_array(x, encoding, who):
    """x as a numpy array of Python str (bytes decoded with `encoding`)."""
    a = np.asarray(x, dtype=object)
    out = np.empty(a.shape, dtype=object)
    flat_in, flat_out = a.reshape(-1), out.reshape(-1)
    for i, v in enumerate(flat_in):
        if isinstance(v, bytes):
            v = v.decode(encoding)
        elif isinstance(v, np.str_):
            v = str(v)
        elif not isinstance(v, str):
            raise TypeError(f"{who}: expected strings (str or bytes), found {v!r} of type {type(v).__name__} in the "
                            "input")
        flat_out[i] = v
    return out


def _symbolic(x):
    from .input_layer import KerasTensor
    return isinstance(x, KerasTensor) or (isinstance(x, (list, tuple)) and any(isinstance(v, KerasTensor) for v in x))


def _check_symbolic_strings(who, inputs, strings, other=None):
    """A symbolic input of a text layer: dtype "string" when the layer takes strings, and a number
    dtype when it does not (StringLookup with invert=True)."""
    from .input_layer import KerasTensor
    for t in (inputs if isinstance(inputs, (list, tuple)) else [inputs]):
        if not isinstance(t, KerasTensor):
            continue
        if strings and t.dtype != dtypes.STRING:
            raise TypeError(f"{who}: expected a string input (lamina.Input(..., dtype='string')), received the "
                            f"symbolic input {t.name!r} of dtype {t.dtype}"
                            + (f"; for integer inputs use {other}" if other else ""))
        if not strings and t.dtype == dtypes.STRING:
            raise TypeError(f"{who}: invert=True maps integer indices back to strings; received the string input "
                            f"{t.name!r}. Use invert=False to map strings to indices")
        if not strings and not dtypes.is_int(t.dtype):
            raise TypeError(f"{who}: invert=True maps integer indices back to strings; received the symbolic input "
                            f"{t.name!r} of dtype {t.dtype}; declare it with an int dtype")


def _host_ints(x, who):
    """An int tensor or array of ints as an int64 numpy array (a host copy, for table lookups)."""
    a = x.numpy() if isinstance(x, Tensor) else np.asarray(x)
    if a.dtype.kind == "b" or a.dtype.kind not in "iu":
        raise TypeError(f"{who}: expected integer inputs, received dtype {a.dtype}; cast them to int32 / int64 first "
                        "(e.g. lamina.Input(..., dtype='int64') in a model)")
    return a.astype(np.int64)


def _describe(x):
    return type(x).__name__ + (f" of dtype {x.dtype}" if hasattr(x, "dtype") else "")


def _positive_int(who, name, value, minimum=1, allow_none=True):
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{who}: `{name}` must be an integer >= {minimum}{' or None' if allow_none else ''}, received "
                         f"{name}={value!r}")
    return int(value)


# ---- IndexLookup (StringLookup, IntegerLookup) -----------------------------------------------------

_MODES = ("int", "one_hot", "multi_hot", "count", "tf_idf")


class _IndexLookup(Layer):
    """Maps tokens to indices with a vocabulary (given, or learnt by `adapt`), as Keras's
    IndexLookup. Index layout, as Keras: [mask (output_mode "int" with a mask_token)] +
    [num_oov_indices OOV buckets] + the vocabulary's tokens."""
    supports_jit = False  # as Keras's (metadata: lamina has no XLA)

    _strings = True

    def __init__(self, max_tokens, num_oov_indices, mask_token, oov_token, vocabulary_dtype, vocabulary=None,
                 idf_weights=None, invert=False, output_mode="int", sparse=False, pad_to_max_tokens=False,
                 oov_method="floormod", name=None, salt=None, vocabulary_size=None, has_input_vocabulary=None,
                 **kwargs):
        who = self._who = type(self).__name__
        self.max_tokens = _positive_int(who, "max_tokens", max_tokens, minimum=2)
        if pad_to_max_tokens and max_tokens is None:
            raise ValueError(f"{who}: pad_to_max_tokens=True needs `max_tokens`, received max_tokens=None")
        self.num_oov_indices = _positive_int(who, "num_oov_indices", num_oov_indices, minimum=0, allow_none=False)
        if oov_method not in ("floormod", "farmhash"):
            raise ValueError(f"{who}: `oov_method` must be 'floormod' or 'farmhash', received "
                             f"oov_method={oov_method!r}")
        if salt is not None and not self._strings and oov_method != "farmhash":
            raise ValueError(f"{who}: `salt` only applies with oov_method='farmhash', received "
                             f"oov_method={oov_method!r}")
        self.salt = _salt(who, salt)
        output_mode = {"binary": "multi_hot", "tf-idf": "tf_idf"}.get(output_mode, output_mode)
        if output_mode not in _MODES:
            raise ValueError(f"{who}: `output_mode` must be one of {_MODES}, received output_mode={output_mode!r}")
        if invert and output_mode != "int":
            raise ValueError(f"{who}: invert=True needs output_mode='int', received output_mode={output_mode!r}")
        if sparse:
            raise ValueError(f"{who}: sparse=True is not supported: lamina has no sparse tensors. Use sparse=False "
                             "(the default) for a dense output")
        if idf_weights is not None and output_mode != "tf_idf":
            raise ValueError(f"{who}: `idf_weights` only apply with output_mode='tf_idf', received "
                             f"output_mode={output_mode!r}")
        kwargs.pop("dtype", None)          # Keras ignores these two for the lookups
        kwargs.pop("trainable", None)
        super().__init__(name=name, **kwargs)
        self.invert, self.output_mode, self.sparse = bool(invert), output_mode, False
        self.pad_to_max_tokens, self.oov_method = bool(pad_to_max_tokens), oov_method
        self.vocabulary_dtype = vocabulary_dtype
        self.mask_token, self.oov_token = self._token_arg("mask_token", mask_token), \
            self._token_arg("oov_token", oov_token)
        self._has_input_vocabulary = (vocabulary is not None) if has_input_vocabulary is None \
            else bool(has_input_vocabulary)
        self._tokens = None              # the vocabulary, without the special tokens
        self._index = None               # token -> index
        self._idf = None                 # float32 numpy array of length depth (tf_idf)
        self._graph_depth = None         # the depth a symbolic output was given (it must not change)
        self._frozen_size = vocabulary_size
        self._reset_counts()
        if output_mode == "tf_idf" and self._has_input_vocabulary and vocabulary is not None and idf_weights is None:
            raise ValueError(f"{who}: with output_mode='tf_idf', a `vocabulary` needs its `idf_weights` too")
        if vocabulary is not None:
            self.set_vocabulary(vocabulary, idf_weights)

    # -- tokens --
    def _token_arg(self, name, value):
        if value is None:
            return None
        if self._strings:
            if isinstance(value, bytes):
                value = value.decode(getattr(self, "encoding", "utf-8"))
            if not isinstance(value, str):
                raise ValueError(f"{self._who}: `{name}` must be a string or None, received {name}={value!r}")
            return str(value)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
            raise ValueError(f"{self._who}: `{name}` must be an integer or None, received {name}={value!r}")
        return int(value)

    def _token_list(self, values, what):
        out = []
        for v in values:
            if self._strings:
                if isinstance(v, bytes):
                    v = v.decode(self.encoding)
                if not isinstance(v, str):
                    raise ValueError(f"{self._who}: the {what} must hold strings, found {v!r}")
                out.append(str(v))
            else:
                if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
                    raise ValueError(f"{self._who}: the {what} must hold integers, found {v!r}")
                out.append(int(v))
        return out

    def _oov_start(self):
        return 1 if self.mask_token is not None and self.output_mode == "int" else 0

    def _token_start(self):
        return self._oov_start() + self.num_oov_indices

    def vocabulary_size(self):
        """The number of indices: special tokens plus vocabulary tokens."""
        return self._token_start() + (len(self._tokens) if self._tokens is not None else 0)

    def get_vocabulary(self, include_special_tokens=True):
        """The vocabulary, by index (index i holds token i), with the mask and OOV tokens first."""
        tokens = list(self._tokens or [])
        if not include_special_tokens:
            return tokens
        special = [self.oov_token] * self._token_start()
        if self.mask_token is not None and self.output_mode == "int":
            special[0] = self.mask_token
        return special + tokens

    def load_assets(self, dir_path):
        """Reads the vocabulary Keras writes into a '.keras' file's assets (`vocabulary.txt`, the
        special tokens first) when the layer's config does not carry it (an adapted layer)."""
        if self._has_input_vocabulary:
            return
        path = os.path.join(dir_path, "vocabulary.txt")
        if not os.path.exists(path):
            return
        if self.output_mode == "tf_idf":
            with open(path, encoding=getattr(self, "encoding", "utf-8")) as f:
                lines = f.read().splitlines()
            while lines and lines[-1] == "":
                lines.pop()
            idf = getattr(self, "idf_weights", None)
            if idf is None:
                raise ValueError(f"{self._who} '{self.name}': the file's vocabulary asset has no idf weights with it "
                                 "(output_mode='tf_idf'); adapt the layer again")
            self.set_vocabulary(lines if self._strings else [int(v) for v in lines], idf_weights=idf)
            return
        self.set_vocabulary(path)

    def set_vocabulary(self, vocabulary, idf_weights=None):
        """Sets the vocabulary (a list / array, or the path of a text file with one token per line;
        it may start with the special tokens in their order) and, for "tf_idf", its idf_weights."""
        who = f"{self._who} '{self.name}'"
        if self.output_mode == "tf_idf" and idf_weights is None:
            raise ValueError(f"{who}: with output_mode='tf_idf', set_vocabulary needs `idf_weights` too")
        if self.output_mode != "tf_idf" and idf_weights is not None:
            raise ValueError(f"{who}: `idf_weights` only apply with output_mode='tf_idf', received "
                             f"output_mode={self.output_mode!r}")
        if isinstance(vocabulary, (str, os.PathLike)):
            if self.output_mode == "tf_idf":
                raise ValueError(f"{who}: output_mode='tf_idf' cannot read its vocabulary from a file; pass a list "
                                 "and its idf_weights")
            if not os.path.exists(vocabulary):
                raise ValueError(f"{who}: the vocabulary file {str(vocabulary)!r} does not exist")
            with open(vocabulary, encoding=getattr(self, "encoding", "utf-8")) as f:
                lines = f.read().splitlines()
            while lines and lines[-1] == "":
                lines.pop()
            if not self._strings:
                try:
                    lines = [int(v) for v in lines]
                except ValueError:
                    raise ValueError(f"{who}: the vocabulary file {str(vocabulary)!r} must hold one integer per "
                                     "line") from None
            vocabulary = lines
        elif isinstance(vocabulary, Tensor):
            vocabulary = vocabulary.numpy().tolist()
        elif isinstance(vocabulary, np.ndarray):
            vocabulary = vocabulary.tolist()
        if not isinstance(vocabulary, (list, tuple)):
            raise ValueError(f"{who}: `vocabulary` must be a list, an array or a file path, received "
                             f"{type(vocabulary).__name__}")
        vocabulary = self._token_list(vocabulary, "vocabulary")
        if not vocabulary:
            raise ValueError(f"{who}: cannot set an empty vocabulary")
        start = self._token_start()
        special = [self.mask_token] * self._oov_start() + [self.oov_token] * self.num_oov_indices
        found_special = start > 0 and vocabulary[:start] == special
        tokens = vocabulary[start:] if found_special else vocabulary
        repeated = [t for t, c in collections.Counter(tokens).items() if c > 1]
        if repeated:
            raise ValueError(f"{who}: the vocabulary repeats {repeated[:10]}; every token must appear once")
        if self.mask_token is not None and self.mask_token in tokens:
            raise ValueError(f"{who}: the mask token {self.mask_token!r} is in the vocabulary at index "
                             f"{vocabulary.index(self.mask_token)}. Leave the special tokens out of `vocabulary`, "
                             f"or put exactly {special} at its start")
        if self.oov_token is not None and self.invert and self.oov_token in tokens:
            raise ValueError(f"{who}: the OOV token {self.oov_token!r} is in the vocabulary at index "
                             f"{vocabulary.index(self.oov_token)}. Leave the special tokens out of `vocabulary`, "
                             f"or put exactly {special} at its start")
        if self.max_tokens is not None and start + len(tokens) > self.max_tokens:
            raise ValueError(f"{who}: the vocabulary has {start + len(tokens)} indices (with the special tokens), more "
                             f"than max_tokens={self.max_tokens}")
        idf = None
        if idf_weights is not None:
            w = np.asarray(idf_weights.numpy() if isinstance(idf_weights, Tensor) else idf_weights, dtype=np.float64)
            if w.ndim != 1 or len(w) != len(vocabulary):
                raise ValueError(f"{who}: `idf_weights` must be 1-D with one weight per vocabulary entry "
                                 f"({len(vocabulary)}), received shape {w.shape}")
            front = 0 if found_special else start
            w = np.concatenate([np.full(front, np.average(w) if len(w) else 0.0), w])
            idf = w
        self._set_tokens(tokens, idf)

    def _set_tokens(self, tokens, idf=None):
        size = self._token_start() + len(tokens)
        depth = self.max_tokens if self.pad_to_max_tokens else size
        if self._graph_depth is not None and depth != self._graph_depth:
            raise ValueError(f"{self._who} '{self.name}': a model already uses this layer's output of size "
                             f"{self._graph_depth}; the new vocabulary gives {depth}. With output_mode="
                             f"{self.output_mode!r}, set pad_to_max_tokens=True (and max_tokens) to fix the size")
        if idf is not None:
            idf = np.concatenate([idf, np.zeros(depth - len(idf))]).astype(np.float32)
        self._tokens = list(tokens)
        start = self._token_start()
        self._index = {t: start + i for i, t in enumerate(self._tokens)}
        self._idf = idf
        self._frozen_size = size

    # -- adapt --
    def _reset_counts(self):
        self._counts = collections.Counter()
        self._doc_counts = collections.Counter()
        self._num_docs = 0

    def _check_adaptable(self):
        if self._has_input_vocabulary:
            raise ValueError(f"{self._who} '{self.name}' was given a `vocabulary`; adapt() only applies to a layer "
                             "created without one")

    def _update_counts(self, rows):
        """rows: lists of tokens, one per document."""
        for row in rows:
            self._counts.update(row)
            if self.output_mode == "tf_idf":
                self._doc_counts.update(set(row))
        self._num_docs += len(rows)

    def _finalize(self):
        counts = self._counts
        for special in (self.mask_token, self.oov_token):
            if special is not None:
                counts.pop(special, None)
        if not counts:
            self._reset_counts()
            return
        # by count, most frequent first; ties: the larger token first (Keras's lexsort(...)[::-1])
        tokens = sorted(counts, key=lambda t: (counts[t], t.encode("utf-8") if self._strings else t), reverse=True)
        if self.max_tokens:
            tokens = tokens[:self.max_tokens - self._token_start()]
        idf = None
        if self.output_mode == "tf_idf":
            doc = np.array([self._doc_counts[t] for t in tokens], np.float64)
            w = np.log(1.0 + self._num_docs / (1.0 + doc)).astype(np.float32)
            idf = np.concatenate([np.full(self._token_start(), np.mean(w), np.float32), w])
        self._reset_counts()
        self._set_tokens(tokens, idf)

    def adapt(self, data, steps=None):
        """Learns the vocabulary from `data`: an array (or list) of tokens, or an iterable of
        batches (at most `steps`): the most frequent tokens first, up to max_tokens."""
        self._check_adaptable()
        self._reset_counts()
        if isinstance(data, (list, tuple, np.ndarray, Tensor)) or not hasattr(data, "__iter__"):
            a = self._adapt_values(data)
            self._update_counts(self._rows(a.reshape(-1, 1) if a.ndim == 1 else a))
        else:
            for i, batch in enumerate(data):
                if steps is not None and i >= steps:
                    break
                a = self._adapt_values(batch)
                self._update_counts(self._rows(a.reshape(1, -1) if a.ndim <= 1 else a))
        self._finalize()

    def _adapt_values(self, data):
        if self._strings:
            return _as_str_array(data, self.encoding, f"{self._who} '{self.name}'.adapt")
        return _host_ints(data, f"{self._who} '{self.name}'.adapt")

    @staticmethod
    def _rows(a):
        return [list(r.reshape(-1).tolist()) for r in a]

    # -- lookups --
    def _require_vocabulary(self):
        if self._tokens is None:
            raise ValueError(f"{self._who} '{self.name}' has no vocabulary: pass `vocabulary=` when creating it, or "
                             "call adapt(data) or set_vocabulary(...) first")

    def _oov_buckets(self, values):
        n = self.num_oov_indices
        if not self._strings and self.oov_method == "floormod":
            return [v % n for v in values]
        keys = [(v if self._strings else str(v)).encode("utf-8") for v in values]
        return _hash_buckets(keys, n, self.salt)

    def _lookup_ids(self, values, masked_value):
        """Indices (int64 numpy, the shape of `values`) of an array of tokens; the mask token gives
        `masked_value`."""
        uniq, inverse = np.unique(values.reshape(-1), return_inverse=True) if values.size else (values.reshape(-1), [])
        ids = np.empty(len(uniq), np.int64)
        missing = []
        for i, t in enumerate(uniq.tolist()):
            if self.mask_token is not None and t == self.mask_token:
                ids[i] = masked_value
                continue
            j = self._index.get(t)
            if j is None:
                missing.append(i)
            else:
                ids[i] = j
        if missing:
            if self.num_oov_indices == 0:
                shown = [uniq[i] for i in missing[:5]]
                raise ValueError(f"{self._who} '{self.name}': with num_oov_indices=0 every input must be in the "
                                 f"vocabulary; found out-of-vocabulary values {shown}"
                                 f"{' ...' if len(missing) > 5 else ''}. Set num_oov_indices=1 to map them to an "
                                 "OOV index")
            start = self._oov_start()
            if self.num_oov_indices == 1:
                ids[missing] = start
            else:
                ids[missing] = np.asarray(self._oov_buckets([uniq[i] for i in missing]), np.int64) + start
        return ids[np.asarray(inverse, np.int64)].reshape(values.shape)

    def _invert_ids(self, ids):
        """Tokens (numpy array) of an int64 array of indices."""
        reverse = {i: t for t, i in self._index.items()}
        uniq, inverse = np.unique(ids.reshape(-1), return_inverse=True)
        mask = self.mask_token is not None
        toks = [self.mask_token if mask and i == 0 else reverse.get(i, self.oov_token) for i in uniq.tolist()]
        if self._strings:
            arr = np.array(toks, dtype=object) if toks else np.empty(0, dtype=object)
            return arr[inverse].reshape(ids.shape).astype(str)
        return np.asarray(toks, np.int64)[inverse].reshape(ids.shape)

    def _depth(self):
        return self.max_tokens if self.pad_to_max_tokens else self.vocabulary_size()

    def _encode(self, ids):
        """The output for int64 numpy indices (masked entries -1 outside "int")."""
        t = convert_to_tensor(ids, dtype=dtypes.INT64)
        if self.output_mode == "int":
            return t
        mode = "count" if self.output_mode == "tf_idf" else self.output_mode
        out = encode_categorical(t, mode, self._depth())
        if self.output_mode == "tf_idf":
            out = ops.multiply(out, self._idf)
        return out

    def _lookup(self, values):
        """Forward (or inverse) lookup of host values -> the layer's output."""
        self._require_vocabulary()
        if self.invert:
            out = self._invert_ids(values)
            return out if self._strings else convert_to_tensor(out, dtype=dtypes.INT64)
        masked = 0 if self.output_mode == "int" else -1
        return self._encode(self._lookup_ids(values, masked))

    def compute_output_shape(self, input_shape):
        if self.output_mode == "int":
            return tuple(input_shape)
        if not self.pad_to_max_tokens:
            self._require_vocabulary()     # the output size is the vocabulary's
        depth = self._depth()
        self._graph_depth = depth
        return categorical_output_shape(input_shape, self.output_mode, depth)

    def compute_output_dtype(self, input_dtypes):
        return dtypes.INT64 if self.output_mode == "int" else dtypes.FLOAT32

    # -- saving: Keras keeps tf_idf weights as a variable "idf_weights" --
    def save_own_variables(self, store):
        if self.output_mode == "tf_idf" and self._idf is not None:
            store["idf_weights"] = self._idf

    def load_own_variables(self, store):
        if self.output_mode == "tf_idf" and "idf_weights" in store:
            self._idf = np.asarray(store["idf_weights"], np.float32)

    def get_build_config(self):
        return {}

    def build_from_config(self, config):
        self.built = True

    def get_config(self):
        vocab = self.get_vocabulary(include_special_tokens=False) if self._tokens is not None else None
        idf = None
        if self.output_mode == "tf_idf" and self._idf is not None and vocab is not None:
            start = self._token_start()
            idf = [float(v) for v in self._idf[start:start + len(vocab)]]
        return {**super().get_config(), "invert": self.invert, "max_tokens": self.max_tokens,
                "num_oov_indices": self.num_oov_indices, "oov_token": self.oov_token, "mask_token": self.mask_token,
                "output_mode": self.output_mode, "sparse": self.sparse, "pad_to_max_tokens": self.pad_to_max_tokens,
                "vocabulary_dtype": self.vocabulary_dtype, "idf_weights": idf, "vocabulary": vocab,
                "vocabulary_size": self.vocabulary_size() if self._tokens is not None else self._frozen_size,
                "oov_method": self.oov_method, "salt": self.salt}


class StringLookup(_IndexLookup):
    """Maps strings to integer indices with a vocabulary, as Keras's StringLookup.

    Inputs: numpy arrays (or lists) of str / bytes (decoded with `encoding`); in a model, a
    lamina.Input(..., dtype="string") (with invert=True: an int input, giving strings). Indices: 0 for
    `mask_token` when set (output_mode "int"), then `num_oov_indices` OOV indices (strings not in
    the vocabulary: index 1 with one, a hash bucket with several, an error with none), then the
    vocabulary. output_mode "int" gives int64 indices; "one_hot", "multi_hot", "count" and
    "tf_idf" give float32 encodings of size vocabulary_size() (max_tokens with
    pad_to_max_tokens). invert=True maps indices (ints) back to strings (a numpy array).
    The vocabulary comes from `vocabulary=` (a list or a file path), `adapt(data)` or
    `set_vocabulary`; get_config carries it (Keras keeps an adapted one in the saved file's
    assets instead, which lamina's files do not have)."""

    def __init__(self, max_tokens=None, num_oov_indices=1, mask_token=None, oov_token="[UNK]", vocabulary=None,
                 idf_weights=None, invert=False, output_mode="int", pad_to_max_tokens=False, sparse=False,
                 encoding="utf-8", name=None, salt=None, **kwargs):
        if not isinstance(encoding, str):
            raise ValueError(f"StringLookup: `encoding` must be a codec name, received encoding={encoding!r}")
        "".encode(encoding)       # an unknown codec raises LookupError here, naming it
        self.encoding = encoding
        kwargs.pop("vocabulary_dtype", None)
        super().__init__(max_tokens=max_tokens, num_oov_indices=num_oov_indices, mask_token=mask_token,
                         oov_token=oov_token, vocabulary_dtype="string", vocabulary=vocabulary,
                         idf_weights=idf_weights, invert=invert, output_mode=output_mode, sparse=sparse,
                         pad_to_max_tokens=pad_to_max_tokens, name=name, salt=salt, **kwargs)

    def _takes_strings(self):
        return not self.invert

    def __call__(self, inputs, *args, **kwargs):
        who = f"StringLookup '{self.name}'"
        if _symbolic(inputs):
            _check_symbolic_strings(who, inputs, not self.invert, "IntegerLookup" if not self.invert else None)
            return super().__call__(inputs, *args, **kwargs)
        if self.invert:
            if _is_string_data(inputs):
                raise TypeError(f"{who}: invert=True maps integer indices back to strings; received strings")
            self.built = True
            return self._lookup(_host_ints(inputs, who))
        if isinstance(inputs, Tensor) or not _is_string_data(inputs):
            raise TypeError(f"{who}: expected strings (a numpy array or list of str / bytes), received "
                            f"{_describe(inputs)}"
                            ". For integer inputs use IntegerLookup")
        self.built = True
        values = _as_str_array(inputs, self.encoding, who)
        with device_scope(self._device) if self._device is not None else contextlib.nullcontext():
            return self._lookup(values)

    def compute_output_dtype(self, input_dtypes):
        return dtypes.STRING if self.invert else super().compute_output_dtype(input_dtypes)

    def get_config(self):
        config = super().get_config()
        del config["vocabulary_dtype"]
        config["encoding"] = self.encoding
        return config


class IntegerLookup(_IndexLookup):
    """Maps integers to indices with a vocabulary, as Keras's IntegerLookup (see StringLookup
    for the index layout and output modes). Inputs are int tensors or arrays (so it works in
    models, symbolic inputs included). Several OOV indices take `value % num_oov_indices`
    (oov_method="floormod") or a hash of the decimal string (oov_method="farmhash", `salt`).
    invert=True maps indices back to the integers (int64)."""

    _strings = False

    def __init__(self, max_tokens=None, num_oov_indices=1, mask_token=None, oov_token=-1, vocabulary=None,
                 vocabulary_dtype="int64", idf_weights=None, invert=False, output_mode="int", sparse=False,
                 pad_to_max_tokens=False, oov_method="floormod", salt=None, name=None, **kwargs):
        if vocabulary_dtype != "int64":
            raise ValueError(f"IntegerLookup: only vocabulary_dtype='int64' is supported (as in Keras), received "
                             f"vocabulary_dtype={vocabulary_dtype!r}")
        super().__init__(max_tokens=max_tokens, num_oov_indices=num_oov_indices, mask_token=mask_token,
                         oov_token=oov_token, vocabulary_dtype="int64", vocabulary=vocabulary,
                         idf_weights=idf_weights, invert=invert, output_mode=output_mode, sparse=sparse,
                         pad_to_max_tokens=pad_to_max_tokens, oov_method=oov_method, salt=salt, name=name, **kwargs)

    def call(self, inputs):
        with device_scope(inputs.device):    # the output goes where the input was
            return self._lookup(_host_ints(inputs, f"IntegerLookup '{self.name}'"))


# ---- Hashing ------------------------------------------------------------------------------------------

class Hashing(Layer):
    """Hashes values into `num_bins` bins, as Keras's Hashing (TensorFlow's hashes; see the
    module docstring): FarmHash Fingerprint64 without `salt`, SipHash-2-4 keyed by the salt with
    one. Inputs: strings (numpy arrays / lists) or numbers (int tensors; floats are truncated to
    integers); numbers hash as their decimal strings. With `mask_value`, that value gets bin 0 and
    the others bins 1..num_bins-1. output_mode: "int" (default; `dtype` int64 or int32),
    "one_hot", "multi_hot" or "count" (float32, as CategoryEncoding)."""
    supports_jit = False  # as Keras's (metadata: lamina has no XLA)
    _casts_int_inputs = False  # the values given are hashed as they are

    def __init__(self, num_bins, mask_value=None, salt=None, output_mode="int", sparse=False, **kwargs):
        if kwargs.get("dtype") is None:
            kwargs["dtype"] = "int64" if output_mode == "int" else "float32"
        super().__init__(**kwargs)
        if isinstance(num_bins, (bool, np.bool_)) or not isinstance(num_bins, (int, np.integer)) or num_bins <= 0:
            raise ValueError(f"Hashing: `num_bins` must be a positive integer, received num_bins={num_bins!r}")
        modes = ("int", "one_hot", "multi_hot", "count")
        if output_mode not in modes:
            raise ValueError(f"Hashing: `output_mode` must be one of {modes}, received output_mode={output_mode!r}")
        if output_mode == "int" and self.dtype not in (dtypes.INT32, dtypes.INT64):
            raise ValueError(f"Hashing: with output_mode='int', `dtype` must be 'int32' or 'int64', received "
                             f"dtype={kwargs['dtype']!r}")
        if sparse:
            raise ValueError("Hashing: sparse=True is not supported: lamina has no sparse tensors. Use sparse=False "
                             "(the default) for a dense output")
        if mask_value is not None and not isinstance(mask_value, (str, bytes, int, np.integer)) or \
                isinstance(mask_value, (bool, np.bool_)):
            raise ValueError(f"Hashing: `mask_value` must be a string, an integer or None, received "
                             f"mask_value={mask_value!r}")
        self.num_bins, self.mask_value, self.output_mode, self.sparse = int(num_bins), mask_value, output_mode, False
        self.salt = _salt("Hashing", salt)
        self.strong_hash = self.salt is not None

    def _takes_strings(self):
        return True

    def __call__(self, inputs, *args, **kwargs):
        if _is_string_data(inputs) and not _symbolic(inputs):
            self.built = True
            values = _as_str_array(inputs, "utf-8", f"Hashing '{self.name}'")
            with device_scope(self._device) if self._device is not None else contextlib.nullcontext():
                return self._hash(values)
        return super().__call__(inputs, *args, **kwargs)

    def call(self, inputs):
        a = inputs.numpy()
        if a.dtype.kind == "b":
            raise TypeError(f"Hashing '{self.name}': boolean inputs are not supported; cast them to int first")
        with device_scope(inputs.device):
            return self._hash(a)

    def _hash(self, values):
        if self.output_mode == "one_hot" and values.ndim and values.shape[-1] == 1:
            values = values.reshape(values.shape[:-1])
        bins = self.num_bins
        masked = None
        if self.mask_value is not None and bins > 1:
            bins -= 1
            mv = self.mask_value
            if values.dtype.kind in "iuf":
                masked = values == mv if isinstance(mv, (int, np.integer)) else np.zeros(values.shape, bool)
            else:
                mv = mv.decode("utf-8") if isinstance(mv, bytes) else mv
                masked = values == mv if isinstance(mv, str) else np.zeros(values.shape, bool)
        flat = values.reshape(-1)
        if flat.dtype.kind == "f":
            flat = flat.astype(np.int64)      # TensorFlow casts floats to int64 before hashing
        uniq, inverse = np.unique(flat, return_inverse=True) if flat.size else (flat, np.zeros(0, np.int64))
        keys = [(v if isinstance(v, str) else str(int(v))).encode("utf-8") for v in uniq.tolist()]
        ids = np.asarray(_hash_buckets(keys, bins, self.salt), np.int64)[np.asarray(inverse, np.int64)]
        ids = ids.reshape(values.shape)
        if masked is not None:
            ids = np.where(masked, 0, ids + 1)
        if self.output_mode == "int":
            return convert_to_tensor(ids, dtype=self.dtype)
        return encode_categorical(convert_to_tensor(ids, dtype=dtypes.INT64), self.output_mode, self.num_bins)

    def compute_output_shape(self, input_shape):
        if self.output_mode == "int":
            return tuple(input_shape)
        if not input_shape:
            return (self.num_bins,)
        return tuple(input_shape[:-1]) + (self.num_bins,)

    def compute_output_dtype(self, input_dtypes):
        return self.dtype

    def get_config(self):
        return {**super().get_config(), "num_bins": self.num_bins, "salt": self.salt, "mask_value": self.mask_value,
                "output_mode": self.output_mode, "sparse": self.sparse}


# ---- HashedCrossing ------------------------------------------------------------------------------------

_CROSS_HASH_KEY = 0xDECAFCAFFE   # tf.sparse.cross_hashed's default hash_key
_CAT_MUL = 0xc6a4a7935bd1e995


def _shift_mix(v):
    return v ^ (v >> 47)


def fingerprint_cat64(fp1, fp2):
    """TensorFlow's FingerprintCat64: two 64-bit fingerprints combined into one."""
    r = fp1 ^ _CAT_MUL
    r ^= (_shift_mix((fp2 * _CAT_MUL) & _M64) * _CAT_MUL) & _M64
    r = (r * _CAT_MUL) & _M64
    r = (_shift_mix(r) * _CAT_MUL) & _M64
    return _shift_mix(r)


class HashedCrossing(Layer):
    """Crosses categorical features with the hashing trick, as Keras's HashedCrossing (which runs
    TensorFlow's sparse.cross_hashed; the same bins here, bit for bit): for each row, the features
    (a string hashed with Fingerprint64 of its UTF-8 bytes, an integer taken as it is) are chained
    with FingerprintCat64 from the key 0xDECAFCAFFE, modulo `num_bins`.

    Inputs: a list or tuple of at least two features of one shape, (), (batch,) or (batch, 1):
    numpy arrays or lists of strings, integer arrays or int tensors (symbolic: string or integer
    Inputs). output_mode "int" (`dtype` int64 by default, or int32) gives the bins in the input's
    shape; "one_hot" gives float32 (batch, num_bins)."""
    supports_jit = False  # as Keras's (metadata: lamina has no XLA)
    _casts_int_inputs = False  # the values given are hashed as they are

    def __init__(self, num_bins, output_mode="int", sparse=False, name=None, dtype=None, **kwargs):
        if output_mode == "int" and dtype is None:
            dtype = "int64"
        super().__init__(name=name, dtype=dtype or "float32", **kwargs)
        if isinstance(num_bins, (bool, np.bool_)) or not isinstance(num_bins, (int, np.integer)) or num_bins <= 0:
            raise ValueError(f"HashedCrossing: `num_bins` must be a positive integer, received num_bins={num_bins!r}")
        if output_mode not in ("int", "one_hot"):
            raise ValueError(f"HashedCrossing: `output_mode` must be 'int' or 'one_hot', received "
                             f"output_mode={output_mode!r}")
        if output_mode == "int" and self.dtype not in (dtypes.INT32, dtypes.INT64):
            raise ValueError(f"HashedCrossing: with output_mode='int', `dtype` must be 'int32' or 'int64', received "
                             f"dtype={dtype!r}")
        if sparse:
            raise ValueError("HashedCrossing: sparse=True is not supported (Keras allows it with TensorFlow only); "
                             "use sparse=False for a dense output")
        self.num_bins, self.output_mode, self.sparse = int(num_bins), output_mode, False

    def _takes_strings(self):
        return True

    def _check_inputs(self, inputs):
        if not isinstance(inputs, (list, tuple)):
            raise ValueError(f"HashedCrossing '{self.name}' should be called on a list or tuple of inputs, received "
                             f"{type(inputs).__name__}")
        if len(inputs) < 2:
            raise ValueError(f"HashedCrossing '{self.name}' should be called on at least two inputs, received "
                             f"{len(inputs)}")

    def __call__(self, inputs, *args, **kwargs):
        self._check_inputs(inputs)
        if _symbolic(inputs):
            return super().__call__(list(inputs), *args, **kwargs)
        self.built = True
        return self._cross([x.numpy() if isinstance(x, Tensor) else np.asarray(x) for x in inputs])

    def call(self, inputs):
        return self._cross([x.numpy() if isinstance(x, Tensor) else np.asarray(x) for x in inputs])

    def _cross(self, arrays):
        who = f"HashedCrossing '{self.name}'"
        shape = arrays[0].shape
        if len(shape) > 2 or (len(shape) == 2 and shape[-1] != 1):
            raise ValueError(f"{who}: every input should have shape (), (batch_size,) or (batch_size, 1), received "
                             f"shape {shape}")
        if any(a.shape != shape for a in arrays[1:]):
            raise ValueError(f"{who}: every input should have the same shape, received shapes "
                             f"{[a.shape for a in arrays]}")
        columns = []
        for i, a in enumerate(arrays):
            flat = a.reshape(-1)
            if a.dtype.kind in "iu":
                columns.append([int(v) & _M64 for v in flat.tolist()])
            elif a.dtype.kind in "USO":
                strs = _as_str_array(flat, "utf-8", f"{who}, input {i}")
                memo = {}
                columns.append([memo.setdefault(v, fingerprint64(v.encode("utf-8"))) for v in strs.tolist()])
            else:
                raise ValueError(f"{who}: every input should have an integer or string dtype, received input {i} of "
                                 f"dtype {a.dtype}")
        bins = []
        for row in zip(*columns):
            h = _CROSS_HASH_KEY
            for f in row:
                h = fingerprint_cat64(h, f)
            bins.append(h % self.num_bins)
        ids = np.asarray(bins, np.int64).reshape(shape)
        if self.output_mode == "int":
            return convert_to_tensor(ids, dtype=self.dtype)
        if ids.ndim and ids.shape[-1] == 1:
            ids = ids.reshape(ids.shape[:-1])
        return encode_categorical(convert_to_tensor(ids, dtype=dtypes.INT64), "one_hot", self.num_bins)

    def compute_output_shape(self, input_shape):
        first = tuple(input_shape[0])
        if self.output_mode == "int":
            return first
        if first and first[-1] == 1:
            first = first[:-1]
        return first + (self.num_bins,)

    def compute_output_dtype(self, input_dtypes):
        return self.dtype

    def get_config(self):
        return {**super().get_config(), "num_bins": self.num_bins, "output_mode": self.output_mode,
                "sparse": self.sparse}


# ---- TextVectorization ------------------------------------------------------------------------------

_PUNCTUATION = re.compile(r'[!"#$%&()\*\+,-\./:;<=>?@\[\\\]^_`{|}~\']')
_ASCII_LOWER = {c: c + 32 for c in range(ord("A"), ord("Z") + 1)}
_ASCII_SPACE = re.compile(r"[ \t\n\v\f\r]+")


def _split_whitespace(s):
    return [t for t in _ASCII_SPACE.split(s) if t]


def _ngrams(tokens, widths):
    """tf.strings.ngrams(tokens, widths, separator=" "): every n-gram of each width, width by width."""
    out = []
    for n in widths:
        out.extend(" ".join(tokens[i:i + n]) for i in range(len(tokens) - n + 1))
    return out


class TextVectorization(Layer):
    """Turns strings into token indices or token encodings, as Keras's TextVectorization.

    Each string is standardized (`standardize`: "lower_and_strip_punctuation" (default), "lower",
    "strip_punctuation", None, or a callable taking and returning a numpy array of str; lowering
    and punctuation are ASCII, as TensorFlow's), split into tokens (`split`: "whitespace"
    (default; ASCII whitespace), "character", None (each string is one token), or a callable
    taking a 1-D numpy array of str and returning one list of tokens per string), joined into
    n-grams (`ngrams`: None, an int n for 1..n, or a tuple of widths), then looked up in the
    vocabulary (index 0: padding / mask "", 1: OOV "[UNK]", then the tokens).

    output_mode "int" (default) gives int64 indices of shape (batch, output_sequence_length),
    padded with 0 or truncated (without output_sequence_length: the longest string's length);
    "multi_hot", "count" and "tf_idf" give float32 (batch, vocabulary size) (max_tokens with
    pad_to_max_tokens); "one_hot" needs split=None (one token per string).

    Inputs: a numpy array or list of strings, shape (batch,) or (batch, 1) (or one string); in a
    model, lamina.Input(shape=(), dtype="string") or shape=(1,). The
    vocabulary comes from `vocabulary=`, `adapt(data)` or `set_vocabulary`; get_config carries
    it. There is no ragged or sparse output (ragged=True / sparse=True raise)."""
    supports_jit = False  # as Keras's (metadata: lamina has no XLA)

    def __init__(self, max_tokens=None, standardize="lower_and_strip_punctuation", split="whitespace", ngrams=None,
                 output_mode="int", output_sequence_length=None, pad_to_max_tokens=False, vocabulary=None,
                 idf_weights=None, sparse=False, ragged=False, encoding="utf-8", name=None, **kwargs):
        who = "TextVectorization"
        if standardize is not None and not callable(standardize) and standardize not in (
                "lower_and_strip_punctuation", "lower", "strip_punctuation"):
            raise ValueError(f"{who}: `standardize` must be 'lower_and_strip_punctuation', 'lower', "
                             f"'strip_punctuation', None or a callable, received standardize={standardize!r}")
        if split is not None and not callable(split) and split not in ("whitespace", "character"):
            raise ValueError(f"{who}: `split` must be 'whitespace', 'character', None or a callable, received "
                             f"split={split!r}")
        output_mode = {"binary": "multi_hot", "tf-idf": "tf_idf"}.get(output_mode, output_mode)
        if output_mode not in _MODES:
            raise ValueError(f"{who}: `output_mode` must be one of {_MODES}, received output_mode={output_mode!r}")
        if output_mode == "one_hot" and split is not None:
            raise ValueError(f"{who}: output_mode='one_hot' encodes one token per string, so it needs split=None; "
                             "for split text use 'multi_hot', 'count' or 'tf_idf'")
        if isinstance(ngrams, list):
            ngrams = tuple(ngrams)
        if not (ngrams is None or (isinstance(ngrams, int) and not isinstance(ngrams, bool) and ngrams >= 1) or
                (isinstance(ngrams, tuple) and ngrams and
                 all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in ngrams))):
            raise ValueError(f"{who}: `ngrams` must be None, a positive integer or a tuple of positive integers, "
                             f"received ngrams={ngrams!r}")
        if output_mode == "int":
            output_sequence_length = _positive_int(who, "output_sequence_length", output_sequence_length)
        elif output_sequence_length is not None:
            raise ValueError(f"{who}: `output_sequence_length` only applies to output_mode='int', received "
                             f"output_sequence_length={output_sequence_length!r} with output_mode={output_mode!r}")
        if ragged:
            raise ValueError(f"{who}: ragged=True is not supported: lamina has no ragged tensors. Use ragged=False "
                             "(outputs padded with 0), with output_sequence_length to fix their length")
        if sparse:
            raise ValueError(f"{who}: sparse=True is not supported: lamina has no sparse tensors. Use sparse=False")
        has_input_vocabulary = kwargs.pop("has_input_vocabulary", vocabulary is not None)
        vocabulary_size = kwargs.pop("vocabulary_size", None)
        super().__init__(name=name, **kwargs)
        self._standardize, self._split, self._ngrams_arg = standardize, split, ngrams
        self._ngrams = tuple(range(1, ngrams + 1)) if isinstance(ngrams, int) else ngrams
        self._output_mode, self._output_sequence_length = output_mode, output_sequence_length
        self._encoding = encoding
        self._lookup_layer = StringLookup(max_tokens=max_tokens, vocabulary=vocabulary, idf_weights=idf_weights,
                                          pad_to_max_tokens=pad_to_max_tokens, mask_token="",
                                          output_mode=output_mode, encoding=encoding,
                                          has_input_vocabulary=has_input_vocabulary,
                                          vocabulary_size=vocabulary_size, name=f"{self.name}_lookup")

    # -- the string pipeline --
    def _standardized(self, a):
        s = self._standardize
        if s is None:
            return a
        if callable(s):
            out = np.asarray(s(a.astype(str)), dtype=object)
            if out.shape != a.shape:
                raise ValueError(f"TextVectorization '{self.name}': the `standardize` callable returned shape "
                                 f"{out.shape} for inputs of shape {a.shape}; it must keep the shape")
            return _as_str_array(out, self._encoding, f"TextVectorization '{self.name}' (standardize)")
        out = np.empty(a.shape, dtype=object)
        for i, v in enumerate(a.reshape(-1)):
            if s in ("lower", "lower_and_strip_punctuation"):
                v = v.translate(_ASCII_LOWER)
            if s in ("strip_punctuation", "lower_and_strip_punctuation"):
                v = _PUNCTUATION.sub("", v)
            out.reshape(-1)[i] = v
        return out

    def _token_rows(self, inputs):
        """(rows: a list of token lists, one per string / row, whether the input was one string)."""
        who = f"TextVectorization '{self.name}'"
        if isinstance(inputs, Tensor):
            raise TypeError(f"{who}: expected strings (a numpy array or list of str / bytes), received a lamina "
                            f"Tensor of dtype {inputs.dtype}; tensors hold numbers, strings stay numpy arrays")
        if not _is_string_data(inputs) and not (isinstance(inputs, np.ndarray) and inputs.size == 0):
            raise TypeError(f"{who}: expected strings (a numpy array or list of str / bytes), received "
                            f"{_describe(inputs)}")
        a = _as_str_array(inputs, self._encoding, who)
        single = a.ndim == 0
        if single:
            a = a.reshape(1)
        if a.ndim > 2 or (self._split is not None and a.ndim == 2 and a.shape[-1] != 1):
            raise ValueError(f"{who}: expected strings of shape (batch,) or (batch, 1), received shape {a.shape}"
                             + ("" if self._split is None else "; with a `split`, each row must hold one string"))
        a = self._standardized(a)
        if self._split is None:
            rows = [[v] for v in a] if a.ndim == 1 else [list(r) for r in a]
        else:
            texts = a.reshape(-1)
            if self._split == "whitespace":
                rows = [_split_whitespace(t) for t in texts]
            elif self._split == "character":
                rows = [list(t) for t in texts]
            else:
                rows = list(self._split(texts.astype(str)))
                if len(rows) != len(texts):
                    raise ValueError(f"{who}: the `split` callable returned {len(rows)} token lists for {len(texts)} "
                                     "strings; it must return one list per string")
                rows = [list(_as_str_array(list(r), self._encoding, who)) for r in rows]
        if self._ngrams is not None:
            rows = [_ngrams(r, self._ngrams) for r in rows]
        return rows, single

    def _takes_strings(self):
        return True

    def __call__(self, inputs, *args, **kwargs):
        if _symbolic(inputs):
            _check_symbolic_strings(f"TextVectorization '{self.name}'", inputs, True)
            return super().__call__(inputs, *args, **kwargs)
        rows, single = self._token_rows(inputs)
        self.built = True
        lookup = self._lookup_layer
        lookup._require_vocabulary()
        length = self._output_sequence_length or max([len(r) for r in rows] + [0])
        masked = 0 if self._output_mode == "int" else -1
        ids = np.full((len(rows), length), masked, np.int64)
        flat = np.array([t for r in rows for t in r[:length]], dtype=object)
        if flat.size:
            looked = lookup._lookup_ids(flat, masked)
            pos = 0
            for i, r in enumerate(rows):
                n = min(len(r), length)
                ids[i, :n] = looked[pos:pos + n]
                pos += n
        with device_scope(self._device) if self._device is not None else contextlib.nullcontext():
            out = lookup._encode(ids)
            return ops.squeeze(out, 0) if single else out

    # -- vocabulary --
    def adapt(self, data, batch_size=None, steps=None):
        """Learns the vocabulary from `data`: an array or list of strings (read `batch_size` strings
        at a time, all of them by default), or an iterable of batches (at most `steps`)."""
        lookup = self._lookup_layer
        lookup._check_adaptable()
        batch_size = _positive_int("TextVectorization.adapt", "batch_size", batch_size)
        lookup._reset_counts()
        if isinstance(data, (list, tuple, np.ndarray, str, bytes)):
            a = np.asarray(data, dtype=object)
            a = a.reshape(1) if a.ndim == 0 else a
            step = batch_size or max(1, len(a))
            batches = [a[i:i + step] for i in range(0, len(a), step)]
            steps = None
        elif isinstance(data, Tensor) or not hasattr(data, "__iter__"):
            raise TypeError(f"TextVectorization '{self.name}'.adapt: expected strings (an array or list) or an "
                            f"iterable of batches of strings, received {type(data).__name__}")
        else:
            batches = data
        for i, batch in enumerate(batches):
            if steps is not None and i >= steps:
                break
            rows, _ = self._token_rows(batch)
            lookup._update_counts(rows)
        lookup._finalize()

    def get_vocabulary(self, include_special_tokens=True):
        return self._lookup_layer.get_vocabulary(include_special_tokens)

    def vocabulary_size(self):
        return self._lookup_layer.vocabulary_size()

    def load_assets(self, dir_path):
        """Keras's '.keras' assets: the vocabulary of an adapted layer (see StringLookup.load_assets)."""
        self._lookup_layer.load_assets(dir_path)

    def set_vocabulary(self, vocabulary, idf_weights=None):
        self._lookup_layer.set_vocabulary(vocabulary, idf_weights=idf_weights)

    def compute_output_shape(self, input_shape):
        shape = tuple(input_shape)
        if len(shape) not in (1, 2) or (self._split is not None and len(shape) == 2 and shape[1] not in (1, None)):
            raise ValueError(f"TextVectorization '{self.name}': expected strings of shape (batch,) or (batch, 1), "
                             f"received shape {shape}" + ("" if self._split is None else
                                                          "; with a `split`, each row must hold one string")
                             + ". Declare the input as lamina.Input(shape=(), dtype='string') or shape=(1,)")
        if self._output_mode == "int":
            return (input_shape[0], self._output_sequence_length)
        return (input_shape[0], self._lookup_layer._depth())

    def compute_output_dtype(self, input_dtypes):
        return dtypes.INT64 if self._output_mode == "int" else dtypes.FLOAT32

    def save_own_variables(self, store):
        self._lookup_layer.save_own_variables(store)

    def load_own_variables(self, store):
        self._lookup_layer.load_own_variables(store)

    def get_build_config(self):
        return {}

    def build_from_config(self, config):
        self.built = True

    def get_config(self):
        lookup = self._lookup_layer
        config = lookup.get_config()
        return {**super().get_config(), "max_tokens": lookup.max_tokens, "standardize": self._standardize,
                "split": self._split, "ngrams": self._ngrams_arg, "output_mode": self._output_mode,
                "output_sequence_length": self._output_sequence_length, "pad_to_max_tokens": lookup.pad_to_max_tokens,
                "sparse": False, "ragged": False, "vocabulary": config["vocabulary"],
                "idf_weights": config["idf_weights"], "encoding": self._encoding,
                "vocabulary_size": config["vocabulary_size"]}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        from ..saving import deserialize_keras_object
        for key in ("standardize", "split"):
            if config.get(key) is not None and not isinstance(config[key], str) and not callable(config[key]):
                config[key] = deserialize_keras_object(config[key])
        if isinstance(config.get("ngrams"), list):
            config["ngrams"] = tuple(config["ngrams"])
        return cls(**config)
