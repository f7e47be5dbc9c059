"""The CUDA emulator's NCCL (csrc/cuda/emu/nccl_emu.cpp): the communicator and collective entry
points `lamina.backend._cuda_emu` exports with libnccl's ABI, called here directly through ctypes
(loading the module's file does not import it). Device memory in the emulator is host memory, so
numpy arrays' pointers are passed as device pointers.

Ranks run as separate processes (subprocess, one rank a process, as under mpiexec) and as threads
of this process (ctypes releases the GIL during a call). Checked against numpy references written
here: all-reduce of every supported datatype and op, reduced in rank order (float sums whose value
depends on the order), identical on every rank, in place and out of place, across chunk boundaries
and with several MB; broadcast; groups; count 0; the error statuses (arguments, bad id, duplicate
rank, nranks mismatch, mismatched calls, a peer that aborts, leaves or dies, timeouts); the
nccl_calls counter; LAMINA_CUDA_EMULATOR_SKIP_KERNELS; and that the shared-memory segment is there
while ranks join and gone once they all have (or, when the join fails, once they have all left)."""
import ctypes
import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

# ncclResult_t, ncclRedOp_t, ncclDataType_t (nccl.h, NCCL 2.30)
SUCCESS, INVALID_ARGUMENT, INVALID_USAGE, REMOTE_ERROR, TIMEOUT = 0, 4, 5, 6, 8
SUM, PROD, MAX, MIN, AVG = range(5)
INT8, UINT8, INT32, UINT32, INT64, UINT64, FLOAT16, FLOAT32, FLOAT64, BFLOAT16, FP8E4M3, FP8E5M2 = range(12)
NP = {INT8: np.int8, UINT8: np.uint8, INT32: np.int32, UINT32: np.uint32, INT64: np.int64, UINT64: np.uint64,
      FLOAT16: np.float16, FLOAT32: np.float32, FLOAT64: np.float64, BFLOAT16: np.uint16}
INTS = (INT8, UINT8, INT32, UINT32, INT64, UINT64)
FLOATS = (FLOAT32, FLOAT64, BFLOAT16)


class UniqueId(ctypes.Structure):
    """ncclUniqueId: 128 chars, passed by value to ncclCommInitRank."""
    _fields_ = [("internal", ctypes.c_ubyte * 128)]


def _load(path):
    lib = ctypes.CDLL(path)
    P, I, Z = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
    PI = ctypes.POINTER(ctypes.c_int)
    sigs = {
        "ncclGetVersion": (I, [PI]),
        "ncclGetErrorString": (ctypes.c_char_p, [I]),
        "ncclGetUniqueId": (I, [ctypes.POINTER(UniqueId)]),
        "ncclCommInitRank": (I, [ctypes.POINTER(ctypes.c_void_p), I, UniqueId, I]),
        "ncclCommDestroy": (I, [P]), "ncclCommAbort": (I, [P]),
        "ncclCommCount": (I, [P, PI]), "ncclCommUserRank": (I, [P, PI]), "ncclCommGetAsyncError": (I, [P, PI]),
        "ncclAllReduce": (I, [P, P, Z, I, I, P, P]),
        "ncclBroadcast": (I, [P, P, Z, I, I, P, P]),
        "ncclGroupStart": (I, []), "ncclGroupEnd": (I, []),
        "lamina_emu_stats": (None, [ctypes.POINTER(ctypes.c_longlong), I]),
    }
    for name, (res, args) in sigs.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


_LIB = None


def _lib_path():
    spec = importlib.util.find_spec("lamina.backend._cuda_emu")
    if spec is None or spec.origin is None:
        pytest.skip("the CUDA emulator is not built (-DLAMINA_CUDA_EMULATOR=OFF, or not Linux)")
    return spec.origin


def _lib():
    global _LIB
    if _LIB is None:
        path = _lib_path()
        if not hasattr(ctypes.CDLL(path), "ncclAllReduce"):
            pytest.skip("this _cuda_emu build has no NCCL (csrc/cuda/emu/nccl_emu.cpp): rebuild")
        _LIB = _load(path)
    return _LIB


# ---- small wrappers --------------------------------------------------------------------------------
_IDS = []  # the ids this process made: their segments are removed after each test, even one that failed


@pytest.fixture(autouse=True)
def _no_leftover_segments():
    yield
    while _IDS:
        try:
            os.unlink(_segment(_IDS.pop()))
        except FileNotFoundError:
            pass


def _new_id(lib):
    uid = UniqueId()
    assert lib.ncclGetUniqueId(ctypes.byref(uid)) == SUCCESS
    _IDS.append(bytes(uid.internal))
    return _IDS[-1]


def _as_id(raw):
    uid = UniqueId()
    ctypes.memmove(ctypes.addressof(uid), raw, 128)
    return uid


def _segment(raw):
    """The id's POSIX shared-memory segment, as a file (Linux: /dev/shm)."""
    return "/dev/shm" + raw[24:72].split(b"\0")[0].decode()


def _init(lib, nranks, raw, rank):
    comm = ctypes.c_void_p()
    return lib.ncclCommInitRank(ctypes.byref(comm), nranks, _as_id(raw), rank), comm


def _ptr(a):
    return None if a is None else a.ctypes.data


def _allreduce(lib, send, recv, dtype, op, comm, count=None):
    return lib.ncclAllReduce(_ptr(send), _ptr(recv), (recv if send is None else send).size if count is None else count,
                             dtype, op, comm, None)


def _broadcast(lib, send, recv, dtype, root, comm, count=None):
    return lib.ncclBroadcast(_ptr(send), _ptr(recv), recv.size if count is None else count, dtype, root, comm, None)


def _async_error(lib, comm):
    e = ctypes.c_int(-1)
    assert lib.ncclCommGetAsyncError(comm, ctypes.byref(e)) == SUCCESS
    return e.value


def _nccl_calls(lib):
    out = (ctypes.c_longlong * 9)()
    lib.lamina_emu_stats(out, 0)
    return out[8]


def _run_threads(n, fn, timeout=60):
    """fn(rank) on n threads; their results in rank order (an exception in one is raised here)."""
    results, errors = [None] * n, []

    def body(r):
        try:
            results[r] = fn(r)
        except BaseException as e:  # noqa: BLE001 -- re-raised below
            errors.append(e)

    threads = [threading.Thread(target=body, args=(r,), daemon=True) for r in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
    assert not any(t.is_alive() for t in threads), "a rank's thread hangs"
    if errors:
        raise errors[0]
    return results


# ---- data and references ---------------------------------------------------------------------------
def _to_bf16(f):
    """float32 -> bfloat16 bits, round to nearest even, NaN kept (quiet)."""
    b = np.asarray(f, np.float32).view(np.uint32).astype(np.uint64)
    r = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)
    nan = (b & 0x7FFFFFFF) > 0x7F800000
    r[nan] = ((b[nan] | 0x400000) >> 16).astype(np.uint16)
    return r


def _from_bf16(h):
    return (np.asarray(h, np.uint16).astype(np.uint32) << 16).view(np.float32)


def _data(dtype, op, rank, count, salt=0):
    """Rank `rank`'s input: integers over the type's whole range (sums and products wrap); floats
    over seven decades (float sums depend on the order); NaN at a rank's own place for max / min."""
    rng = np.random.default_rng([salt, dtype, op, rank, count])
    if dtype in INTS:
        info = np.iinfo(NP[dtype])
        return rng.integers(info.min, info.max, size=count, dtype=NP[dtype], endpoint=True)
    x = rng.standard_normal(count) * 10.0 ** rng.integers(-3, 4, count)
    if op in (MAX, MIN) and count > 40:
        x[rank * 5 + 3] = np.nan
    if dtype == FLOAT64:
        return x
    if dtype == FLOAT16:
        return x.astype(np.float16)
    f = x.astype(np.float32)
    return _to_bf16(f) if dtype == BFLOAT16 else f


def _reference(dtype, op, inputs):
    """The reduction of inputs in the order given, in the type's arithmetic (bfloat16: float32,
    rounded once)."""
    xs = [_from_bf16(x) if dtype == BFLOAT16 else x for x in inputs]
    acc = xs[0].copy()
    for x in xs[1:]:
        if op in (SUM, AVG):
            acc = acc + x
        elif op == PROD:
            acc = acc * x
        elif op == MAX:
            acc = np.maximum(acc, x)
        else:
            acc = np.minimum(acc, x)
    if op == AVG:
        acc = acc / acc.dtype.type(len(xs))
    return _to_bf16(acc) if dtype == BFLOAT16 else acc


def _same(dtype, got, want):
    if dtype == BFLOAT16:
        return np.array_equal(_from_bf16(got), _from_bf16(want), equal_nan=True)
    if dtype in FLOATS:
        return np.array_equal(got, want, equal_nan=True)
    return got.dtype == want.dtype and np.array_equal(got, want)


# ---- what every rank runs (threads and processes) --------------------------------------------------
def _battery(lib, comm, rank, nranks, big):
    """One rank's share of the checks. Returns ({case: [ok, digest of the result, note]}, the number
    of collectives that succeeded)."""
    out, calls = {}, 0

    def record(name, ok, result=None, note=""):
        digest = "" if result is None else hashlib.sha256(np.ascontiguousarray(result).tobytes()).hexdigest()
        out[name] = [bool(ok), digest, "" if ok else note]

    def expect(name, status, want_status, got=None, want=None, dtype=None):
        nonlocal calls
        calls += status == SUCCESS
        if status != want_status:
            record(name, False, got, "status %d, expected %d" % (status, want_status))
        elif got is not None:
            record(name, _same(dtype, got, want), got, "values differ from the rank-order reference")
        else:
            record(name, True)

    # every datatype and op, in place and out of place, across chunk boundaries where chunks are small
    count = 1003
    for dtype in INTS + FLOATS:
        for op in (SUM, PROD, MAX, MIN, AVG):
            if op == AVG and dtype not in FLOATS:
                continue
            inputs = [_data(dtype, op, r, count) for r in range(nranks)]
            want = _reference(dtype, op, inputs)
            name = "allreduce/%d/%d" % (dtype, op)
            if (dtype + op) % 2:
                buf = inputs[rank].copy()
                expect(name + "/in_place", _allreduce(lib, buf, buf, dtype, op, comm), SUCCESS, buf, want, dtype)
            else:
                send = inputs[rank].copy()
                recv = np.zeros_like(send)
                expect(name, _allreduce(lib, send, recv, dtype, op, comm), SUCCESS, recv, want, dtype)
                record(name + "/send_kept", np.array_equal(send, inputs[rank], equal_nan=dtype in FLOATS[:2]))
            if dtype == FLOAT32 and op == SUM and nranks >= 3:  # the check has teeth: order matters here
                record("order_matters", not np.array_equal(want, _reference(dtype, op, inputs[::-1])))

    if big:  # several MB, through the bounded segment in many chunks
        n = 3 * (1 << 19) + 7
        inputs = [_data(FLOAT32, SUM, r, n, salt=1) for r in range(nranks)]
        recv = np.zeros(n, np.float32)
        expect("big/allreduce", _allreduce(lib, inputs[rank], recv, FLOAT32, SUM, comm), SUCCESS, recv,
               _reference(FLOAT32, SUM, inputs), FLOAT32)
        data = np.random.default_rng(7).integers(0, 256, 3 * (1 << 20) + 5, dtype=np.uint8)
        root = nranks - 1
        recv = data.copy() if rank == root else np.zeros_like(data)
        expect("big/broadcast/in_place", _broadcast(lib, recv, recv, UINT8, root, comm), SUCCESS, recv, data, UINT8)

    # broadcast: root's sendbuff only (other ranks pass none), any datatype (float16 too)
    for root, dtype, count, in_place in ((nranks - 1, FLOAT16, 1001, False), (0, FLOAT64, 777, True),
                                         (1 % nranks, BFLOAT16, 301, False), (0, INT8, 5, False)):
        data = _data(dtype, SUM, 100 + root, count, salt=2)
        recv = np.zeros_like(data)
        if in_place:
            if rank == root:
                recv[:] = data
            st = _broadcast(lib, recv, recv, dtype, root, comm)
        else:
            st = _broadcast(lib, data.copy() if rank == root else None, recv, dtype, root, comm)
        expect("broadcast/%d/%d" % (root, dtype), st, SUCCESS, recv, data, dtype)

    # groups: nested; queued until the outermost ncclGroupEnd, then run in order
    a = [_data(FLOAT32, SUM, r, 500, salt=3) for r in range(nranks)]
    c = [_data(INT32, MAX, r, 70, salt=3) for r in range(nranks)]
    b = _data(FLOAT64, SUM, 0, 40, salt=3)
    a_recv, b_recv, c_buf = np.zeros(500, np.float32), np.zeros(40), c[rank].copy()
    b_send = b.copy() if rank == 0 else None  # alive until the group runs
    statuses = [lib.ncclGroupStart(), lib.ncclGroupStart(), _allreduce(lib, a[rank], a_recv, FLOAT32, SUM, comm),
                _broadcast(lib, b_send, b_recv, FLOAT64, 0, comm), lib.ncclGroupEnd()]
    record("group/queued", not a_recv.any() and not b_recv.any())
    statuses += [_allreduce(lib, c_buf, c_buf, INT32, MAX, comm), lib.ncclGroupEnd()]
    record("group/statuses", statuses == [SUCCESS] * 7, note=str(statuses))
    calls += 3
    record("group/a", _same(FLOAT32, a_recv, _reference(FLOAT32, SUM, a)), a_recv)
    record("group/b", _same(FLOAT64, b_recv, b), b_recv)
    record("group/c", _same(INT32, c_buf, _reference(INT32, MAX, c)), c_buf)
    # a call that fails its checks in a group: ncclGroupEnd returns its error and runs nothing
    d_recv = np.zeros(10, np.float32)
    statuses = [lib.ncclGroupStart(), _allreduce(lib, a[rank][:10], d_recv, FLOAT32, SUM, comm),
                _allreduce(lib, a[rank][:10], d_recv, FLOAT16, SUM, comm), lib.ncclGroupEnd()]
    record("group/bad_call", statuses == [SUCCESS, SUCCESS, INVALID_ARGUMENT, INVALID_ARGUMENT] and not d_recv.any(),
           note=str(statuses))
    record("group/end_without_start", lib.ncclGroupEnd() == INVALID_USAGE)

    # count 0: success, no communication, no pointers needed
    expect("count0/allreduce", lib.ncclAllReduce(None, None, 0, FLOAT32, SUM, comm, None), SUCCESS)
    expect("count0/broadcast", lib.ncclBroadcast(None, None, 0, INT8, 0, comm, None), SUCCESS)

    # calls that differ between ranks: ncclInvalidUsage on every rank, nothing written, comm usable
    send, recv = np.ones(16, np.float32), np.zeros(16, np.float32)
    mismatches = {
        "count": lambda: _allreduce(lib, send, recv, FLOAT32, SUM, comm, count=10 + (rank == 0)),
        "dtype": lambda: _allreduce(lib, send, recv, INT32 if rank == 0 else FLOAT32, SUM, comm, count=10),
        "op": lambda: _allreduce(lib, send, recv, FLOAT32, MAX if rank == 0 else SUM, comm, count=10),
        "kind": lambda: (_broadcast(lib, send, recv, FLOAT32, 0, comm, count=10) if rank == 0 else
                         _allreduce(lib, send, recv, FLOAT32, SUM, comm, count=10)),
        "root": lambda: _broadcast(lib, send, recv, FLOAT32, 0 if rank == 0 else 1, comm, count=10),
    }
    for what, call in mismatches.items():
        expect("mismatch/" + what, call(), INVALID_USAGE)
        record("mismatch/%s/untouched" % what, not recv.any())
    record("mismatch/no_async_error", _async_error(lib, comm) == SUCCESS)
    expect("after_mismatch", _allreduce(lib, send, recv, FLOAT32, SUM, comm), SUCCESS, recv,
           np.full(16, nranks, np.float32), FLOAT32)
    return out, calls


def _check_ranks(per_rank):
    """Every case passed on every rank, with the same result everywhere."""
    failed = ["rank %d %s: %s" % (r, name, v[2]) for r, cases in enumerate(per_rank) for name, v in cases.items()
              if not v[0]]
    assert not failed, "\n".join(failed[:20])
    for name, v in per_rank[0].items():
        assert all(cases[name][1] == v[1] for cases in per_rank), "%s: results differ between ranks" % name


# ---- processes --------------------------------------------------------------------------------------
def _spawn(mode, raw, rank, nranks, **env):
    code = ("import sys; sys.path[:0] = [%r]\nimport test_cuda_emulator_nccl as t\nt._child_main()\n"
            % os.path.dirname(os.path.abspath(__file__)))
    return subprocess.Popen([sys.executable, "-c", code, mode, _lib_path(), raw.hex(), str(rank), str(nranks)],
                            env=dict(os.environ, **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _result(proc, timeout=120):
    out, err = proc.communicate(timeout=timeout)
    lines = [ln for ln in out.splitlines() if ln.startswith("RESULT ")]
    assert lines, "the child printed no result (rc %s):\n%s\n%s" % (proc.returncode, out, err[-3000:])
    return json.loads(lines[-1][len("RESULT "):])


def _child_main():
    mode, path, raw, rank, nranks = sys.argv[1], sys.argv[2], bytes.fromhex(sys.argv[3]), int(sys.argv[4]), \
        int(sys.argv[5])
    lib = _load(path)
    result = _child_battery(lib, raw, rank, nranks) if mode == "battery" else _child_timeouts_and_skip(lib)
    print("RESULT " + json.dumps(result), flush=True)
    if mode == "battery" and rank == nranks - 1:
        os._exit(0)  # dies holding its communicator: the others find out, and the last unlinks


def _child_battery(lib, raw, rank, nranks):
    before = _nccl_calls(lib)
    st, comm = _init(lib, nranks, raw, rank)
    if st:
        return {"init": st}
    n, r = ctypes.c_int(), ctypes.c_int()
    assert lib.ncclCommCount(comm, ctypes.byref(n)) == SUCCESS and lib.ncclCommUserRank(comm, ctypes.byref(r)) == 0
    cases, calls = _battery(lib, comm, rank, nranks, big=True)
    res = {"init": st, "count": n.value, "rank": r.value, "cases": cases, "calls": calls,
           "counted": _nccl_calls(lib) - before, "segment_after_join": os.path.exists(_segment(raw))}
    if rank == nranks - 1:
        return res
    t0 = time.monotonic()
    buf = np.ones(4, np.float32)
    res["after_death"] = [_allreduce(lib, buf, buf, FLOAT32, SUM, comm), time.monotonic() - t0]
    res["async"] = _async_error(lib, comm)
    res["destroy"] = lib.ncclCommDestroy(comm)
    return res


def _child_timeouts_and_skip(lib):
    """Run with LAMINA_EMU_NCCL_TIMEOUT=2 and LAMINA_CUDA_EMULATOR_SKIP_KERNELS=1 (both per process)."""
    res = {}
    # skipping kernels: calls check, synchronise and count, and move no data
    raw = _new_id(lib)
    before = _nccl_calls(lib)

    def skip_rank(rank):
        st, comm = _init(lib, 2, raw, rank)
        send, recv = np.ones(8, np.float32), np.full(8, 7.0, np.float32)
        r = [st, _allreduce(lib, send, recv, FLOAT32, SUM, comm), _broadcast(lib, send, recv, FLOAT32, 0, comm),
             _allreduce(lib, send, recv, FLOAT32, SUM, comm, count=4 + rank), float(recv.sum()),
             lib.ncclCommDestroy(comm)]
        return r

    res["skip"] = _run_threads(2, skip_rank) + [_nccl_calls(lib) - before, os.path.exists(_segment(raw))]

    # a rank that never comes to ncclCommInitRank; a peer that never comes to a collective (concurrently)
    lonely, pair = _new_id(lib), _new_id(lib)
    go = threading.Event()

    def waits(task):
        if task == 3:  # while rank 0 of `lonely` waits for its peer, the segment is there
            time.sleep(0.5)
            return os.path.exists(_segment(lonely))
        if task == 0:
            t0 = time.monotonic()
            st, _ = _init(lib, 2, lonely, 0)
            return [st, time.monotonic() - t0]
        rank = task - 1
        st, comm = _init(lib, 2, pair, rank)
        if rank == 1:
            go.wait(30)
        t0 = time.monotonic()
        buf = np.ones(8, np.float32)
        r = [st, _allreduce(lib, buf, buf, FLOAT32, SUM, comm), time.monotonic() - t0]
        if rank == 0:
            go.set()
        return r + [_async_error(lib, comm), lib.ncclCommDestroy(comm)]

    res["waits"] = _run_threads(4, waits)
    res["segments"] = [os.path.exists(_segment(lonely)), os.path.exists(_segment(pair))]
    return res


# ---- the tests ---------------------------------------------------------------------------------------
def test_processes():
    """Three processes, one rank each: every check of _battery, identical results on every rank,
    the counter; then the last rank's process dies holding its communicator: the others' next
    collective fails at once with ncclRemoteError. The segment's name is gone once all have joined."""
    lib = _lib()
    raw = _new_id(lib)
    procs = [_spawn("battery", raw, r, 3) for r in range(3)]
    results = [_result(p) for p in procs]
    for r, res in enumerate(results):
        assert res["init"] == SUCCESS, res
        assert (res["count"], res["rank"], res["segment_after_join"]) == (3, r, False)
        assert res["counted"] == res["calls"] > 40, res  # each successful collective, once
    _check_ranks([res["cases"] for res in results])
    for res in results[:2]:
        status, took = res["after_death"]
        assert status == REMOTE_ERROR and took < 10, res["after_death"]
        assert res["async"] == REMOTE_ERROR and res["destroy"] == SUCCESS
    assert not os.path.exists(_segment(raw))


def test_timeouts_and_skipping_kernels():
    """LAMINA_EMU_NCCL_TIMEOUT=2: a rank that never joins, a peer that never calls: ncclTimeout after
    about 2 s, then at once for the peer that comes late; segments gone. SKIP_KERNELS: no data moves."""
    lib = _lib()
    res = _result(_spawn("timeouts", b"\0" * 128, 0, 1, LAMINA_EMU_NCCL_TIMEOUT="2",
                         LAMINA_CUDA_EMULATOR_SKIP_KERNELS="1"))
    for r in range(2):  # init, allreduce, broadcast, mismatched allreduce, recv's sum, destroy
        assert res["skip"][r] == [SUCCESS, SUCCESS, SUCCESS, INVALID_USAGE, 56.0, SUCCESS], res["skip"]
    assert res["skip"][2:] == [4, False], res["skip"]  # two counted collectives a rank; segment gone
    (st, took), first, late, lonely_segment = res["waits"]
    assert lonely_segment
    assert st == TIMEOUT and 1.5 < took < 20, res["waits"]
    assert first[:2] == [SUCCESS, TIMEOUT] and 1.5 < first[2] < 20 and first[3:] == [TIMEOUT, SUCCESS], first
    assert late[:2] == [SUCCESS, TIMEOUT] and late[2] < 1.0 and late[3:] == [TIMEOUT, SUCCESS], late
    assert res["segments"] == [False, False]


def test_threads(monkeypatch):
    """Four ranks on threads, arriving in reverse order, with 256-byte chunks (1003 elements cross
    many chunk boundaries): every check of _battery (but the several-MB one)."""
    lib = _lib()
    monkeypatch.setenv("LAMINA_EMU_NCCL_CHUNK_BYTES", "256")
    monkeypatch.setenv("LAMINA_EMU_NCCL_TIMEOUT", "30")
    raw = _new_id(lib)
    before = _nccl_calls(lib)

    def rank_fn(rank):
        time.sleep(0.02 * (3 - rank))
        st, comm = _init(lib, 4, raw, rank)
        assert st == SUCCESS
        cases, calls = _battery(lib, comm, rank, 4, big=False)
        gone = not os.path.exists(_segment(raw))  # unlinked by the last to join (before any collective)
        return cases, calls, gone, lib.ncclCommDestroy(comm)

    results = _run_threads(4, rank_fn)
    _check_ranks([r[0] for r in results])
    assert all(r[2] and r[3] == SUCCESS for r in results)
    assert _nccl_calls(lib) - before == sum(r[1] for r in results)
    assert not os.path.exists(_segment(raw))


def test_version_strings_and_local_errors(monkeypatch):
    """Entry points that need no peer, and every argument error a call finds by itself."""
    lib = _lib()
    monkeypatch.setenv("LAMINA_EMU_NCCL_TIMEOUT", "30")
    v = ctypes.c_int()
    assert lib.ncclGetVersion(ctypes.byref(v)) == SUCCESS and v.value == 23007  # NCCL_VERSION(2, 30, 7)
    assert lib.ncclGetVersion(None) == INVALID_ARGUMENT
    assert lib.ncclGetErrorString(SUCCESS) == b"no error"
    assert {lib.ncclGetErrorString(s) for s in range(9)}.isdisjoint({None, b"", b"unknown result code"})
    assert len({lib.ncclGetErrorString(s) for s in range(9)}) == 9
    assert lib.ncclGetErrorString(99) == b"unknown result code"
    assert lib.ncclGetUniqueId(None) == INVALID_ARGUMENT

    raw = _new_id(lib)
    assert raw != _new_id(lib)
    assert lib.ncclCommInitRank(None, 1, _as_id(raw), 0) == INVALID_ARGUMENT
    for nranks, rank in ((0, 0), (-1, 0), (2, 2), (2, -1)):
        assert _init(lib, nranks, raw, rank)[0] == INVALID_ARGUMENT, (nranks, rank)
    for bad in (b"\0" * 128, raw[:10] + bytes([raw[10] ^ 1]) + raw[11:], raw[:-1] + bytes([raw[-1] ^ 1]),
                raw[:100] + b"x" + raw[101:]):
        assert _init(lib, 1, bad, 0)[0] == INVALID_ARGUMENT
    assert not os.path.exists(_segment(raw))  # none of these made a segment

    st, comm = _init(lib, 1, raw, 0)
    assert st == SUCCESS and not os.path.exists(_segment(raw))  # all (one) joined: the name is gone
    n = ctypes.c_int()
    assert lib.ncclCommCount(comm, ctypes.byref(n)) == SUCCESS and n.value == 1
    assert lib.ncclCommUserRank(comm, ctypes.byref(n)) == SUCCESS and n.value == 0
    for fn in (lib.ncclCommCount, lib.ncclCommUserRank, lib.ncclCommGetAsyncError):
        assert fn(comm, None) == INVALID_ARGUMENT and fn(None, ctypes.byref(n)) == INVALID_ARGUMENT
    before = _nccl_calls(lib)
    x, y = np.arange(6, dtype=np.int64), np.zeros(6, np.int64)
    h = np.ones(6, np.float16)
    errors = [
        _allreduce(lib, x, y, 12, SUM, comm), _allreduce(lib, x, y, -1, SUM, comm),
        _allreduce(lib, h, h, FLOAT16, SUM, comm), _allreduce(lib, x, y, FP8E4M3, MAX, comm),
        _allreduce(lib, x, y, FP8E5M2, SUM, comm), _allreduce(lib, x, y, INT64, 5, comm),
        _allreduce(lib, x, y, INT64, -1, comm), _allreduce(lib, x, y, INT64, AVG, comm),
        _allreduce(lib, x, y, INT64, SUM, None), _allreduce(lib, None, y, INT64, SUM, comm, count=6),
        _allreduce(lib, x, None, INT64, SUM, comm, count=6), _broadcast(lib, x, y, INT64, 1, comm),
        _broadcast(lib, x, y, INT64, -1, comm), _broadcast(lib, None, y, INT64, 0, comm),
        _broadcast(lib, x, None, INT64, 0, comm, count=6), _broadcast(lib, x, y, 12, 0, comm),
    ]
    assert errors == [INVALID_ARGUMENT] * len(errors)
    assert _nccl_calls(lib) == before  # failed calls do not count
    assert _allreduce(lib, x, y, INT64, PROD, comm) == SUCCESS and np.array_equal(y, x)  # one rank: a copy
    assert _broadcast(lib, h, h, FLOAT16, 0, comm) == SUCCESS  # broadcast copies any type
    assert _nccl_calls(lib) == before + 2
    assert _async_error(lib, comm) == SUCCESS
    assert lib.ncclCommDestroy(comm) == SUCCESS
    assert not os.path.exists(_segment(raw))
    assert lib.ncclCommDestroy(None) == SUCCESS and lib.ncclCommAbort(None) == SUCCESS
    assert lib.ncclGroupEnd() == INVALID_USAGE


def test_duplicate_rank_and_nranks_mismatch(monkeypatch):
    """Two ranks claiming one rank number, or disagreeing on nranks: ncclInvalidArgument on both
    (the one waiting too, at once); segments gone."""
    lib = _lib()
    monkeypatch.setenv("LAMINA_EMU_NCCL_TIMEOUT", "30")
    for args in (((2, 0), (2, 0)), ((2, 0), (3, 1)), ((3, 2), (2, 1))):
        raw = _new_id(lib)
        t0 = time.monotonic()
        results = _run_threads(2, lambda r: _init(lib, args[r][0], raw, args[r][1])[0])
        assert results == [INVALID_ARGUMENT, INVALID_ARGUMENT], args
        assert time.monotonic() - t0 < 10
        assert not os.path.exists(_segment(raw))


def test_abort_destroy_and_groups_of_one_clique(monkeypatch):
    """A peer that aborts, or destroys its communicator, while another waits for it: that one gets
    ncclRemoteError at once. One thread queueing calls for two ranks of one clique: ncclInvalidUsage."""
    lib = _lib()
    monkeypatch.setenv("LAMINA_EMU_NCCL_TIMEOUT", "30")
    for leave in (lib.ncclCommAbort, lib.ncclCommDestroy):
        raw = _new_id(lib)

        def rank_fn(rank):
            st, comm = _init(lib, 2, raw, rank)
            assert st == SUCCESS
            if rank == 0:
                time.sleep(0.1)
                return leave(comm)
            buf = np.ones(3, np.float32)
            t0 = time.monotonic()
            r = _allreduce(lib, buf, buf, FLOAT32, SUM, comm)
            return [r, time.monotonic() - t0 < 10, _async_error(lib, comm), lib.ncclCommDestroy(comm)]

        assert _run_threads(2, rank_fn) == [SUCCESS, [REMOTE_ERROR, True, REMOTE_ERROR, SUCCESS]]
        assert not os.path.exists(_segment(raw))

    raw = _new_id(lib)
    inits = _run_threads(2, lambda r: _init(lib, 2, raw, r))
    assert [st for st, _ in inits] == [SUCCESS, SUCCESS]
    comms = [c for _, c in inits]
    x, y = np.ones(4, np.float32), np.zeros(4, np.float32)
    statuses = [lib.ncclGroupStart(), _allreduce(lib, x, y, FLOAT32, SUM, comms[0]),
                _allreduce(lib, x, y, FLOAT32, SUM, comms[1]), lib.ncclGroupEnd()]
    assert statuses == [SUCCESS, SUCCESS, INVALID_USAGE, INVALID_USAGE] and not y.any()
    assert [lib.ncclCommDestroy(c) for c in comms] == [SUCCESS, SUCCESS]
    assert not os.path.exists(_segment(raw))
