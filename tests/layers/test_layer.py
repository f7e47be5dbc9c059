"""layers/layer.py: add_loss and `losses` as Keras's (one call's worth, cleared at the start of
each outermost call), ActivityRegularization, and a custom layer written as the Keras guides do."""
import numpy as np
import pytest

import lamina
from lamina import layers, ops
from keras_ref import keras_or_none


class ActivityRegularizationLayer(layers.Layer):  # the Keras guide's
    def __init__(self, rate=1e-2):
        super().__init__()
        self.rate = rate

    def call(self, inputs):
        self.add_loss(self.rate * ops.mean(inputs))
        return inputs


class OuterLayer(layers.Layer):
    def __init__(self):
        super().__init__()
        self.activity_reg = ActivityRegularizationLayer(1e-2)

    def call(self, inputs):
        return self.activity_reg(inputs)


def test_losses_hold_one_call_worth():
    layer = OuterLayer()
    assert len(layer.losses) == 0  # never called
    layer(ops.ones((1, 1)))
    assert len(layer.losses) == 1
    layer(ops.ones((1, 1)))
    assert len(layer.losses) == 1  # reset at the start of each outermost call
    assert float(layer.losses[0]) == pytest.approx(0.01)
    shared = ActivityRegularizationLayer(1.0)

    class Twice(layers.Layer):
        def __init__(self):
            super().__init__()
            self.inner = shared

        def call(self, x):
            return self.inner(self.inner(x) * 2.0)
    t = Twice()
    for _ in range(3):
        t(ops.ones((2, 2)))
        assert [float(v) for v in t.losses] == pytest.approx([1.0, 2.0])  # one per inner call


def _regularized_fit(lib, x, y, weights):
    L = lib.layers
    model = lib.Sequential([lib.Input(shape=(4,)), L.Dense(8), L.ActivityRegularization(l1=0.1, l2=0.05),
                            L.Dense(1)])
    model.set_weights(weights)
    model.compile(optimizer=lib.optimizers.SGD(0.05), loss="mse")
    return model, model.fit(x, y, epochs=6, batch_size=16, shuffle=False, verbose=0).history["loss"]


def test_activity_regularization_trains_as_keras():
    """The activity penalty is the current call's, not a pile of every call's: the loss falls."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 4)).astype(np.float32)
    y = x @ rng.standard_normal((4, 1)).astype(np.float32)
    weights = [rng.standard_normal((4, 8)).astype(np.float32) * 0.5, np.zeros(8, np.float32),
               rng.standard_normal((8, 1)).astype(np.float32) * 0.5, np.zeros(1, np.float32)]
    model, got = _regularized_fit(lamina, x, y, weights)
    assert got[-1] < got[0]
    assert len(model.losses) == 1
    reg = model.layers[1]
    assert reg.get_config()["l1"] == 0.1 and "activity_regularizer" not in reg.get_config()
    assert layers.ActivityRegularization.from_config(reg.get_config()).l2 == 0.05
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed: no reference run")
    _, want = _regularized_fit(keras, x, y, weights)
    np.testing.assert_allclose(got, want, rtol=2e-4)


def test_a_model_whose_only_loss_is_add_loss_trains():
    class AutoEncoder(lamina.Model):
        def __init__(self):
            super().__init__()
            self.encoder = layers.Dense(2)
            self.decoder = layers.Dense(4)

        def call(self, x):
            r = self.decoder(self.encoder(x))
            self.add_loss(ops.mean(ops.square(r - x)))
            return r
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((64, 2)) @ rng.standard_normal((2, 4))).astype(np.float32)
    lamina.utils.set_random_seed(0)
    m = AutoEncoder()
    m.compile(optimizer=lamina.optimizers.Adam(0.02))  # no loss: the model adds its own
    h = m.fit(x, epochs=30, batch_size=16, verbose=0)
    assert h.history["loss"][-1] < 0.2 * h.history["loss"][0]
    assert len(m.losses) == 1
    assert m.evaluate(x, verbose=0) == pytest.approx(float(m.losses[0]), rel=0.5)
    plain = lamina.Sequential([lamina.Input(shape=(4,)), layers.Dense(1)])
    plain.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="no loss to compute"):
        plain.fit(x, x[:, :1], verbose=0)


class Linear(layers.Layer):  # the Keras guide's custom layer
    def __init__(self, units=32, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def build(self, input_shape):
        self.w = self.add_weight(shape=(input_shape[-1], self.units), initializer="random_normal", trainable=True,
                                 name="kernel")
        self.b = self.add_weight(shape=(self.units,), initializer="zeros", trainable=True, name="bias")

    def call(self, inputs):
        return ops.matmul(inputs, self.w) + self.b

    def compute_output_shape(self, input_shape):
        return input_shape[:-1] + (self.units,)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


def test_custom_layer_as_in_the_keras_guide(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((64, 3)).astype(np.float32)
    y = x @ np.array([[1.0], [-2.0], [0.5]], np.float32)
    inp = lamina.Input(shape=(3,))
    h = Linear(8, name="lin")(inp)
    assert h.shape == (None, 8)
    model = lamina.Model(inp, Linear(1)(layers.Activation("tanh")(h)))
    model.compile(optimizer=lamina.optimizers.Adam(0.02), loss="mse")
    hist = model.fit(x, y, epochs=40, batch_size=16, verbose=0)
    assert hist.history["loss"][-1] < 0.2 * hist.history["loss"][0]
    lin = model.get_layer("lin")
    assert [w.shape for w in lin.weights] == [(3, 8), (8,)]
    clone = Linear.from_config(lin.get_config())
    assert clone.units == 8 and clone.name == "lin"
    path = str(tmp_path / "m.keras")
    model.save(path)
    loaded = lamina.models.load_model(path, custom_objects={"Linear": Linear})
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)


# ---- build() called directly (Keras's build wrapper), weights without duplicates, inputs ----------

class _Scale(layers.Layer):
    def build(self, input_shape):
        self.w = self.add_weight(name="w", shape=(input_shape[-1],), initializer="ones")

    def call(self, inputs):
        return inputs * self.w


def test_calling_build_directly_leaves_the_layer_built():
    for layer, shape in [(_Scale(), (None, 3)), (layers.Dense(2), (None, 3)), (layers.Conv2D(2, 3), (None, 5, 5, 1)),
                         (layers.LSTM(2), (None, 4, 3)), (layers.BatchNormalization(), (None, 3))]:
        layer.build(shape)
        assert layer.built, type(layer).__name__
        assert layer.weights and all(v.path.startswith(layer.name + "/") for v in layer.weights)
    scale = _Scale()
    scale.build((None, 3))
    np.testing.assert_array_equal(scale(np.full((2, 3), 2.0, np.float32)).numpy(), np.full((2, 3), 2.0))
    assert len(scale.weights) == 1            # the first call does not build again
    broken = _Scale()
    with pytest.raises(TypeError):
        broken.build(None)                    # a build that fails leaves the layer unbuilt
    assert not broken.built


def test_a_weight_held_by_a_layer_and_its_sublayer_is_listed_once():
    class Holder(layers.Layer):
        def __init__(self):
            super().__init__()
            self.inner = layers.Dense(2)

        def build(self, input_shape):
            self.inner.build(input_shape)
            self.kernel = self.inner.kernel   # as SpectralNormalization holds its layer's kernel

        def call(self, inputs):
            return self.inner(inputs)
    h = Holder()
    h(np.ones((1, 3), np.float32))
    assert len(h.trainable_weights) == 2 and len(h.weights) == 2


def test_inputs_that_cannot_be_tensors_name_the_layer():
    dense = layers.Dense(2, name="the_dense")
    for bad, err, match in [(None, TypeError, "None"), (np.ones((2, 3), np.complex64), TypeError, "complex"),
                            ([[1.0, 2.0], [3.0]], ValueError, "ragged list")]:
        with pytest.raises(err, match=f"Dense 'the_dense': cannot use the input .*{match}"):
            dense(bad)
    np.testing.assert_allclose(dense([[1.0, 2.0, 3.0]]).numpy(), dense(np.array([[1.0, 2.0, 3.0]], np.float32)).numpy())


def test_input_spec_dtype_squeeze_and_optional():
    class Spec(layers.Layer):
        def __init__(self, spec, **kwargs):
            super().__init__(**kwargs)
            self.input_spec = spec

        def call(self, x):
            return x

    squeeze = layers.InputSpec(shape=(None, 3, 1), allow_last_axis_squeeze=True)
    assert Spec(squeeze)(np.ones((2, 3), np.float32)).shape == (2, 3)
    assert Spec(squeeze)(np.ones((2, 3, 1), np.float32)).shape == (2, 3, 1)
    with pytest.raises(ValueError, match=r"expected shape \(None, 3, 1\), found shape \(2, 4\)"):
        Spec(squeeze)(np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match="expected ndim=3, found ndim=2"):
        Spec(layers.InputSpec(shape=(None, 3, 1)))(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"expected dtype=float32, found dtype=int32.*ops.cast"):
        Spec(layers.InputSpec(dtype="float32"))(np.ones((2, 3), np.int32))
    spec = layers.InputSpec(ndim=2, optional=True)
    assert spec.optional and not layers.InputSpec(ndim=2).optional
    lamina.layers.layer.check_input_spec(Spec(spec), spec, None)   # None passes an optional spec
    with pytest.raises(ValueError, match="expected a tensor, received None"):
        lamina.layers.layer.check_input_spec(Spec(spec), layers.InputSpec(ndim=2), None)


class _RouterFirst(layers.Layer):  # the Switch Transformer example's: attributes before super().__init__()
    def __init__(self, num_experts, **kwargs):
        self.num_experts = num_experts
        self.route = layers.Dense(units=num_experts)
        self.gate = lamina.Variable(np.ones((num_experts,), "float32"), name="gate")
        super().__init__(**kwargs)

    def call(self, inputs):
        return self.route(inputs) * self.gate


def test_sublayers_and_variables_set_before_super_init_are_tracked():
    r = _RouterFirst(4, name="router")
    assert r.name == "router"
    y = r(np.ones((3, 8), "float32"))
    assert tuple(y.shape) == (3, 4)
    assert len(r.weights) == 3 and len(r.trainable_weights) == 3   # gate, and route's kernel and bias
    assert r.route in r._layers
    model = lamina.Sequential([lamina.Input((8,)), r, layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    before = r.route.kernel.numpy().copy()
    model.fit(np.ones((6, 8), "float32"), np.zeros((6, 1), "float32"), epochs=1, verbose=0)
    assert not np.allclose(r.route.kernel.numpy(), before)   # trained through the tracked sub-layer


def test_output_and_input_read_the_first_call_as_keras():
    # a Sequential rebuilds its graph at each add: earlier layers get one node per rebuild
    model = lamina.Sequential()
    model.add(lamina.Input((5, 3)))
    model.add(layers.GRU(16, return_sequences=True))
    model.add(layers.SimpleRNN(8))
    gru = model.layers[0]
    assert len(gru._inbound_nodes) >= 2
    assert tuple(gru.output.shape) == (None, 5, 16)
    assert tuple(gru.input.shape) == (None, 5, 3)
    # a shared layer: `output` is the first call's, get_output_at(1) the second's
    shared = layers.Dense(2)
    a, b = lamina.Input((3,)), lamina.Input((4, 3))
    oa, ob = shared(a), shared(b)
    assert shared.output is oa and shared.get_output_at(1) is ob
    with pytest.raises(AttributeError, match="never been called"):
        _ = layers.LSTM(2).output


def test_layers_appended_to_a_list_attribute_later_are_tracked_as_keras():
    # the memory-efficient-embeddings example's MDEmbedding: `self.blocks = []`, then append
    class Holder(layers.Layer):
        def __init__(self):
            super().__init__()
            self.blocks = []
            for n in (2, 3):
                self.blocks.append(layers.Dense(n))
            self.by_name = {}
            self.by_name["last"] = layers.Dense(4)
            self.scales = [lamina.Variable(np.ones((2,), "float32"), name="scale")]

        def call(self, x):
            return [b(x) for b in self.blocks] + [self.by_name["last"](x) * 1.0, self.scales[0] * 1.0]

    h = Holder()
    h(np.ones((1, 5), "float32"))
    assert len(h.trainable_weights) == 7 and h.count_params() == 12 + 18 + 24 + 2
    assert isinstance(h.blocks, list) and isinstance(h.by_name, dict)
    removed = h.blocks.pop()
    assert removed not in h._layers and len(h.trainable_weights) == 5
    del h.by_name["last"]
    assert len(h.trainable_weights) == 3
    h.blocks[0:1] = [layers.Dense(1)]
    h.blocks += [layers.Dense(2)]
    assert len(h._layers) == 2
    import copy
    import json
    assert type(copy.copy(h.blocks)) is list
    h.tmp = []
    h.tmp.extend([1, 2])
    assert json.dumps(h.tmp) == "[1, 2]"   # a tracked list is still a list to json and copy
    # a list of plain values is not wrapped; the layer's own bookkeeping lists are not either
    h.sizes = [1, 2]
    assert type(h.sizes) is list and type(h._losses) is list


class _IdLookup(layers.Layer):   # an integer layer, as the memory-efficient-embeddings example's lookups
    def __init__(self, table, **kwargs):
        super().__init__(dtype="int32", **kwargs)
        self.table = np.asarray(table, "int32")

    def call(self, ids):
        assert ids.dtype == "int32", ids.dtype
        return ops.take(self.table, ids)


def test_sequential_input_takes_an_integer_first_layers_dtype_as_keras():
    table = [3, 2, 1, 0]
    for how in ("symbolic", "build", "eager"):
        model = lamina.Sequential([_IdLookup(table), layers.Embedding(4, 2)])
        if how == "symbolic":
            model(lamina.Input((None,), dtype="int32"))
        elif how == "build":
            model.build((None, 3))
        else:
            model(np.array([[0, 1, 2]], "int32"))
        assert model.inputs[0].dtype == "int32", how
        assert model.predict(np.array([[0, 1, 2]]), verbose=0).shape == (1, 3, 2)
    # a built Sequential called on an integer KerasTensor hands its layers integers
    inner = lamina.Sequential([lamina.Input((3,), dtype="int32"), _IdLookup(table)])
    ids = lamina.Input((3,), dtype="int32")
    out = inner(ids)
    assert out.dtype == "int32"
    outer = lamina.Model(ids, layers.Embedding(4, 2)(out))
    assert outer.predict(np.array([[0, 1, 3]], "int32"), verbose=0).shape == (1, 3, 2)
    # an integer layer casts float inputs to its dtype (Keras's convert_input); Hashing does not
    np.testing.assert_array_equal(_IdLookup(table)(np.array([0.0, 3.0], "float32")).numpy(), [3, 0])
    h = layers.Hashing(num_bins=8)
    assert h(np.array([[1.5]], "float32")).numpy().shape == (1, 1)
