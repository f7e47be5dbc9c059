"""`lamina.ops` on the KerasTensors of the functional API, as Keras 3 allows: each call becomes a
node of the graph (a SymbolicOp layer) that the model replays on real tensors, with the output's
shape and dtype known symbolically; ops.shape of a KerasTensor is its static shape."""
import numpy as np
import pytest

import lamina
from lamina import layers, ops
from keras_ref import keras_or_none


def test_ops_between_input_and_model_run_on_the_real_tensors():
    a, b = lamina.Input((3,)), lamina.Input((3,))
    c = ops.concatenate([a, ops.square(b)], axis=-1)            # a list argument
    d = layers.Dense(2, kernel_initializer="ones")(c)
    e = ops.mean(d, axis=-1, keepdims=True) + ops.max(c, axis=-1, keepdims=True)
    f = ops.where(ops.greater(a, 0.0), a, -b)                    # several KerasTensors, one a keyword-free position
    g = ops.expand_dims(ops.sum(f, axis=1), axis=-1)
    assert c.shape == (None, 6) and e.shape == (None, 1) and g.shape == (None, 1)
    model = lamina.Model([a, b], [d, e, g])
    rng = np.random.default_rng(0)
    xa, xb = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((4, 3)).astype(np.float32)
    d_, e_, g_ = model.predict([xa, xb], verbose=0)
    cat = np.concatenate([xa, xb ** 2], -1)
    np.testing.assert_allclose(d_, np.repeat(cat.sum(-1, keepdims=True), 2, -1), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(e_, d_.mean(-1, keepdims=True) + cat.max(-1, keepdims=True), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g_, np.where(xa > 0, xa, -xb).sum(1, keepdims=True), rtol=1e-5, atol=1e-6)


def test_symbolic_dtypes_shapes_and_keywords():
    x = lamina.Input((5,))
    assert ops.shape(x) == (None, 5)
    idx = ops.argmax(x, axis=-1)
    assert idx.dtype == "int64" and idx.shape == (None,)
    values, indices = ops.top_k(x, k=2)
    eager = ops.top_k(lamina.convert_to_tensor(np.zeros((1, 5), np.float32)), k=2)[1]
    assert values.dtype == "float32" and indices.dtype == eager.dtype != "float32"
    assert values.shape == indices.shape == (None, 2)
    y = ops.clip(x, x_min=0.0, x_max=1.0)                         # keywords that are not tensors
    z = ops.add(x1=y, x2=x)                                       # tensors passed by keyword
    model = lamina.Model(x, [idx, values, indices, z])
    data = np.array([[0.5, -2.0, 3.0, 1.0, 0.0]], np.float32)
    i, v, k, out = model(data)
    assert int(i.numpy()[0]) == 2
    np.testing.assert_array_equal(v.numpy(), [[3.0, 1.0]])
    np.testing.assert_array_equal(k.numpy(), [[2, 3]])
    np.testing.assert_allclose(out.numpy(), np.clip(data, 0, 1) + data)


def test_trains_through_symbolic_ops():
    lamina.utils.set_random_seed(0)
    x = lamina.Input((4,))
    h = layers.Dense(8)(x)
    y = layers.Dense(1)(ops.tanh(h) * 2.0 + ops.abs(h))
    model = lamina.Model(x, y)
    model.compile(lamina.optimizers.Adam(0.05), "mse")
    rng = np.random.default_rng(1)
    data = rng.standard_normal((64, 4)).astype(np.float32)
    target = data.sum(1, keepdims=True)
    hist = model.fit(data, target, epochs=30, batch_size=16, verbose=0)
    assert hist.history["loss"][-1] < 0.2 * hist.history["loss"][0]


def test_clone_and_nest_a_model_with_symbolic_ops():
    x = lamina.Input((3,))
    y = ops.add(ops.multiply(x, x), np.array([1.0, 2.0, 3.0], np.float32))   # one KerasTensor twice, a constant
    model = lamina.Model(x, layers.Dense(2)(y))
    data = np.arange(6, dtype=np.float32).reshape(2, 3)
    clone = lamina.models.clone_model(model)
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone.predict(data, verbose=0), model.predict(data, verbose=0), rtol=1e-6)
    assert not set(map(id, clone.layers)) & set(map(id, model.layers))
    outer = lamina.Sequential([lamina.Input((3,)), model, layers.Dense(1)])
    assert outer.predict(data, verbose=0).shape == (2, 1)


def test_an_op_keras_does_not_have_says_why_it_does_not_serialize(tmp_path):
    x = lamina.Input((3,))
    model = lamina.Model(x, layers.Dense(2)(ops.copysign(x, -1.0)))
    with pytest.raises(TypeError, match=r"the op 'copysign' called on symbolic tensors.*Keras has no such op"):
        model.save(str(tmp_path / "m.keras"))
    assert not (tmp_path / "m.keras").exists()


def _ops_model(lib):
    o, L = lib.ops, lib.layers
    a, b = lib.Input((3,)), lib.Input((3,))
    x = o.concatenate([a, o.square(b)], axis=-1)
    x = o.reshape(x, (-1, 2, 3))
    x = o.subtract(2.0, o.add(x, 1.0))                  # Python numbers among the call's arguments
    w = o.where(o.greater(x, 0.5), x, 0.0)
    e = o.einsum("bij,bij->bi", x, w)                   # a variable number of call arguments
    m = o.mean(o.abs(w), axis=1, keepdims=True)         # abs is Keras's absolute
    y = L.Dense(2, name="head")(o.expand_dims(e, -1))
    return lib.Model([a, b], [y, m])


def _inputs():
    rng = np.random.default_rng(0)
    return [rng.standard_normal((4, 3)).astype(np.float32) for _ in range(2)]


def test_ops_save_as_keras_operations_and_load_back(tmp_path):
    model = _ops_model(lamina)
    path = str(tmp_path / "ops.keras")
    model.save(path)
    op = {layer.function.__name__: layer for layer in model.operations if hasattr(layer, "function")}
    assert not any(hasattr(layer, "function") for layer in model.layers)   # ops are operations, not layers
    assert op["concatenate"].get_config() == {"name": op["concatenate"].name, "axis": -1}
    assert op["reshape"].get_config() == {"name": op["reshape"].name, "newshape": (-1, 2, 3)}
    assert op["einsum"].get_config() == {"name": op["einsum"].name, "subscripts": "bij,bij->bi"}
    assert op["abs"]._keras_class() == ("keras.src.ops.numpy", "Absolute")
    again = lamina.models.load_model(path)
    for got, want in zip(again.predict(_inputs(), verbose=0), model.predict(_inputs(), verbose=0)):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    # a loaded model saves, clones and trains like the original
    again.save(str(tmp_path / "again.keras"))
    clone = lamina.models.clone_model(again)
    clone.set_weights(again.get_weights())
    np.testing.assert_allclose(clone.predict(_inputs(), verbose=0)[0], again.predict(_inputs(), verbose=0)[0],
                               rtol=1e-6)


def test_ops_files_move_both_ways_with_keras(tmp_path):
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed")
    ours = _ops_model(lamina)
    path = str(tmp_path / "lamina.keras")
    ours.save(path)
    theirs = keras.models.load_model(path)
    for got, want in zip(theirs.predict(_inputs(), verbose=0), ours.predict(_inputs(), verbose=0)):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-6)
    kmodel = _ops_model(keras)
    kpath = str(tmp_path / "keras.keras")
    kmodel.save(kpath)
    loaded = lamina.models.load_model(kpath)
    for got, want in zip(loaded.predict(_inputs(), verbose=0), kmodel.predict(_inputs(), verbose=0)):
        np.testing.assert_allclose(got, np.asarray(want), rtol=1e-5, atol=1e-6)


def test_ops_on_real_tensors_are_the_backend_functions():
    """The symbolic dispatch wraps every op without changing what it computes or its name."""
    t = lamina.convert_to_tensor(np.array([1.0, -2.0], np.float32))
    np.testing.assert_array_equal(ops.abs(t).numpy(), [1.0, 2.0])
    assert ops.abs.__name__ == "abs" and ops.nn.relu is ops.relu and ops.numpy.add is ops.add
    assert ops.image.resize.__wrapped__.__module__ == "lamina.backend.image"


def test_ops_are_operations_not_layers_as_in_keras():
    model = _ops_model(lamina)
    names = [type(layer).__name__ for layer in model.layers]
    assert "SymbolicOp" not in names and names.count("InputLayer") == 2 and names[-1] == "Dense"
    assert len(model.operations) > len(model.layers)
    assert model.layers[-1] is model.get_layer("head")
    keras = keras_or_none()
    if keras is not None:
        theirs = _ops_model(keras)
        assert [type(layer).__name__ for layer in theirs.layers] == names
        assert len(theirs.operations) == len(model.operations)


def _operator_outputs(x, y, ops_):
    return [x * 2.0 + y, 1.0 - x, -x, abs(x), x[:, 1], x[..., 1:3], x ** 2, x / y, x // 2, x % 2,
            x @ ops_.transpose(y, (0, 2, 1)), x > y, round(x), ~(x > y), (x > y) & (y > x), (x > y) | (y > x),
            x != y, x <= 2.0 * y]


def test_python_operators_are_ops_nodes_that_save_in_safe_mode(tmp_path):
    x, y = lamina.Input((3, 4)), lamina.Input((3, 4))
    outs = _operator_outputs(x, y, ops)
    model = lamina.Model([x, y], outs)
    assert all(type(o).__name__ in ("InputLayer", "SymbolicOp") for o in model.operations)   # no Lambda
    assert outs[4].shape == (None, 4) and outs[5].shape == (None, 3, 2) and outs[11].dtype == "bool"
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal((2, 3, 4)).astype(np.float32), rng.uniform(0.5, 1.5, (2, 3, 4)).astype(np.float32)
    want = [a * 2 + b, 1 - a, -a, np.abs(a), a[:, 1], a[..., 1:3], a ** 2, a / b, np.floor_divide(a, 2),
            np.mod(a, 2), a @ b.transpose(0, 2, 1), a > b, np.round(a), ~(a > b), (a > b) & (b > a),
            (a > b) | (b > a), a != b, a <= 2 * b]
    got = model.predict([a, b], verbose=0)
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), w, rtol=1e-5, atol=1e-5)
    model.save(tmp_path / "ops.keras")
    back = lamina.saving.load_model(tmp_path / "ops.keras")   # safe mode: no lambda was saved
    for g, w in zip(back.predict([a, b], verbose=0), want):
        np.testing.assert_allclose(np.asarray(g), w, rtol=1e-5, atol=1e-5)
    with pytest.raises(TypeError, match="cannot be used as a boolean"):
        bool(x > y)
    with pytest.raises(NotImplementedError, match="Iterating over a symbolic KerasTensor"):
        list(x)
    keras = keras_or_none()
    if keras is None:
        return
    theirs = keras.saving.load_model(tmp_path / "ops.keras")   # Keras reads lamina's operators
    for g, w in zip(theirs.predict([a, b], verbose=0), want):
        np.testing.assert_allclose(np.asarray(g), w, rtol=1e-5, atol=1e-5)
    kx, ky = keras.Input((3, 4)), keras.Input((3, 4))
    keras.Model([kx, ky], _operator_outputs(kx, ky, keras.ops)).save(tmp_path / "keras_ops.keras")
    ours = lamina.saving.load_model(tmp_path / "keras_ops.keras")   # and lamina Keras's
    for g, w in zip(ours.predict([a, b], verbose=0), want):
        np.testing.assert_allclose(np.asarray(g), w, rtol=1e-5, atol=1e-5)
