"""Bad input raises the right exception, with a message that says what was expected and what was
received (shapes, dtypes, devices). One section per op family; add new families at the end."""
import numpy as np
import pytest

import lamina
from lamina import ops
from lamina.backend import _cpu

T = lamina.convert_to_tensor


def f32(*shape):
    return T(np.ones(shape, np.float32))


def buf(n, dtype=0):
    return _cpu.Buffer(n, dtype)


# ---- conversion -----------------------------------------------------------------------------------

@pytest.mark.parametrize("value", [object(), None, "abc", [1, "a"], {"a": 1}, [object()]])
def test_converting_a_non_numeric_object_raises_type_error(value):
    with pytest.raises(TypeError, match=r"[Cc]annot convert"):
        T(value)


@pytest.mark.parametrize("value", [object(), None, "abc", {"a": 1}, 1j])
def test_non_numeric_operand_raises_type_error_naming_it(value):
    with pytest.raises(TypeError, match=r"add: cannot use .* as an operand"):
        ops.add(f32(2), value)
    with pytest.raises(TypeError, match=r"multiply: cannot use"):
        ops.multiply(value, f32(2))


# ---- elementwise ------------------------------------------------------------------------------------

@pytest.mark.parametrize("op", [ops.add, ops.subtract, ops.multiply, ops.divide, ops.power, ops.maximum,
                                ops.minimum, ops.mod, ops.floor_divide, ops.equal, ops.less, ops.logaddexp])
@pytest.mark.parametrize("sa,sb", [((2, 3), (4,)), ((3, 1), (2, 2)), ((5,), (0,)), ((2, 3, 4), (3, 1, 5))])
def test_incompatible_broadcast_shapes_name_both(op, sa, sb):
    with pytest.raises(ValueError) as info:
        op(f32(*sa), f32(*sb))
    msg = str(info.value)
    assert str(sa) in msg and str(sb) in msg, msg
    assert op.__name__ in msg and "broadcast" in msg


def test_broadcast_error_through_operators_and_where():
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(2,\)"):
        f32(2, 3) + f32(2)
    with pytest.raises(ValueError, match=r"where: shapes .*\(3,\).*\(4,\)"):
        ops.where(np.ones(3, bool), f32(4), 0.0)
    with pytest.raises(ValueError, match=r"broadcast_to: cannot broadcast shape \(3,\) to \(4,\)"):
        ops.broadcast_to(f32(3), (4,))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 3\)"):
        ops.broadcast_to(f32(2, 3), (3, 3))


@pytest.mark.parametrize("op", [ops.add, ops.multiply, ops.maximum, ops.equal, ops.where])
def test_dtype_mismatch_between_tensors_is_a_type_error(op):
    a, b = f32(2, 3), T(np.ones((2, 3), np.int32))
    args = (np.ones((2, 3), bool), a, b) if op is ops.where else (a, b)
    with pytest.raises(TypeError, match=r"float32 with shape \(2, 3\) and int32 with shape \(2, 3\)"):
        op(*args)


def test_mixed_devices_name_both_devices():
    a = f32(2)
    with lamina.device("cpu:1"):
        b = f32(2)
    for op in (ops.add, ops.multiply, ops.greater, ops.maximum):
        with pytest.raises(ValueError, match=r"different devices \(cpu:0 with shape \(2,\), cpu:1 with shape \(2,\)\)"):
            op(a, b)
    with pytest.raises(ValueError, match=r"cpu:0.*cpu:1"):
        ops.matmul(T(np.ones((2, 2), np.float32)), b.reshape(2, 1))


@pytest.mark.parametrize("call,exc,pattern", [
    (lambda: ops.subtract(T(np.ones(2, bool)), T(np.ones(2, bool))), TypeError, r"bool tensors cannot be subtracted"),
    (lambda: ops.negative(T(np.ones(2, bool))), TypeError, r"negative: bool .*shape \(2,\)"),
    (lambda: ops.clip(T(np.ones(2, bool)), 0, 1), TypeError, r"clip: bool .*shape \(2,\)"),
    (lambda: ops.clip(f32(2), None, None), ValueError, r"clip: give x_min, x_max"),
    (lambda: ~T(np.ones(2, np.int32)), TypeError, r"operator ~.*int32 with shape \(2,\)"),
    (lambda: T(np.ones(2, np.int32)) & T(np.ones(2, np.int32)), TypeError, r"operator &.*int32"),
    (lambda: ops.where(np.ones(2, bool), f32(2)), ValueError, r"where: pass both x1 and x2"),
    (lambda: ops.round(f32(2), 1.5), TypeError, r"round: decimals must be an integer"),
    (lambda: ops.cast(f32(2), "complex64"), TypeError, r"Unsupported dtype"),
])
def test_elementwise_bad_arguments(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


# ---- reductions ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("op", [ops.sum, ops.mean, ops.max, ops.min, ops.prod, ops.any, ops.all, ops.var,
                                ops.std, ops.logsumexp, ops.argmax, ops.argmin, ops.cumsum, ops.cumprod,
                                ops.count_nonzero])
@pytest.mark.parametrize("axis", [2, -3, 7])
def test_axis_out_of_range_names_the_shape(op, axis):
    with pytest.raises(ValueError, match=rf"{op.__name__}: axis {axis} is out of range for a tensor of shape \(2, 3\)"):
        op(f32(2, 3), axis=axis)


@pytest.mark.parametrize("op", [ops.sum, ops.mean, ops.max, ops.logsumexp])
def test_repeated_and_non_integer_axes(op):
    with pytest.raises(ValueError, match=r"axis 1 is repeated .*shape \(2, 3\)"):
        op(f32(2, 3), axis=(1, -1))
    with pytest.raises(TypeError, match=r"axis must be an integer"):
        op(f32(2, 3), axis=1.0)
    with pytest.raises(TypeError, match=r"axis must be an integer"):
        op(f32(2, 3), axis="0")


@pytest.mark.parametrize("op", [ops.argmax, ops.argmin, ops.cumsum, ops.cumprod])
def test_single_axis_ops_reject_tuples(op):
    with pytest.raises(ValueError, match=rf"{op.__name__}: expected a single integer axis .*\(2, 3\)"):
        op(f32(2, 3), axis=(0, 1))


def test_empty_reductions_without_identity():
    with pytest.raises(ValueError, match=r"max: zero-size tensor of shape \(0, 3\) .*initial="):
        ops.max(f32(0, 3), axis=0)
    with pytest.raises(ValueError, match=r"argmin: axis 0 of shape \(0, 3\) is empty"):
        ops.argmin(f32(0, 3), axis=0)


# ---- linalg ---------------------------------------------------------------------------------------------

def test_matmul_inner_dimension_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"matmul: inner dimensions differ.*\(2, 3\).*\(4, 5\)"):
        ops.matmul(f32(2, 3), f32(4, 5))
    with pytest.raises(ValueError, match=r"\(7, 2, 3\).*\(2, 5\)"):
        ops.matmul(f32(7, 2, 3), f32(2, 5))


def test_matmul_on_int_tensors_is_a_type_error():
    with pytest.raises(TypeError, match=r"matmul: expected float32 operands.*int32 with shape \(2, 2\)"):
        ops.matmul(T(np.ones((2, 2), np.int32)), f32(2, 2))


# ---- kernels called directly: inconsistent sizes raise ValueError, never crash ----------------------------

@pytest.mark.parametrize("call,pattern", [
    (lambda: _cpu.binary(0, buf(5), [2, 3], buf(3), [3], buf(6), [2, 3]), r"binary: a holds 5 elements .*\(2, 3\)"),
    (lambda: _cpu.binary(0, buf(6), [2, 3], buf(4), [4], buf(6), [2, 3]), r"add: operand of shape \(4,\) cannot broadcast"),
    (lambda: _cpu.binary(0, buf(6), [2, 3], buf(3), [3], buf(5), [2, 3]), r"binary: out holds 5 elements"),
    (lambda: _cpu.binary(99, buf(1), [1], buf(1), [1], buf(1), [1]), r"binary: unknown op code 99"),
    (lambda: _cpu.binary(0, buf(6), [2, -3], buf(1), [1], buf(6), [2, 3]), r"negative dimension"),
    (lambda: _cpu.unary(1, buf(4), buf(3)), r"unary: input has 4 elements, output 3"),
    (lambda: _cpu.unary(999, buf(4), buf(4)), r"unary: unknown op code 999"),
    (lambda: _cpu.unary_grad(0, buf(4), buf(4), buf(5)), r"unary_grad: element counts differ"),
    (lambda: _cpu.where(buf(3, 3), [3], buf(3), [3], buf(3), [3], buf(4), [3]), r"where: out holds 4 elements"),
    (lambda: _cpu.where(buf(3, 3), [3], buf(3), [3], buf(3), [3], buf(4), [4]), r"where: operand of shape \(3,\) cannot broadcast to \(4,\)"),
    (lambda: _cpu.clip(buf(3), 0.0, 1.0, buf(2)), r"clip: input has 3 elements, output 2"),
    (lambda: _cpu.clip_grad(buf(3), 0.0, 1.0, buf(3), buf(2)), r"clip_grad: element counts differ"),
    (lambda: _cpu.axpby(1.0, buf(3), 1.0, buf(4)), r"axpby: x holds 3 elements, y 4"),
    (lambda: _cpu.broadcast_to(buf(3), [3], buf(8), [2, 4]), r"operand of shape \(3,\) cannot broadcast to \(2, 4\)"),
    (lambda: _cpu.reduce(0, buf(10), 2, 3, 2, buf(4)), r"reduce: input holds 10 elements, but \(outer, R, inner\) = \(2, 3, 2\) needs 12"),
    (lambda: _cpu.reduce(0, buf(12), 2, 3, 2, buf(5)), r"reduce: output holds 5 elements, expected 4"),
    (lambda: _cpu.reduce(0, buf(12), -2, -3, 2, buf(4)), r"must be non-negative"),
    (lambda: _cpu.reduce(2, buf(0), 2, 0, 2, buf(4)), r"cannot take the max/min over an empty axis"),
    (lambda: _cpu.argreduce(True, buf(12), 2, 3, 2, buf(3, 2)), r"argmax: output holds 3 elements, expected 4"),
    (lambda: _cpu.cumulative(0, buf(12), 2, 3, 2, buf(11)), r"cumulative: output holds 11 elements"),
    (lambda: _cpu.cumulative(5, buf(12), 2, 3, 2, buf(12)), r"cumulative: unknown op code 5"),
    (lambda: _cpu.cumprod_grad(buf(12), buf(11), 2, 3, 2, buf(12)), r"cumprod_grad: grad holds 11 elements"),
    (lambda: _cpu.matmul(buf(6), [2, 3], buf(8), [4, 2], buf(4), [2, 2]), r"matmul: inner dimensions differ"),
    (lambda: _cpu.set_simd_isa("sse9"), r"set_simd_isa: unknown instruction set 'sse9'"),
])
def test_kernels_validate_their_arguments(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call()


@pytest.mark.parametrize("call,pattern", [
    (lambda: _cpu.binary(0, buf(3), [3], buf(3, 1), [3], buf(3), [3]), r"binary: expected b of dtype float32, received int32"),
    (lambda: _cpu.binary(7, buf(3), [3], buf(3), [3], buf(3), [3]), r"compare: expected out of dtype bool, received float32"),
    (lambda: _cpu.unary(1, buf(3), buf(3, 1)), r"unary: expected out of dtype float32, received int32"),
    (lambda: _cpu.unary_grad(0, buf(3, 1), buf(3), buf(3)), r"unary_grad: expected saved of dtype float32"),
    (lambda: _cpu.reduce(5, buf(4), 1, 4, 1, buf(1)), r"reduce: expected x of dtype bool, received float32"),
    (lambda: _cpu.argreduce(False, buf(4), 1, 4, 1, buf(1)), r"argmin: expected out of dtype int64"),
    (lambda: _cpu.cumprod_grad(buf(4, 1), buf(4), 1, 4, 1, buf(4)), r"cumprod_grad: expected x of dtype float32"),
])
def test_kernels_check_dtypes(call, pattern):
    with pytest.raises(TypeError, match=pattern):
        call()


def test_kernel_ops_undefined_for_a_dtype_raise_value_error():
    with pytest.raises(ValueError, match=r"needs a float tensor, received int32"):
        _cpu.unary(1, buf(3, 1), buf(3, 1))  # exp on int32
    with pytest.raises(ValueError, match=r"not defined for bool tensors"):
        _cpu.binary(1, buf(3, 3), [3], buf(3, 3), [3], buf(3, 3), [3])  # subtract on bool
    with pytest.raises(ValueError, match=r"reduce: mean needs a float32 tensor"):
        _cpu.reduce(1, buf(4, 1), 1, 4, 1, buf(1, 1))
