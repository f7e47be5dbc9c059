import numpy as np
import pytest

from lamina import layers
from layer_harness import run_layer_test


def test_flatten():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    run_layer_test(layers.Flatten, {}, (2, 3, 4), input_data=x, expected_output=x.reshape(2, 12))


def test_reshape_with_minus_one_and_errors():
    x = np.arange(24, dtype=np.float32).reshape(2, 12)
    run_layer_test(layers.Reshape, {"target_shape": (3, -1)}, (2, 12), input_data=x,
                   expected_output=x.reshape(2, 3, 4))
    with pytest.raises(ValueError, match="total size"):
        layers.Reshape((5,))(x)
    with pytest.raises(ValueError):
        layers.Reshape((-1, -1))


def test_permute():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    run_layer_test(layers.Permute, {"dims": (2, 1)}, (2, 3, 4), input_data=x, expected_output=x.transpose(0, 2, 1))
    with pytest.raises(ValueError, match="permutation"):
        layers.Permute((1, 3))


def test_repeat_vector():
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    run_layer_test(layers.RepeatVector, {"n": 4}, (2, 3), input_data=x,
                   expected_output=np.repeat(x[:, None, :], 4, axis=1))


@pytest.mark.parametrize("make,pattern", [
    (lambda: layers.Reshape((1.5, 2)), r"Reshape: target_shape must be a tuple of ints"),
    (lambda: layers.Reshape("6"), r"Reshape: target_shape must be a tuple of ints"),
    (lambda: layers.Permute((1.0, 2)), r"Permute: dims must be a tuple of ints"),
    (lambda: layers.RepeatVector(2.0), r"RepeatVector: `n` must be a positive integer, received n=2\.0"),
    (lambda: layers.RepeatVector(True), r"RepeatVector: `n` must be a positive integer"),
])
def test_non_integer_sizes_are_refused(make, pattern):
    with pytest.raises(ValueError, match=pattern):
        make()
