"""The fuzz suite's seeded generator and checks (usage: see test_fuzz_ops.py's docstring).

An *example* is one call of an op (or a layer) on generated arguments. Its random generator is
keyed by (LAMINA_FUZZ_SEED, the op's name, the example's index), so any example replays alone.

`G` hands out the arguments: shapes, arrays (float32 and the dtypes lamina converts: float64,
float16, int8 ... uint32; NaN, +-inf, -0, subnormals, huge values; empty and size-1 dimensions;
tensors, numpy arrays, lists, strided views), axes, sizes and flags. About a third of the
examples are *mutants*: one argument is replaced by something invalid (an axis out of range or
not an integer, a complex or object array, None, a negative or fractional size...). A valid
example must match the numpy reference; a mutant must raise a clean exception naming the op.

`check_example` applies the rules:

- valid input: no exception, outputs of the reference's shape and kind (bool / int / float),
  values equal (ints, bools) or close (floats: NaN where the reference has NaN, the same
  infinities, atol / rtol elsewhere);
- mutant: an exception that is not a Python-internal one (KeyError, AttributeError, IndexError
  "tuple index out of range", pybind11's "incompatible function arguments" ...) and whose
  message names the op;
- never a crash or a hang: the cases that could take the interpreter down (huge sizes, exotic
  dtypes) run in subprocesses (`run_isolated`) with a timeout.
"""
import json
import os
import re
import subprocess
import sys
import zlib

import numpy as np

SEED = int(os.environ.get("LAMINA_FUZZ_SEED", "20261130"))
EXAMPLES = int(os.environ.get("LAMINA_FUZZ_EXAMPLES", "6"))
ONLY = os.environ.get("LAMINA_FUZZ_EXAMPLE")   # an example index: replay that example alone
MUTANT_SHARE = 0.35


def example_rng(name, i):
    return np.random.default_rng([SEED, zlib.crc32(name.encode()), i])


def example_indices(n=None):
    if ONLY is not None:
        return [int(ONLY)]
    return range(EXAMPLES if n is None else n)


def replay_hint(test_file, name, i):
    return (f"replay: LAMINA_FUZZ_SEED={SEED} LAMINA_FUZZ_EXAMPLE={i} python -m pytest -q "
            f"tests/fuzz/{test_file} -k '{name}'")


# ---- lamina's dtype policy, for the references ---------------------------------------------------

def policy_dtype(dt):
    """The dtype lamina holds numpy data of dtype `dt` in (convert_to_tensor without a dtype):
    float64 / float16 -> float32, int8 / int16 / uint8 / uint16 -> int32, uint32 / uint64 -> int64."""
    dt = np.dtype(dt)
    if dt.kind == "f":
        return np.dtype(np.float32)
    if dt.kind == "b":
        return np.dtype(np.bool_)
    if dt.kind == "i" and dt.itemsize <= 4 or dt.kind == "u" and dt.itemsize <= 2:
        return np.dtype(np.int32)
    if dt.kind in "iu":
        return np.dtype(np.int64)
    raise TypeError(dt)


def as_policy(a):
    """numpy data as lamina holds it."""
    a = np.asarray(a)
    return a.astype(policy_dtype(a.dtype))


def kind(dt):
    k = np.dtype(dt).kind
    return "i" if k == "u" else k


# ---- values ---------------------------------------------------------------------------------------

NONFINITE = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0], np.float32)
INFINITE = np.array([np.inf, -np.inf, 0.0, -0.0], np.float32)
EXTREME = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40, -1e-42, 3e38, -3.3e38, 1e-7, 65504.0, 0.5, -0.5,
                    2.5, -1.5, 1.0, -1.0], np.float32)
POLICY_FLOATS = ("float64", "float16")
POLICY_INTS = ("int8", "int16", "uint8", "uint16")   # held in int32 (dtype policy)
LIMITS = {"float32": 1e30, "float16": 6e4}


class Mutation(Exception):
    """Raised inside a generator to say: this argument was replaced by an invalid value."""


class G:
    """The arguments of one example. `mutant`: replace one argument by an invalid value (the
    first generator call that draws it, with probability 1/2 per call, so each argument can be
    the one). `log` describes every argument; `ref` holds arrays as lamina sees them."""

    def __init__(self, rng, mutant=False):
        self.rng = rng
        self.mutant = mutant
        self.mutated = None
        self.log = []
        self.ref = {}

    # -- plumbing --
    def _mutate_here(self):
        return self.mutant and self.mutated is None and self.rng.random() < 0.5

    def _note(self, name, text, mutated=False):
        if mutated:
            self.mutated = f"{name}={text}"
            text += "  <- invalid"
        self.log.append(f"{name}={text}")

    def choice(self, seq):
        return seq[int(self.rng.integers(len(seq)))]

    def coin(self, p=0.5):
        return bool(self.rng.random() < p)

    def describe(self):
        return "; ".join(self.log)

    # -- shapes --
    def dims(self, rank, max_dim=5, zero=0.08, one=0.2):
        out = []
        for _ in range(rank):
            r = self.rng.random()
            out.append(0 if r < zero else 1 if r < zero + one else int(self.rng.integers(2, max_dim + 1)))
        return tuple(out)

    def shape(self, name=None, min_rank=0, max_rank=4, max_dim=5, zero=0.08, mutable=True):
        s = self.dims(int(self.rng.integers(min_rank, max_rank + 1)), max_dim, zero)
        if name is None:
            return s
        if mutable and self._mutate_here():
            bad = self.choice([s + (-1,), (2.0,) + s, "3", s + (True,), (None,), (1.5, 2)])
            self._note(name, repr(bad), True)
            return bad
        self._note(name, repr(s))
        return s

    # -- data --
    def values(self, shape, dtype, special="all", low=-9, high=10, scale=None):
        """numpy data of `shape` and `dtype`; floats mix normal values of a random scale with
        special ones ("all": NaN, +-inf, -0, subnormal, huge; "nonfinite": NaN, +-inf, +-0;
        "inf": +-inf, +-0; "none"). `scale` fixes the scale of the normal values."""
        rng = self.rng
        dt = np.dtype(dtype)
        if dt.kind == "b":
            return np.asarray(rng.random(shape) < 0.5)
        if dt.kind in "iu":
            lo = max(low, 0) if dt.kind == "u" else low
            return np.asarray(rng.integers(lo, high, shape)).astype(dt)
        scale = scale or self.choice([1.0, 3.0, 100.0])
        x = rng.standard_normal(shape) * scale
        if special != "none" and x.size and rng.random() < 0.4:
            pool = {"nonfinite": NONFINITE, "inf": INFINITE}.get(special, EXTREME)
            mask = rng.random(shape) < 0.25
            x = np.where(mask, rng.choice(pool, size=shape), x)
        if dt.name in LIMITS:
            x = np.where(np.isfinite(x), np.clip(x, -LIMITS[dt.name], LIMITS[dt.name]), x)
        with np.errstate(over="ignore"):
            return np.asarray(x).astype(dt)

    def array(self, name, shape, dtypes=("float32",), special="all", forms="any", low=-9, high=10,
              policy=True, mutable=True, scale=None):
        """An input array for the op: a Tensor, a numpy array, a list or a strided view of `shape`
        and one of `dtypes` (plus, when `policy`, dtypes lamina converts: float64 for a float
        dtype, int8 ... for int32). self.ref[name]: the data as lamina holds it."""
        import lamina
        if mutable and self._mutate_here():
            kind_ = self.choice(["none", "complex", "object", "str", "ragged", "datetime"])
            bad = {"none": None,
                   "complex": np.ones(shape, np.complex64),
                   "object": np.array([object(), object()], dtype=object),
                   "str": np.full(shape or (1,), "a"),
                   "ragged": [[1.0, 2.0], [3.0]],
                   "datetime": np.zeros(shape or (1,), "datetime64[s]")}[kind_]
            self._note(name, f"<{kind_} value>", True)
            return bad
        dts = list(dtypes)
        if policy and self.coin(0.2):
            if "float32" in dts:
                dts = list(POLICY_FLOATS)
            elif "int32" in dts:
                dts = list(POLICY_INTS)
        dt = np.dtype(self.choice(dts))
        a = self.values(shape, dt, special, low, high, scale)
        self.ref[name] = as_policy(a)
        form = "tensor" if forms == "tensor" else self.choice(["tensor", "tensor", "numpy", "list", "view"])
        if forms == "array_like" and form == "tensor":
            form = "numpy"
        if forms == "no_list" and form == "list":   # a layer takes a list as a structure of inputs
            form = "numpy"
        if form == "list" and (a.ndim == 0 or a.size == 0 or dt.kind == "f" and dt != np.float64):
            form = "numpy"   # a list of python floats is float64 data: only float64 lists stay exact
        if form == "list" and dt.kind == "u" or form == "list" and dt.kind == "i" and dt != np.int64:
            form = "numpy"
        stats = _stats(a)
        if form == "tensor":
            self._note(name, f"Tensor {self.ref[name].dtype}{tuple(shape)}{stats}")
            return lamina.convert_to_tensor(a)
        if form == "list":
            self._note(name, f"list {dt}{tuple(shape)}{stats}")
            return a.tolist()
        if form == "view" and a.ndim >= 1 and a.size:
            big = np.zeros(a.shape[:-1] + (2 * a.shape[-1],), a.dtype)
            big[..., 1::2] = a[..., ::-1]
            v = big[..., ::-2]   # a negative-stride, non-contiguous view holding a
            self._note(name, f"strided view {dt}{tuple(shape)}{stats}")
            return v
        self._note(name, f"ndarray {dt}{tuple(shape)}{stats}")
        return a

    def tensor(self, name, shape, dtype="float32", special="all", low=-9, high=10, mutable=True):
        """A Tensor of exactly `dtype` (for ops that want tensors of one dtype)."""
        import lamina
        if mutable and self._mutate_here():
            self._note(name, "<None>", True)
            return None
        a = self.values(shape, dtype, special, low, high)
        self.ref[name] = a
        self._note(name, f"Tensor {a.dtype}{tuple(shape)}{_stats(a)}")
        return lamina.convert_to_tensor(a)

    # -- scalars, axes, sizes --
    def axis(self, name, ndim, multi=False, none=True, mutable=True):
        """An axis of a tensor with `ndim` dimensions: None (when allowed), an int in [-ndim, ndim)
        or, when `multi`, a tuple of distinct ones."""
        rng = self.rng
        if mutable and self._mutate_here():
            lim = max(ndim, 1)   # numpy's reductions take axis 0 / -1 of a 0-d array
            bad = self.choice([lim + int(rng.integers(0, 3)), -lim - 1 - int(rng.integers(0, 3)), 1.0, "0", True,
                               np.float64(0.0)] + ([(0, 0), (0, -ndim)] if multi and ndim else []))
            self._note(name, repr(bad), True)
            return bad
        if ndim == 0 or none and self.coin(0.25):
            a = None
        elif multi and self.coin(0.4):
            k = int(rng.integers(0, ndim + 1))
            a = tuple(int(v) - (ndim if self.coin() else 0) for v in rng.permutation(ndim)[:k])
        else:
            a = int(rng.integers(-ndim, ndim))
        self._note(name, repr(a))
        return a

    def int(self, name, low, high, negative_ok=False, mutable=True):
        """An integer in [low, high); mutants: a float, a string, a bool or (unless negative
        values are valid) a negative number."""
        if mutable and self._mutate_here():
            bad = self.choice([1.5, "2", True, None] + ([] if negative_ok else [-1 - int(self.rng.integers(0, 3))]))
            self._note(name, repr(bad), True)
            return bad
        v = int(self.rng.integers(low, high))
        self._note(name, repr(v))
        return v

    def flag(self, name):
        v = self.coin()
        self._note(name, repr(v))
        return v

    def pick(self, name, options, bad=()):
        """One of `options`; a mutant takes one of `bad`."""
        if bad and self._mutate_here():
            v = self.choice(list(bad))
            self._note(name, repr(v), True)
            return v
        v = self.choice(list(options))
        self._note(name, repr(v))
        return v

    def number(self, name, low=-5.0, high=5.0, mutable=True, special=False, bad=("a", None, [1.0, 2.0], 1j)):
        if mutable and self._mutate_here():
            v = self.choice(list(bad))
            self._note(name, repr(v), True)
            return v
        if special and self.coin(0.15):
            v = float(self.choice([np.nan, np.inf, -np.inf]))
        else:
            v = round(float(self.rng.uniform(low, high)), 3)
        self._note(name, repr(v))
        return v


def _stats(a):
    if a.dtype.kind != "f" or not a.size:
        return ""
    tags = [t for t, m in (("nan", np.isnan(a)), ("inf", np.isinf(a))) if m.any()]
    return f"[{','.join(tags)}]" if tags else ""


def broadcastable(g, shape):
    """A shape that broadcasts with `shape` (numpy rules)."""
    s = list(shape)
    for i in range(len(s)):
        if g.coin(0.3):
            s[i] = 1
    drop = int(g.rng.integers(0, len(s) + 1)) if s and g.coin(0.3) else 0
    s = s[drop:]
    if g.coin(0.15) and len(s) < 5:
        s = [int(g.rng.integers(1, 3))] + s
    return tuple(s)


def not_broadcastable(g, shape):
    """A shape that does not broadcast with `shape` (needs a dimension > 1)."""
    s = list(shape)
    idx = [i for i, d in enumerate(s) if d > 1 or d == 0]
    if not idx:
        return None
    i = g.choice(idx)
    s[i] = s[i] + 1 if s[i] != 0 else 2
    return tuple(s)


# ---- outcomes --------------------------------------------------------------------------------------

# Exceptions and messages that come from Python or pybind11 internals rather than from a check
# that says what was wrong.
INTERNAL_TYPES = (KeyError, AttributeError, ZeroDivisionError, AssertionError, NameError, RecursionError,
                  SystemError, StopIteration)
INTERNAL_PATTERNS = [
    r"tuple index out of range", r"list index out of range", r"too many values to unpack",
    r"not enough values to unpack", r"incompatible function arguments", r"object is not iterable",
    r"object is not subscriptable", r"unsupported operand type", r"has no attribute",
    r"positional argument", r"unexpected keyword", r"invalid literal for int", r"int\(\) argument",
    r"float\(\) argument", r"must be real number", r"could not convert string to float",
    r"setting an array element with a sequence", r"inhomogeneous", r"cannot be interpreted as an integer",
    r"only integer scalar arrays", r"Unable to allocate", r"std::bad_alloc", r"bad_alloc",
    r"^\(\d+, '", r"Numerical result out of range", r"Python int too large to convert",
    r"truth value of an array", r"not supported between instances",
]
_INTERNAL_RE = re.compile("|".join(INTERNAL_PATTERNS))


def error_problem(exc, names):
    """Why `exc` is not a clean error for an op called one of `names` (None when it is)."""
    msg = str(exc)
    if isinstance(exc, INTERNAL_TYPES):
        return f"Python-internal {type(exc).__name__}: {msg[:300]}"
    if _INTERNAL_RE.search(msg):
        return f"Python/pybind11-internal message: {type(exc).__name__}: {msg[:300]}"
    if not any(re.search(rf"(^|[^\w]){re.escape(n)}(_\d+)?([^\w]|$)", msg) for n in names):
        return f"the message does not name the op ({' / '.join(names)}): {type(exc).__name__}: {msg[:300]}"
    return None


def to_numpy(out):
    """An op's output (a tensor, a tuple of them, a number) as numpy data."""
    import lamina
    if isinstance(out, lamina.Tensor):
        return out.numpy()
    if isinstance(out, (list, tuple)):
        return [to_numpy(o) for o in out]
    return out


def compare(got, want, atol, rtol, path="output", kinds=True):
    """None when `got` matches `want`, else what differs."""
    if isinstance(want, (list, tuple)):
        if not isinstance(got, (list, tuple)) or len(got) != len(want):
            return f"{path}: expected {len(want)} outputs, received {type(got).__name__} " \
                   f"{len(got) if isinstance(got, (list, tuple)) else ''}"
        for k, (a, b) in enumerate(zip(got, want)):
            p = compare(a, b, atol, rtol, f"{path}[{k}]", kinds)
            if p:
                return p
        return None
    w = np.asarray(want)
    g = np.asarray(got)
    if g.shape != w.shape:
        return f"{path}: shape {g.shape}, numpy gives {w.shape}"
    if kinds and kind(g.dtype) != kind(w.dtype):
        return f"{path}: dtype {g.dtype}, numpy (under lamina's dtype policy) gives {w.dtype}"
    if w.dtype.kind in "biu" and g.dtype.kind in "biu":
        if not np.array_equal(g, w):
            bad = np.argwhere(g != w)[:3].tolist()
            return f"{path}: values differ at {bad}: got {g[tuple(np.array(bad).T)]}, numpy {w[tuple(np.array(bad).T)]}"
        return None
    g64, w64 = g.astype(np.float64), w.astype(np.float64)
    gn, wn = np.isnan(g64), np.isnan(w64)
    if (gn != wn).any():
        i = tuple(np.argwhere(gn != wn)[0])
        return f"{path}: NaN mismatch at {list(i)}: got {g64[i]}, numpy {w64[i]}"
    fin = np.isfinite(w64)
    if (np.isinf(w64) & (g64 != w64)).any():
        i = tuple(np.argwhere(np.isinf(w64) & (g64 != w64))[0])
        return f"{path}: at {list(i)} got {g64[i]}, numpy {w64[i]}"
    err = np.abs(g64 - w64)
    lim = atol + rtol * np.abs(w64)
    badm = fin & ~(err <= lim)
    if badm.any():
        i = tuple(np.argwhere(badm)[0])
        return (f"{path}: not close at {list(i)}: got {g64[i]!r}, numpy {w64[i]!r} (|diff| {err[i]:.3g} > "
                f"atol {atol:.3g} + rtol {rtol:.3g} * |numpy|; {int(badm.sum())} of {w64.size} elements)")
    return None


class Case:
    """One example: `call()` runs lamina; `ref()` computes numpy's answer under lamina's dtype
    policy (`alt()`, when given, another acceptable answer, e.g. IEEE's NaN for inf * 0 where
    `ref` gives the limit); with no reference, `check(output)` returns what is wrong, or None."""

    def __init__(self, call, ref=None, atol=1e-5, rtol=1e-5, check=None, kinds=True, alt=None, lenient=False):
        self.call, self.ref, self.alt, self.check = call, ref, alt, check
        self.atol, self.rtol, self.kinds = atol, rtol, kinds
        self.lenient = lenient   # validity unknown (a smoke test): any clean error or any sane output passes


def _reference(fn):
    """(value, None) or (None, exception) of a reference function."""
    try:
        with np.errstate(all="ignore"):
            return fn(), None
    except Exception as e:   # noqa: BLE001
        return None, e


def check_example(names, case, g):
    """None when the example behaves, else a description of what went wrong."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = to_numpy(case.call())
            exc = None
        except Exception as e:   # noqa: BLE001 - the point is to judge any exception
            out, exc = None, e
        if exc is not None:
            problem = error_problem(exc, names)
            if problem:
                return problem
            if g.mutated is not None or case.lenient:
                return None
            if case.ref is not None and _reference(case.ref)[1] is not None:
                return None   # numpy refuses it too (e.g. the maximum of an empty axis)
            return f"raised on a valid input: {type(exc).__name__}: {str(exc)[:300]}"
        if g.mutated is not None and not case.lenient:
            return f"accepted the invalid argument {g.mutated} and returned {_summary(out)}"
        if case.check is not None:
            p = case.check(out)
            if p:
                return p
        if case.ref is not None:
            want, err = _reference(case.ref)
            if err is not None:
                return (f"numpy raises {type(err).__name__}: {str(err)[:200]}, but lamina returned "
                        f"{_summary(out)}")
            p = compare(out, want, case.atol, case.rtol, kinds=case.kinds)
            if p and case.alt is not None:
                alt, err = _reference(case.alt)
                if err is None and compare(out, alt, case.atol, case.rtol, kinds=case.kinds) is None:
                    return None
            return p
    return None


def _summary(out):
    if isinstance(out, list):
        return "[" + ", ".join(_summary(o) for o in out) + "]"
    if isinstance(out, np.ndarray):
        return f"array of shape {out.shape} and dtype {out.dtype}"
    return repr(out)[:80]


def run_examples(test_file, name, names, spec, n=None):
    """Runs the examples of one op; returns failure reports (empty when all pass)."""
    failures = []
    for i in example_indices(n):
        rng = example_rng(name, i)
        g = G(rng, mutant=bool(rng.random() < MUTANT_SHARE))
        try:
            case = spec(g)
        except Exception as e:   # noqa: BLE001
            failures.append(f"[{name} #{i}] the generator failed: {type(e).__name__}: {e}")
            continue
        problem = check_example(names, case, g)
        if problem:
            failures.append(f"[{name} example {i}] {problem}\n    inputs: {g.describe()}\n    "
                            f"{replay_hint(test_file, name, i)}")
    return failures


def report(failures, limit=6):
    if not failures:
        return
    text = "\n\n".join(failures[:limit])
    more = f"\n\n... and {len(failures) - limit} more" if len(failures) > limit else ""
    print(text + more)
    raise AssertionError(f"{len(failures)} fuzz example(s) failed (seed {SEED}):\n\n{text}{more}")


# ---- cases that could take the interpreter down: in subprocesses -----------------------------------

_CHILD = r"""
import json, os, resource, sys, traceback
limit = int(os.environ.get("LAMINA_FUZZ_MEMORY_LIMIT", "0"))
if limit:   # writable private memory, not address space: a GPU runtime may reserve terabytes of that
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))
import numpy as np
import lamina
from lamina import layers, ops
cases = json.loads(sys.stdin.read())
for i, src in cases:
    print(json.dumps({"start": i}), flush=True)
    try:
        out = eval(src)
        if isinstance(out, (list, tuple)):
            shapes = [getattr(o, "shape", None) for o in out]
        else:
            shapes = getattr(out, "shape", None)
        res = {"i": i, "ok": True, "shape": repr(shapes), "dtype": str(getattr(out, "dtype", ""))}
        if isinstance(out, lamina.Tensor) and max(out.shape, default=0) <= 16 and out.size <= 16:
            res["values"] = repr(out.numpy().tolist())
    except BaseException as e:
        res = {"i": i, "ok": False, "type": type(e).__name__, "msg": str(e)[:2000]}
    print(json.dumps(res), flush=True)
"""


def run_isolated(sources, timeout=60, memory_limit=8 << 30):
    """Evaluates each Python expression of `sources` (lamina, ops, layers and np imported) in a
    child process, many per process. Returns one dict per source: {"ok": True, "shape", "dtype"},
    {"ok": False, "type", "msg"} for an exception, or {"crash": "..."} when that case killed the
    process (signal, abort) or hung past `timeout` seconds; the remaining cases then run in a
    new process. The child's data memory is capped at `memory_limit` bytes, so that a runaway
    allocation fails instead of exhausting the machine."""
    results = {}
    todo = list(enumerate(sources))
    env = dict(os.environ, LAMINA_FUZZ_MEMORY_LIMIT=str(memory_limit), LAMINA_NUM_THREADS="1",
               OMP_NUM_THREADS="1", PYTHONFAULTHANDLER="1")
    while todo:
        proc = subprocess.Popen([sys.executable, "-c", _CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)
        try:
            out, err = proc.communicate(json.dumps(todo), timeout=timeout)
            hung = False
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            hung = True
        started = None
        for line in out.splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if "start" in rec:
                started = rec["start"]
            else:
                results[rec["i"]] = rec
                started = None
        if started is None and not hung and proc.returncode == 0:
            break
        if started is None:   # died before or between cases
            first = next((i for i, _ in todo if i not in results), None)
            if first is None:
                break
            started = first
        why = (f"hung for more than {timeout} s" if hung else
               f"killed the process (return code {proc.returncode}); stderr: {err.strip()[-800:]}")
        results[started] = {"i": started, "crash": why}
        todo = [(i, s) for i, s in todo if i not in results]
    return [results.get(i, {"crash": "no result"}) for i in range(len(sources))]
