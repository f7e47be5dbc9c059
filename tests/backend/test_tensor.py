import numpy as np
import pytest

import lamina
from lamina import ops


def test_convert_roundtrip_dtypes():
    for arr, dt in [(np.arange(6, dtype=np.float32).reshape(2, 3), "float32"),
                    (np.arange(6, dtype=np.float64), "float32"),
                    (np.arange(4, dtype=np.int32), "int32"),
                    (np.arange(4, dtype=np.int64), "int64"),
                    (np.array([True, False]), "bool")]:
        t = lamina.convert_to_tensor(arr)
        assert t.dtype == dt and t.shape == arr.shape
        np.testing.assert_array_equal(t.numpy(), arr.astype(t.numpy().dtype))


def test_python_scalars_and_lists():
    assert lamina.convert_to_tensor(3.5).dtype == "float32"
    assert lamina.convert_to_tensor([[1, 2], [3, 4]]).shape == (2, 2)
    assert float(lamina.convert_to_tensor(2.0) * 3) == 6.0


def test_size_zero_tensor():
    t = lamina.convert_to_tensor(np.zeros((0, 3), np.float32))
    assert t.shape == (0, 3) and t.numpy().shape == (0, 3)
    assert ops.sum(t, axis=0).numpy().tolist() == [0.0, 0.0, 0.0]


def test_variable_assign_in_place():
    v = lamina.Variable(np.ones((2, 2), np.float32), name="w")
    addr = v._buf.address
    v.assign(np.full((2, 2), 3.0))
    v.assign_add(np.ones((2, 2)))
    v.assign_sub(lamina.convert_to_tensor(np.full((2, 2), 0.5, np.float32)))
    np.testing.assert_allclose(v.numpy(), np.full((2, 2), 3.5))
    assert v._buf.address == addr
    with pytest.raises(ValueError, match=r"\(2, 2\).*\(3,\)"):
        v.assign(np.ones(3))


def test_variable_does_not_alias_its_initial_value():
    t = lamina.convert_to_tensor(np.zeros(3, np.float32))
    v = lamina.Variable(t)
    v.assign_add(np.ones(3, np.float32))
    np.testing.assert_array_equal(t.numpy(), np.zeros(3))


def test_numpy_interop_operators():
    t = lamina.convert_to_tensor(np.arange(3, dtype=np.float32))
    r = np.ones(3, np.float32) + t
    assert isinstance(r, lamina.Tensor)
    np.testing.assert_array_equal(np.asarray(r), [1, 2, 3])


def test_bool_of_ambiguous_tensor_raises():
    with pytest.raises(ValueError, match="ambiguous"):
        bool(lamina.convert_to_tensor([1.0, 2.0]))


# ---- dtype honesty (issue 12) -----------------------------------------------------------------------

def test_uint64_beyond_int64_is_refused_naming_the_dtype():
    big = np.array([2**63 + 5, 1], np.uint64)
    with pytest.raises(TypeError, match=r"uint64 holding 9223372036854775813.*int32, int64"):
        lamina.convert_to_tensor(big)
    with pytest.raises(TypeError, match=r"^max: .*uint64"):   # the reproducer: no longer max == 1
        ops.max(big)
    with pytest.raises(TypeError, match="uint64"):
        lamina.convert_to_tensor(big, dtype="int32")
    small = np.array([2**63 - 1, 7], np.uint64)   # within int64: exact
    t = lamina.convert_to_tensor(small)
    assert t.dtype == "int64" and t.numpy().tolist() == [2**63 - 1, 7]
    assert int(ops.max(small)) == 2**63 - 1
    assert lamina.convert_to_tensor(big, dtype="float32").numpy().tolist() == [np.float32(2**63 + 5), 1.0]


@pytest.mark.parametrize("dt", [np.complex64, np.complex128])
def test_complex_data_is_refused_naming_the_dtype(dt):
    z = np.array([3 + 4j], dt)
    with pytest.raises(TypeError, match=rf"dtype {np.dtype(dt).name}.*complex.*float32, int32, int64 and bool"):
        lamina.convert_to_tensor(z)
    with pytest.raises(TypeError, match=r"^abs: .*complex"):   # the reproducer: no longer 3.0
        ops.abs(z)
    with pytest.raises(TypeError, match="complex"):   # not silently the real part either
        lamina.convert_to_tensor(z, dtype="float32")


@pytest.mark.parametrize("dtype", ["float64", "float16", np.float64, np.dtype("float16"), "double"])
def test_asking_for_an_unsupported_float_dtype_raises(dtype):
    x = np.array([1.5, 2.5])
    pattern = r"Unsupported dtype .*(float64|float16|double|bfloat16).*float32, int32, int64 and bool"
    with pytest.raises(TypeError, match=pattern):
        lamina.convert_to_tensor(x, dtype=dtype)
    with pytest.raises(TypeError, match=pattern):
        ops.cast(ops.ones((2,)), dtype)
    with pytest.raises(TypeError, match=pattern):
        ops.zeros((2,), dtype=dtype)


@pytest.mark.parametrize("dt", [np.float64, np.float16])
def test_float64_and_float16_data_compute_in_float32_as_keras_does(dt):
    x = np.array([1.5, -2.25, 3.0], dt)
    t = lamina.convert_to_tensor(x)
    assert t.dtype == "float32"
    np.testing.assert_array_equal(t.numpy(), x.astype(np.float32))


def test_numpy_ufuncs_take_tensors_and_operators_stay_tensors():
    # as on JAX's arrays: np.abs(t) / np.exp(t) compute on the values and give arrays (a script's
    # np.abs(model_output)); ndarray (op) tensor defers to the tensor's operator and is a tensor
    t = lamina.convert_to_tensor(np.array([[-3.0, 2.0]], np.float32))
    a = np.ones((1, 2), np.float32)
    r = np.abs(t)
    assert isinstance(r, np.ndarray) and r.tolist() == [[3.0, 2.0]]
    np.testing.assert_allclose(np.exp(t), np.exp([[-3.0, 2.0]]), rtol=1e-6)
    np.testing.assert_array_equal(np.maximum(t, 0), [[0.0, 2.0]])
    for out in (a + t, t + a, a * t, np.float32(2) * t, a < t, np.array(2.0) - t):
        assert isinstance(out, lamina.Tensor)
    np.testing.assert_array_equal((a - t).numpy(), [[4.0, -1.0]])
