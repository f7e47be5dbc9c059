"""backend/validation.py: the argument checks every op shares (integers only, range-checked axes,
shapes) and the size check before allocation, through the ops and layers that use them.

Huge sizes run in this process: a guard on the device's allocation functions fails the test
(instead of asking the allocator for exabytes) should a check ever be skipped."""
import numpy as np
import pytest

import lamina
from lamina import layers, ops
from lamina.backend import validation
from lamina.backend.device import Device

X = lamina.convert_to_tensor(np.arange(6, dtype=np.float32).reshape(2, 3))


# ---- the helpers ----------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [3, np.int64(3), np.array(3), lamina.convert_to_tensor(np.int32(3))])
def test_integer_accepts_integers(value):
    assert validation.integer(value, "op", "arg") == 3


@pytest.mark.parametrize("value", [1.5, 2.0, "3", True, np.bool_(False), None, [1], np.float32(1), np.array([1])])
def test_integer_refuses_everything_else_naming_op_arg_and_value(value):
    with pytest.raises(TypeError, match=r"^op: arg must be an integer, received .* of type"):
        validation.integer(value, "op", "arg")


def test_shapes():
    assert validation.shape(3, "op") == (3,)
    assert validation.shape((2, np.int64(3)), "op") == (2, 3)
    assert validation.shape(np.array([2, 3]), "op") == (2, 3)
    assert validation.shape(lamina.convert_to_tensor(np.array([2, 3])), "op") == (2, 3)
    assert validation.shape((), "op") == ()
    for bad in ("3", (1.5,), (2, "3"), (True,), None, 2.0, np.array([1.5])):
        with pytest.raises(TypeError, match=r"^op: shape must be"):
            validation.shape(bad, "op")
    with pytest.raises(ValueError, match=r"^op: shape \(2, -1\) has a negative dimension -1"):
        validation.shape((2, -1), "op")
    assert validation.dims((2, -1), "op") == (2, -1)


def test_axes():
    assert validation.axis(-1, 3, "op") == 2
    assert validation.axes((0, -1), 3, "op") == (0, 2)
    with pytest.raises(ValueError, match=r"^op: axis 3 is out of range for a tensor of shape \(1, 2, 3\); "
                                         r"expected -3 <= axis <= 2"):
        validation.axis(3, 3, "op", shape=(1, 2, 3))
    with pytest.raises(ValueError, match=r"^op: axis 0 is out of range: a tensor of shape \(\) has no axes"):
        validation.axis(0, 0, "op", shape=())
    with pytest.raises(ValueError, match=r"repeated axis in axis=\(1, -2\)"):
        validation.axes((1, -2), 3, "op")
    with pytest.raises(TypeError, match=r"^op: source must be an integer, received 1\.5"):
        validation.axes((0, 1.5), 3, "op", "source")


def test_check_alloc_names_op_shape_elements_and_bytes():
    validation.check_alloc("op", (1000, 1000), "float32")
    with pytest.raises(MemoryError, match=r"^op: a tensor of shape \(4611686018427387904,\) and dtype float32 on "
                                          r"cpu:0 would hold 4611686018427387904 elements in 18446744073709551616 "
                                          r"bytes \(16\.0 EiB\), more than a 64-bit size can count"):
        validation.check_alloc("op", (2**62,), "float32")
    with pytest.raises(MemoryError, match=r"int64.*2199023255552 bytes \(2\.0 TiB\), more than the .* of memory"):
        validation.check_alloc("op", (2**38,), "int64")
    assert validation.byte_limit() <= validation.MAX_BYTES


# ---- huge sizes: MemoryError before any allocation ----------------------------------------------------

@pytest.fixture
def no_huge_allocation(monkeypatch):
    """Fails a test that lets a huge buffer reach the allocator."""
    buffer, from_numpy = Device.buffer, Device.from_numpy

    def guarded_buffer(self, numel, code):
        assert numel < 2**28, f"a buffer of {numel} elements reached the allocator"
        return buffer(self, numel, code)

    def guarded_from_numpy(self, array):
        assert array.size < 2**28, f"an array of shape {array.shape} reached the allocator"
        return from_numpy(self, array)
    monkeypatch.setattr(Device, "buffer", guarded_buffer)
    monkeypatch.setattr(Device, "from_numpy", guarded_from_numpy)


HUGE_OPS = {   # the reproducers of issue 12 (segfaults, hangs, bad_alloc) and their kin
    "zeros": lambda n: ops.zeros((n,)),
    "ones": lambda n: ops.ones((n, 2)),
    "full": lambda n: ops.full((2, n), 1.5),
    "arange": lambda n: ops.arange(n),
    "eye": lambda n: ops.eye(n),
    "tri": lambda n: ops.tri(n, 4),
    "linspace": lambda n: ops.linspace(0.0, 1.0, n),
    "broadcast_to": lambda n: ops.broadcast_to(X, (n, 2, 3)),
    "one_hot": lambda n: ops.one_hot(np.array([1, 2]), n),
    "normal": lambda n: lamina.random.normal((n, 3)),
    "uniform": lambda n: lamina.random.uniform((n,)),
    "truncated_normal": lambda n: lamina.random.truncated_normal((n,)),
    "randint": lambda n: lamina.random.randint((n,), 0, 5),
    "tile": lambda n: ops.tile(X, (n, 1)),
    "repeat": lambda n: ops.repeat(X, n, axis=1),
    "add": lambda n: ops.add(ops.zeros((2**20, 1)), ops.zeros((1, 2**20))),   # 2**40 elements by broadcasting
    "convert_to_tensor": lambda n: lamina.convert_to_tensor(np.broadcast_to(np.float32(0), (n,))),
}


@pytest.mark.parametrize("op", sorted(HUGE_OPS))
@pytest.mark.parametrize("n", [2**62, 2**61 + 1, 2**40])
def test_huge_sizes_raise_memory_error_naming_op_shape_and_bytes(op, n, no_huge_allocation):
    if op in ("eye", "tri") and n > 2**40:
        n = 2**31   # their element count is n * n (or n * 4)
    if op == "convert_to_tensor" and n > 2**40:
        pytest.skip("numpy itself cannot make an array view that large")
    with pytest.raises(MemoryError) as info:
        HUGE_OPS[op](n)
    msg = str(info.value)
    assert msg.startswith(op + ": a tensor of shape ("), msg
    assert " bytes (" in msg and "elements" in msg, msg


@pytest.mark.parametrize("make,pattern", [
    (lambda: layers.Dense(2**60), r"Dense 'dense\w*': weight 'kernel': a tensor of shape \(3, 1152921504606846976\)"),
    (lambda: layers.Embedding(2**61, 2), r"Embedding 'embedding\w*': weight 'embeddings': a tensor of shape "
                                         r"\(2305843009213693952, 2\)"),
    (lambda: layers.RepeatVector(2**61), r"RepeatVector 'repeat_vector\w*': a tensor of shape "
                                         r"\(2, 2305843009213693952, 3\)"),
    (lambda: layers.Conv2D(2**60, 1), r"Conv2D 'conv2d\w*': weight 'kernel': a tensor of shape "
                                      r"\(1, 1, 3, 1152921504606846976\)"),
    (lambda: layers.DepthwiseConv2D(1, depth_multiplier=2**60), r"DepthwiseConv2D .*weight 'kernel'"),
    (lambda: layers.SeparableConv2D(2**60, 1), r"SeparableConv2D .*weight 'pointwise_kernel'"),
])
def test_layers_with_huge_weights_or_outputs_name_the_layer(make, pattern, no_huge_allocation):
    layer = make()
    x = np.ones((2, 3), np.float32) if not isinstance(layer, (layers.Conv2D, layers.DepthwiseConv2D,
                                                                 layers.SeparableConv2D)) \
        else np.ones((1, 2, 2, 3), np.float32)
    if isinstance(layer, layers.Embedding):
        x = np.array([[1, 2]])
    with pytest.raises(MemoryError, match=pattern):
        layer(x)


# ---- lenient arguments are refused ------------------------------------------------------------------

@pytest.mark.parametrize("axis", [1.5, "0", True, None if False else np.float64(1.0)])
@pytest.mark.parametrize("name,call", [
    ("sum", lambda a: ops.sum(X, axis=a)),
    ("mean", lambda a: ops.mean(X, axis=a)),
    ("argmax", lambda a: ops.argmax(X, axis=a)),
    ("cumsum", lambda a: ops.cumsum(X, axis=a)),
    ("concatenate", lambda a: ops.concatenate([X, X], axis=a)),
    ("stack", lambda a: ops.stack([X, X], axis=a)),
    ("split", lambda a: ops.split(X, 3, axis=a)),
    ("expand_dims", lambda a: ops.expand_dims(X, a)),
    ("squeeze", lambda a: ops.squeeze(ops.ones((1, 2)), a)),
    ("swapaxes", lambda a: ops.swapaxes(X, a, 0)),
    ("moveaxis", lambda a: ops.moveaxis(X, a, 0)),
    ("take", lambda a: ops.take(X, [0], axis=a)),
    ("flip", lambda a: ops.flip(X, axis=a)),
    ("roll", lambda a: ops.roll(X, 1, axis=a)),
    ("softmax", lambda a: ops.softmax(X, axis=a)),
    ("log_softmax", lambda a: ops.log_softmax(X, axis=a)),
    ("one_hot", lambda a: ops.one_hot(np.array([1]), 3, axis=a)),
    ("sort", lambda a: ops.sort(X, axis=a)),
    ("argsort", lambda a: ops.argsort(X, axis=a)),
    ("shuffle", lambda a: lamina.random.shuffle(X, axis=a)),
])
def test_non_integer_axes_are_type_errors_naming_the_op(name, call, axis):
    with pytest.raises(TypeError, match=rf"^{name}: \w+ must be an integer( or a tuple of integers)?, "
                                        rf"received {axis!r:.3}"):
        call(axis)


@pytest.mark.parametrize("call,pattern", [
    (lambda: ops.zeros((1.5,)), r"^zeros: shape must be a tuple of integers, received \(1\.5,\): entry 0 is 1\.5"),
    (lambda: ops.zeros("3"), r"^zeros: shape must be an integer or a tuple of integers, received '3'"),
    (lambda: ops.ones(True), r"^ones: shape must be an integer or a tuple of integers, received True"),
    (lambda: ops.full((2, 2.0), 1), r"^full: shape must be a tuple of integers"),
    (lambda: ops.reshape(X, "6"), r"^reshape: newshape must be an integer or a tuple of integers, received '6'"),
    (lambda: ops.reshape(X, (2, 3.0)), r"^reshape: newshape must be a tuple of integers"),
    (lambda: ops.broadcast_to(X, (2.0, 3)), r"^broadcast_to: shape must be a tuple of integers"),
    (lambda: ops.transpose(X, (1.0, 0)), r"^transpose: axes must be a tuple of integers"),
    (lambda: ops.tile(X, 2.5), r"^tile: repeats must be an integer"),
    (lambda: ops.eye(2.5), r"^eye: N must be an integer, received 2\.5"),
    (lambda: ops.eye(3, k=0.5), r"^eye: k must be an integer"),
    (lambda: ops.tri("3"), r"^tri: N must be an integer"),
    (lambda: ops.tril(X, 1.5), r"^tril: k must be an integer"),
    (lambda: ops.linspace(0, 1, 5.0), r"^linspace: num must be an integer"),
    (lambda: ops.one_hot(np.array([1]), 3.0), r"^one_hot: num_classes must be an integer"),
    (lambda: ops.split(X, 1.5, axis=1), r"^split: indices_or_sections must be an integer"),
    (lambda: ops.split(X, [1.5], axis=1), r"^split: indices_or_sections must be a tuple of integers"),
    (lambda: ops.diagonal(X, offset=0.5), r"^diagonal: offset must be an integer"),
    (lambda: ops.slice(X, (0, 0.5), (1, 1)), r"^slice: start_indices must be a tuple of integers"),
    (lambda: ops.roll(X, 1.5, axis=1), r"^roll: shift must be"),
    (lambda: lamina.random.normal((2, 1.5)), r"^normal: shape must be a tuple of integers"),
    (lambda: lamina.random.randint((2,), 0.5, 3), r"^randint: minval must be an integer"),
])
def test_non_integer_sizes_and_shapes_are_type_errors_naming_op_and_argument(call, pattern):
    with pytest.raises(TypeError, match=pattern):
        call()


@pytest.mark.parametrize("call,pattern", [
    (lambda: ops.zeros((2, -1)), r"^zeros: shape \(2, -1\) has a negative dimension -1"),
    (lambda: ops.eye(-2), r"^eye: N must be a non-negative integer, received N=-2"),
    (lambda: ops.linspace(0, 1, -1), r"^linspace: num must be a non-negative integer"),
    (lambda: ops.one_hot(np.array([1]), -2), r"^one_hot: num_classes must be a non-negative integer"),
    (lambda: ops.sum(X, axis=2), r"^sum: axis 2 is out of range for a tensor of shape \(2, 3\); "
                                 r"expected -2 <= axis <= 1"),
    (lambda: ops.concatenate([X, X], axis=-3), r"^concatenate: axis -3 is out of range for a tensor of shape"),
    (lambda: ops.softmax(X, axis=5), r"^softmax: axis 5 is out of range .* expected -2 <= axis <= 1"),
    (lambda: ops.average(X, axis=4, weights=np.ones(3)), r"^average: axis 4 is out of range"),
])
def test_out_of_range_values_are_value_errors_naming_op_value_and_range(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


@pytest.mark.parametrize("name,call", [
    ("sum", lambda: ops.sum(None)), ("exp", lambda: ops.exp(None)), ("relu", lambda: ops.relu(None)),
    ("reshape", lambda: ops.reshape(None, (1,))), ("softmax", lambda: ops.softmax(None)),
    ("max", lambda: ops.max(None)), ("argmax", lambda: ops.argmax(None)), ("sort", lambda: ops.sort(None)),
    ("transpose", lambda: ops.transpose(None)), ("matmul", lambda: ops.matmul(None, X)),
])
def test_none_inputs_name_the_op(name, call):
    with pytest.raises(TypeError, match=rf"^{name}: Cannot convert NoneType None to a tensor"):
        call()
