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
