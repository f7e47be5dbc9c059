"""losses.py: custom Loss subclasses as the Keras guides write them (`call(y_true, y_pred)`,
Keras's `name` and `reduction` arguments)."""
import numpy as np
import pytest

import lamina
from lamina import losses, ops
from keras_ref import keras_or_none


class CustomMSE(losses.Loss):  # the Keras guide's ("training & evaluation with the built-in methods")
    def __init__(self, regularization_factor=0.1, name="custom_mse", reduction="sum_over_batch_size"):
        super().__init__(name=name, reduction=reduction)
        self.regularization_factor = regularization_factor

    def call(self, y_true, y_pred):
        mse = ops.mean(ops.square(y_true - y_pred), axis=-1)
        reg = ops.mean(ops.square(0.5 - y_pred), axis=-1)
        return mse + reg * self.regularization_factor

    def get_config(self):
        return {"regularization_factor": self.regularization_factor, "name": self.name}


def _want(y, p, f=0.1):
    return ((y - p) ** 2).mean(-1) + ((0.5 - p) ** 2).mean(-1) * f


def test_custom_loss_reductions():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, (6, 3))  # integer targets arrive as floats, as in Keras
    p = rng.random((6, 3)).astype(np.float32)
    per = _want(y, p)
    assert float(CustomMSE()(y, p)) == pytest.approx(per.mean(), rel=1e-5)
    assert float(CustomMSE(reduction="sum")(y, p)) == pytest.approx(per.sum(), rel=1e-5)
    np.testing.assert_allclose(CustomMSE(reduction="none")(y, p).numpy(), per, rtol=1e-5)
    sw = np.array([1, 0, 2, 0, 1, 1], np.float32)
    assert float(CustomMSE()(y, p, sample_weight=sw)) == pytest.approx((per * sw).sum() / 6, rel=1e-5)
    assert CustomMSE().name == "custom_mse"
    assert CustomMSE.from_config(CustomMSE(0.3).get_config()).regularization_factor == 0.3
    with pytest.raises(ValueError, match="reduction"):
        CustomMSE(reduction="auto")


def _fit(lib, loss, x, y, weights):
    model = lib.Sequential([lib.Input(shape=(3,)), lib.layers.Dense(2)])
    model.set_weights(weights)
    model.compile(optimizer=lib.optimizers.SGD(0.05), loss=loss)
    return model.fit(x, y, epochs=3, batch_size=16, shuffle=False, verbose=0).history["loss"]


def test_custom_loss_in_fit_as_keras():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((48, 3)).astype(np.float32)
    y = (x[:, :2] > 0).astype(np.float32)
    weights = [rng.standard_normal((3, 2)).astype(np.float32), np.zeros(2, np.float32)]
    got = _fit(lamina, CustomMSE(), x, y, weights)
    assert got[-1] < got[0]
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed: no reference run")

    class KerasMSE(keras.losses.Loss):
        def __init__(self, regularization_factor=0.1, name="custom_mse"):
            super().__init__(name=name)
            self.regularization_factor = regularization_factor

        def call(self, y_true, y_pred):
            ko = keras.ops
            return ko.mean(ko.square(y_true - y_pred), axis=-1) + \
                ko.mean(ko.square(0.5 - y_pred), axis=-1) * self.regularization_factor
    np.testing.assert_allclose(got, _fit(keras, KerasMSE(), x, y, weights), rtol=1e-5)
