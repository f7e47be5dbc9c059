"""layers/input_layer.py: Input's shape arguments are integers (or None), never silently int()-ed."""
import pytest

import lamina


@pytest.mark.parametrize("kwargs,bad", [({"shape": (1.5,)}, "1.5"), ({"shape": (3, "4")}, "'4'"),
                                        ({"shape": (True, 2)}, "True"), ({"shape": (-1,)}, "-1"),
                                        ({"shape": (3,), "batch_size": 2.0}, "2.0"),
                                        ({"batch_shape": (None, 2.5)}, "2.5")])
def test_input_dimensions_must_be_non_negative_integers(kwargs, bad):
    with pytest.raises(ValueError, match=rf"Input: dimensions must be non-negative integers or None, received "
                                         rf"{bad}"):
        lamina.Input(**kwargs)


def test_input_shapes():
    assert lamina.Input((None, 3)).shape == (None, None, 3)
    assert lamina.Input(3).shape == (None, 3)
    assert lamina.Input((2,), batch_size=4).shape == (4, 2)
