"""Writes fixtures/keras_shared_objects.keras (+ .npz): a '.keras' file whose config.json Keras 3
wrote with "shared_object_id" entries (run by hand, with keras installed:
`KERAS_BACKEND=jax python tests/models/make_keras_shared_fixture.py`; the tests also call
`shared_model` with keras when it is installed). The model:

- one L2 regularizer object given to Dense "a" (kernel) and Dense "b" (kernel and bias): Keras
  writes the id on b's two entries (a's entry, written first inside a's config, is copied before
  the second use is seen, so it carries none);
- Dense "shared" called on input x and also held by a custom layer "Fixture>Twice" (y = 2 *
  layer(z)) called on input z: both entries of the layer carry the id, and loading must give the
  wrapper the very layer the model calls.

The .npz holds the inputs x, z and Keras's outputs y0, y1."""
import os

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "jax")

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")


def twice_class(lib):
    """Keras's (or lamina's) "Fixture>Twice": y = 2 * layer(x), `layer` saved in its config."""
    @lib.saving.register_keras_serializable(package="Fixture")
    class Twice(lib.layers.Layer):
        def __init__(self, layer, **kwargs):
            super().__init__(**kwargs)
            self.layer = layer

        def call(self, x):
            return self.layer(x) * 2.0

        def get_config(self):
            return {**super().get_config(), "layer": lib.saving.serialize_keras_object(self.layer)}

        @classmethod
        def from_config(cls, config):
            config = dict(config)
            config["layer"] = lib.saving.deserialize_keras_object(config["layer"])
            return cls(**config)
    return Twice


def shared_model(lib):
    L = lib.layers
    Twice = twice_class(lib)
    reg = lib.regularizers.L2(0.01)
    x, z = lib.Input((4,), name="x"), lib.Input((4,), name="z")
    shared = L.Dense(4, name="shared")
    h = L.Dense(4, kernel_regularizer=reg, name="a")(shared(x))
    y0 = L.Dense(2, kernel_regularizer=reg, bias_regularizer=reg, name="b")(h)
    y1 = Twice(shared, name="twice")(z)
    return lib.Model([x, z], [y0, y1], name="fixture_shared")


def main():
    import keras
    keras.utils.set_random_seed(0)
    m = shared_model(keras)
    rng = np.random.default_rng(4)
    x, z = rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal((3, 4)).astype(np.float32)
    m.save(os.path.join(HERE, "keras_shared_objects.keras"))
    y0, y1 = m.predict([x, z], verbose=0)
    np.savez(os.path.join(HERE, "keras_shared_objects.npz"), x=x, z=z, y0=y0, y1=y1,
             keras_version=keras.__version__)


if __name__ == "__main__":
    main()
