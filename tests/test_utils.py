import numpy as np
import pytest

from lamina import utils
from keras_ref import keras_or_none

SEQS = [[1], [2, 3], [4, 5, 6], []]


@pytest.mark.parametrize("kwargs, expected", [
    ({}, [[0, 0, 1], [0, 2, 3], [4, 5, 6], [0, 0, 0]]),
    ({"value": -1}, [[-1, -1, 1], [-1, 2, 3], [4, 5, 6], [-1, -1, -1]]),
    ({"padding": "post"}, [[1, 0, 0], [2, 3, 0], [4, 5, 6], [0, 0, 0]]),
    ({"maxlen": 2}, [[0, 1], [2, 3], [5, 6], [0, 0]]),
    ({"maxlen": 2, "truncating": "post"}, [[0, 1], [2, 3], [4, 5], [0, 0]]),
    ({"maxlen": 4, "padding": "post"}, [[1, 0, 0, 0], [2, 3, 0, 0], [4, 5, 6, 0], [0, 0, 0, 0]]),
])
def test_pad_sequences(kwargs, expected):
    out = utils.pad_sequences(SEQS, **kwargs)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, expected)


def test_pad_sequences_items_dtype_and_errors():
    out = utils.pad_sequences([np.ones((2, 3)), np.ones((1, 3))], dtype="float32", padding="post")
    assert out.shape == (2, 2, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out[1, 1], 0)
    with pytest.raises(ValueError, match="padding must be 'pre' or 'post', received 'middle'"):
        utils.pad_sequences(SEQS, padding="middle")
    with pytest.raises(ValueError, match="item 1 is 3"):
        utils.pad_sequences([[1], 3])
    with pytest.raises(ValueError, match=r"sequence 1 has items of shape \(2,\)"):
        utils.pad_sequences([np.ones((2, 3)), np.ones((1, 2))])


def test_pad_sequences_matches_keras():
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed")
    rng = np.random.default_rng(0)
    seqs = [rng.integers(1, 9, int(n)).tolist() for n in rng.integers(0, 7, 20)]
    for kwargs in [{}, {"maxlen": 4}, {"maxlen": 4, "padding": "post", "truncating": "post"}, {"value": 7.0}]:
        np.testing.assert_array_equal(utils.pad_sequences(seqs, **kwargs), keras.utils.pad_sequences(seqs, **kwargs))
