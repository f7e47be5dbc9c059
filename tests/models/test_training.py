"""Models trained to a threshold on small generated problems, through compile/fit/evaluate/predict."""
import numpy as np
import pytest

import lamina
from lamina import layers


def _blobs(n=400, seed=0, classes=3, dim=2):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((classes, dim)) * 4
    y = rng.integers(0, classes, n)
    x = (centers[y] + rng.standard_normal((n, dim))).astype(np.float32)
    return x, y.astype(np.int64)


def test_xor_with_sequential():
    lamina.utils.set_random_seed(1)
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    y = np.array([[0], [1], [1], [0]], np.float32)
    model = lamina.Sequential([lamina.Input(shape=(2,)), layers.Dense(16, activation="tanh"),
                               layers.Dense(1, activation="sigmoid")])
    model.compile(optimizer=lamina.optimizers.Adam(0.05), loss="binary_crossentropy", metrics=["accuracy"])
    hist = model.fit(x, y, epochs=200, batch_size=4, verbose=0)
    assert hist.history["loss"][-1] < 0.1
    assert model.evaluate(x, y, verbose=0)[1] == 1.0
    np.testing.assert_array_equal(model.predict(x, verbose=0).round(), y)


def test_blobs_functional_sparse_labels():
    x, y = _blobs()
    inp = lamina.Input(shape=(2,))
    h = layers.Dense(16, activation="relu")(inp)
    out = layers.Dense(3, activation="softmax")(h)
    model = lamina.Model(inp, out)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    hist = model.fit(x, y, epochs=30, batch_size=32, verbose=0, validation_split=0.2)
    assert hist.history["val_accuracy"][-1] > 0.9
    assert set(hist.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}


def test_one_hot_labels_and_logits():
    x, y = _blobs(seed=2)
    model = lamina.Sequential([layers.Dense(16, activation="relu"), layers.Dense(3)])
    model.compile(optimizer="adam", loss=lamina.losses.CategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, lamina.utils.to_categorical(y, 3), epochs=30, batch_size=32, verbose=0)
    loss, acc = model.evaluate(x, lamina.utils.to_categorical(y, 3), verbose=0)
    assert acc > 0.9


def test_generator_input_and_steps_per_epoch():
    x, y = _blobs(seed=3)

    def gen():
        while True:
            for i in range(0, len(x), 50):
                yield x[i:i + 50], y[i:i + 50]
    model = lamina.Sequential([lamina.Input(shape=(2,)), layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    hist = model.fit(gen(), steps_per_epoch=8, epochs=3, verbose=0)
    assert len(hist.history["loss"]) == 3


def test_sample_and_class_weights_change_the_loss():
    x, y = _blobs(n=64, seed=4)
    model = lamina.Sequential([lamina.Input(shape=(2,)), layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    base = model.test_on_batch(x, y)
    sw = np.where(y == 0, 2.0, 0.0).astype(np.float32)
    weighted = model.test_on_batch(x, y, sample_weight=sw)
    per = lamina.losses.sparse_categorical_crossentropy(y, model.predict(x, verbose=0)).numpy()
    assert weighted == pytest.approx(float((per * sw).sum() / len(y)), rel=1e-5)
    assert base == pytest.approx(float(per.mean()), rel=1e-5)


def test_bad_inputs_to_fit():
    model = lamina.Sequential([lamina.Input(shape=(3,)), layers.Dense(1)])
    with pytest.raises(RuntimeError, match="compile"):
        model.fit(np.zeros((4, 3)), np.zeros((4, 1)))
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(ValueError, match="cardinality.*x sizes: 4.*y sizes: 5"):
        model.fit(np.zeros((4, 3)), np.zeros((5, 1)), verbose=0)
    with pytest.raises(ValueError, match=r"\(None, 3\).*\(4, 2\)|expected.*3"):
        model.fit(np.zeros((4, 2)), np.zeros((4, 1)), verbose=0)
    with pytest.raises(ValueError, match="Unknown loss"):
        model.compile(optimizer="sgd", loss="msee")
    with pytest.raises(ValueError, match="Unknown optimizer"):
        model.compile(optimizer="sgdd", loss="mse")


def test_multi_input_multi_output_shared_layer():
    rng = np.random.default_rng(5)
    a_in, b_in = lamina.Input(shape=(4,), name="a"), lamina.Input(shape=(4,), name="b")
    shared = layers.Dense(8, activation="tanh")
    ha, hb = shared(a_in), shared(b_in)
    out1 = layers.Dense(1, name="sum_out")(ha + hb)
    out2 = layers.Dense(1, name="diff_out")(ha - hb)
    model = lamina.Model([a_in, b_in], [out1, out2])
    assert len(shared._inbound_nodes) == 2
    xa, xb = rng.standard_normal((64, 4)).astype(np.float32), rng.standard_normal((64, 4)).astype(np.float32)
    ya, yb = xa.sum(1, keepdims=True) + xb.sum(1, keepdims=True), xa.sum(1, keepdims=True) - xb.sum(1, keepdims=True)
    model.compile(optimizer=lamina.optimizers.Adam(0.02), loss=["mse", "mse"], loss_weights=[1.0, 0.5])
    hist = model.fit([xa, xb], [ya, yb], epochs=40, batch_size=16, verbose=0)
    assert hist.history["loss"][-1] < hist.history["loss"][0] * 0.2
    assert {"sum_out_loss", "diff_out_loss"} <= set(hist.history)
    p1, p2 = model.predict([xa, xb], verbose=0)
    assert p1.shape == (64, 1) and p2.shape == (64, 1)


def test_output_without_a_loss_takes_no_target():
    """Keras's `loss=[fn, None]` (the miniature-GPT example): one y for a model of two outputs goes
    to the output that has a loss; the other is returned but not trained on, has no "_loss" log,
    and a metric on it is an error."""
    x, y = _blobs(n=128)
    lamina.utils.set_random_seed(0)
    inp = lamina.Input((2,))
    h = layers.Dense(16, activation="tanh", name="hidden")(inp)
    out = layers.Dense(3, name="logits")(h)
    model = lamina.Model(inp, [out, h])
    loss = lamina.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile(lamina.optimizers.Adam(0.05), loss=[loss, None], metrics=[["accuracy"], None])
    hist = model.fit(x, y, epochs=15, batch_size=32, verbose=0)
    assert sorted(hist.history) == ["logits_accuracy", "loss"]
    assert hist.history["loss"][-1] < hist.history["loss"][0] * 0.6 and hist.history["logits_accuracy"][-1] > 0.8
    logits, hidden = model.predict(x, verbose=0)
    np.testing.assert_allclose(model.evaluate(x, y, verbose=0)[0],
                               float(loss(y, logits)), rtol=1e-5)
    assert hidden.shape == (128, 16)
    # the loss on the second output: the one target goes there
    model2 = lamina.Model(inp, [h, out])
    model2.compile("sgd", loss=[None, loss])
    model2.fit(x, y, epochs=1, verbose=0)
    # as many targets as outputs still works, the extra one ignored; a wrong count says what to give
    model.compile("sgd", loss=[loss, None])
    model.fit(x, [y, np.zeros((128, 16), np.float32)], epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"2 output\(s\).*3 target array\(s\).*one per output that has a loss"):
        model.fit(x, [y, y, y], epochs=1, verbose=0)
    model.compile("sgd", loss=[loss, None], metrics=[None, ["mae"]])
    with pytest.raises(ValueError, match=r"metric 'mae' is given for output 'hidden', which has no target"):
        model.fit(x, y, epochs=1, verbose=0)


def test_nested_model_and_layer_output_reuse():
    enc_in = lamina.Input(shape=(6,))
    code = layers.Dense(3, name="code")(enc_in)
    encoder = lamina.Model(enc_in, code)
    inp = lamina.Input(shape=(6,))
    out = layers.Dense(6)(encoder(inp))
    auto = lamina.Model(inp, out)
    x = np.random.default_rng(6).standard_normal((5, 6)).astype(np.float32)
    np.testing.assert_allclose(encoder.predict(x, verbose=0), auto.layers[1](x).numpy(), atol=1e-6)
    # a layer's output can start a new model (the encoder/decoder inference recipe)
    sub = lamina.Model(enc_in, encoder.get_layer("code").output)
    np.testing.assert_allclose(sub.predict(x, verbose=0), encoder.predict(x, verbose=0), atol=1e-6)


def test_subclassed_model():
    class MLP(lamina.Model):
        def __init__(self):
            super().__init__()
            self.h = layers.Dense(8, activation="relu")
            self.o = layers.Dense(1)

        def call(self, x):
            return self.o(self.h(x))
    m = MLP()
    x = np.random.default_rng(7).standard_normal((32, 3)).astype(np.float32)
    y = x.sum(1, keepdims=True)
    m.compile(optimizer=lamina.optimizers.Adam(0.05), loss="mse")
    hist = m.fit(x, y, epochs=30, batch_size=8, verbose=0)
    assert len(m.trainable_weights) == 4
    assert hist.history["loss"][-1] < hist.history["loss"][0] * 0.2


def test_sequential_add_pop_and_summary(capsys):
    m = lamina.Sequential()
    m.add(lamina.Input(shape=(4,)))
    m.add(layers.Dense(3, name="d1"))
    m.add(layers.Dense(2, name="d2"))
    assert m.output_shape == (None, 2)
    m.pop()
    assert m.output_shape == (None, 3) and [l.name for l in m.layers] == ["d1"]
    m.summary()
    out = capsys.readouterr().out
    assert "d1 (Dense)" in out and "(None, 3)" in out and "Total params: 15" in out


def test_verbose_modes(capsys):
    x, y = _blobs(n=64, seed=8)
    m = lamina.Sequential([lamina.Input(shape=(2,)), layers.Dense(3, activation="softmax")])
    m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    m.fit(x, y, epochs=2, verbose=2)
    out = capsys.readouterr().out
    assert out.count("Epoch ") == 2 and "loss:" in out and "accuracy:" in out
    m.fit(x, y, epochs=1, verbose=0)
    assert capsys.readouterr().out == ""


def test_tiny_image_task_with_a_convnet():
    """A Conv2D / pooling / Dense model learns which of 4 quadrants of an 8x8 image is lit."""
    rng = np.random.default_rng(9)
    n = 256
    y = rng.integers(0, 4, n)
    x = rng.random((n, 8, 8, 1)).astype(np.float32) * 0.3
    for i, q in enumerate(y):
        r, c = divmod(int(q), 2)
        x[i, 4 * r:4 * r + 4, 4 * c:4 * c + 4, 0] += 0.7
    lamina.utils.set_random_seed(3)
    model = lamina.Sequential([lamina.Input(shape=(8, 8, 1)), layers.Conv2D(4, 3, padding="same", activation="relu"),
                               layers.MaxPooling2D(2), layers.BatchNormalization(), layers.Flatten(),
                               layers.Dense(4, activation="softmax")])
    model.compile(optimizer=lamina.optimizers.Adam(0.01), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    model.fit(x[:192], y[:192], epochs=15, batch_size=32, verbose=0)
    assert model.evaluate(x[192:], y[192:], verbose=0)[1] > 0.9


# ---- Keras's training contract: step signatures, custom steps, metrics, verbose lines ---------------

from keras_ref import keras_or_none  # noqa: E402
from lamina import ops  # noqa: E402


MAE = "mae"  # the name Keras gives metrics=["mae"]


def _regression(n=64, seed=10):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 5)).astype(np.float32)
    return x, (x @ rng.standard_normal((5, 1))).astype(np.float32)


def _weights(seed=11):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((5, 1)).astype(np.float32), np.zeros(1, np.float32)]


class GuideModel(lamina.Model):
    """Keras 3's "customizing what happens in fit()" train_step, word for word but the tape."""

    def train_step(self, data):
        x, y = data
        with lamina.GradientTape() as tape:
            y_pred = self(x, training=True)
            loss = self.compute_loss(y=y, y_pred=y_pred)
        trainable_vars = self.trainable_variables
        gradients = tape.gradient(loss, trainable_vars)
        self.optimizer.apply(gradients, trainable_vars)
        for metric in self.metrics:
            if metric.name == "loss":
                metric.update_state(loss)
            else:
                metric.update_state(y, y_pred)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        x, y = data
        y_pred = self(x, training=False)
        loss = self.compute_loss(y=y, y_pred=y_pred)
        for metric in self.metrics:
            if metric.name != "loss":
                metric.update_state(y, y_pred)
        return {"loss": float(loss), **{m.name: m.result() for m in self.metrics if m.name != "loss"}}


def _functional(cls):
    inp = lamina.Input(shape=(5,))
    model = cls(inp, layers.Dense(1)(inp))
    model.set_weights(_weights())
    return model


def test_custom_train_step_from_the_keras_guide():
    x, y = _regression()
    ref = _functional(lamina.Model)
    ref.compile(optimizer=lamina.optimizers.SGD(0.05), loss="mse", metrics=["mae"])
    want = ref.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0).history
    model = _functional(GuideModel)
    assert isinstance(model, GuideModel) and model.output_shape == (None, 1)
    model.compile(optimizer=lamina.optimizers.SGD(0.05), loss="mse", metrics=["mae"])
    assert [m.name for m in model.metrics] == ["loss", "compile_metrics"]
    got = model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0).history
    assert set(got) == set(want) == {"loss", MAE}
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5)
    assert model.metrics_names == ref.metrics_names == ["loss", MAE]
    # test_step returns a float: the last batch's loss (one batch here), as Keras would
    loss, mae = model.evaluate(x, y, batch_size=64, verbose=0)
    assert [loss, mae] == pytest.approx(ref.evaluate(x, y, batch_size=64, verbose=0), rel=1e-5)



def test_a_step_in_kerass_stateless_jax_form_is_refused_with_what_to_write():
    """train_step(self, state, data) (Keras 3's JAX guide) cannot run here: fit, evaluate, predict and
    the *_on_batch methods say so, before any batch, instead of failing inside the loop."""
    x, y = _regression()

    class JaxStyle(lamina.Model):
        def train_step(self, state, data):
            raise AssertionError("not called")

        def test_step(self, state, data):
            raise AssertionError("not called")

        def predict_step(self, state, data):
            raise AssertionError("not called")
    model = _functional(JaxStyle)
    model.compile(optimizer="sgd", loss="mse")
    cases = [("fit", "train_step", lambda: model.fit(x, y, verbose=0)),
             ("train_on_batch", "train_step", lambda: model.train_on_batch(x, y)),
             ("evaluate", "test_step", lambda: model.evaluate(x, y, verbose=0)),
             ("test_on_batch", "test_step", lambda: model.test_on_batch(x, y)),
             ("predict", "predict_step", lambda: model.predict(x, verbose=0)),
             ("predict_on_batch", "predict_step", lambda: model.predict_on_batch(x))]
    for api, step, call in cases:
        with pytest.raises(TypeError, match=rf"^{api}: JaxStyle\.{step}\(state, data\) is Keras 3's stateless JAX "
                                            rf"form.*Write `def {step}\(self, data\):`"):
            call()

    class NoData(lamina.Model):
        def test_step(self):
            return {}
    model = _functional(NoData)
    model.compile(optimizer="sgd", loss="mse")
    with pytest.raises(TypeError, match=r"evaluate: NoData\.test_step must take one argument, the batch \(data\).*"
                                        r"received the signature \(\)"):
        model.evaluate(x, y, verbose=0)
    # a step with optional extras, or *args, is called as before
    calls = []

    class Extras(lamina.Model):
        def test_step(self, data, *args, scale=1.0):
            calls.append(scale)
            return super().test_step(data)
    model = _functional(Extras)
    model.compile(optimizer="sgd", loss="mse")
    model.evaluate(x, y, batch_size=len(x), verbose=0)
    model.evaluate(x, y, batch_size=len(x), verbose=0)
    assert calls == [1.0, 1.0]

def test_custom_trackers_in_a_metrics_property():
    x, y = _regression()

    class TrackerModel(lamina.Model):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.loss_tracker = lamina.metrics.Mean(name="loss")
            self.mae_metric = lamina.metrics.MeanAbsoluteError(name="mae")
            self.loss_fn = lamina.losses.MeanSquaredError()

        def train_step(self, data):
            x, y = data
            with lamina.GradientTape() as tape:
                y_pred = self(x, training=True)
                loss = self.loss_fn(y, y_pred)
            self.optimizer.apply(tape.gradient(loss, self.trainable_variables), self.trainable_variables)
            self.loss_tracker.update_state(loss)
            self.mae_metric.update_state(y, y_pred)
            return {"loss": self.loss_tracker.result(), "mae": self.mae_metric.result()}

        @property
        def metrics(self):
            return [self.loss_tracker, self.mae_metric]
    model = _functional(TrackerModel)
    model.compile(optimizer=lamina.optimizers.SGD(0.05))  # no loss, no metrics
    h = model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0).history
    ref = _functional(lamina.Model)
    ref.compile(optimizer=lamina.optimizers.SGD(0.05), loss="mse", metrics=["mae"])
    want = ref.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0).history
    np.testing.assert_allclose(h["loss"], want["loss"], rtol=1e-5)
    np.testing.assert_allclose(h["mae"], want[MAE], rtol=1e-5)
    assert float(model.loss_tracker.count) == 4  # reset at each epoch start: one epoch's 4 batches


def test_keras2_style_compiled_loss_and_metrics_and_compute_metrics():
    x, y = _regression()
    sw = np.linspace(0.5, 1.5, len(x)).astype(np.float32)

    class Keras2Model(lamina.Model):
        def train_step(self, data):
            x, y, sample_weight = lamina.utils.unpack_x_y_sample_weight(data)
            with lamina.GradientTape() as tape:
                y_pred = self(x, training=True)
                loss = self.compiled_loss(y, y_pred, sample_weight, regularization_losses=self.losses)
            grads = tape.gradient(loss, self.trainable_variables)
            self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
            self.compiled_metrics.update_state(y, y_pred, sample_weight)
            return {m.name: m.result() for m in self.metrics}

    class MetricsModel(lamina.Model):
        def train_step(self, data):
            x, y, sample_weight = lamina.utils.unpack_x_y_sample_weight(data)
            with lamina.GradientTape() as tape:
                y_pred = self(x, training=True)
                loss = self.compute_loss(x, y, y_pred, sample_weight)
            self.optimizer.apply(tape.gradient(loss, self.trainable_variables), self.trainable_variables)
            for m in self.metrics:
                if m.name == "loss":
                    m.update_state(loss, sample_weight=len(x))
            return self.compute_metrics(x, y, y_pred, sample_weight)

    histories = []
    for cls in (lamina.Model, Keras2Model, MetricsModel):
        model = _functional(cls)
        model.compile(optimizer=lamina.optimizers.SGD(0.05), loss="mse", weighted_metrics=["mae"])
        histories.append(model.fit(x, y, sample_weight=sw, batch_size=16, epochs=2, shuffle=False,
                                   verbose=0).history)
    for h in histories[1:]:
        assert set(h) == set(histories[0])
        for k in h:
            np.testing.assert_allclose(h[k], histories[0][k], rtol=1e-5)


def test_steps_per_execution_groups_batch_hooks():
    x, y = _regression(n=64)
    calls = []

    class Record(lamina.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            calls.append(("begin", batch))

        def on_train_batch_end(self, batch, logs=None):
            calls.append(("end", batch, sorted(logs)))
    histories = []
    for spe in (1, 3):
        model = _functional(lamina.Model)
        model.compile(optimizer=lamina.optimizers.SGD(0.05), loss="mse", steps_per_execution=spe)
        calls.clear()
        histories.append(model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0,
                                   callbacks=[Record()]).history["loss"])
    assert calls == [("begin", 0), ("end", 2, ["loss"]), ("begin", 3), ("end", 5, ["loss"]),
                     ("begin", 6), ("end", 7, ["loss"])]
    assert histories[0] == pytest.approx(histories[1], rel=1e-6)
    assert model.get_compile_config()["steps_per_execution"] == 3
    with pytest.raises(ValueError, match="steps_per_execution"):
        model.compile(optimizer="sgd", loss="mse", steps_per_execution=0)
    keras = keras_or_none()
    if keras is None:
        return
    kcalls = []

    class KRecord(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            kcalls.append(("begin", batch))

        def on_train_batch_end(self, batch, logs=None):
            kcalls.append(("end", batch, sorted(logs)))
    k = keras.Sequential([keras.Input(shape=(5,)), keras.layers.Dense(1)])
    k.compile(optimizer="sgd", loss="mse", steps_per_execution=3)
    k.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0, callbacks=[KRecord()])
    # Keras numbers the end of a short last group as if it were full (8 for batches 6..7); lamina
    # gives the index of the last batch run
    assert kcalls[:-1] == calls[:-1] and kcalls[-1] == ("end", 8, ["loss"])


def _line(out):
    import re
    return [re.sub(r"\d+(ms|us|s)/step", "T/step", re.sub(r" - \d+s - ", " - Ns - ", line))
            for line in out.strip().splitlines()]


def test_verbose_2_lines_as_keras(capsys):
    x, y = _blobs(n=64, seed=8)
    w = [np.random.default_rng(3).standard_normal((2, 3)).astype(np.float32), np.zeros(3, np.float32)]

    def run(lib):
        m = lib.Sequential([lib.Input(shape=(2,)), lib.layers.Dense(3, activation="softmax")])
        m.set_weights(w)
        m.compile(optimizer=lib.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        capsys.readouterr()
        m.fit(x, y, epochs=2, batch_size=16, shuffle=False, verbose=2, validation_data=(x, y))
        fit_out = capsys.readouterr().out
        m.evaluate(x, y, batch_size=16, verbose=2)
        eval_out = capsys.readouterr().out
        m.fit(x, y, epochs=1, batch_size=16, verbose=2)
        one_epoch = capsys.readouterr().out
        return _line(fit_out), _line(eval_out), _line(one_epoch)
    fit_lines, eval_lines, one = run(lamina)
    assert fit_lines[0] == "Epoch 1/2" and fit_lines[2] == "Epoch 2/2"
    assert fit_lines[1].startswith("4/4 - Ns - T/step - accuracy: ") and " - val_loss: " in fit_lines[1]
    assert len(eval_lines) == 1 and eval_lines[0].startswith("4/4 - Ns - T/step - accuracy: ")
    assert len(one) == 1 and not one[0].startswith("Epoch")
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed: no reference output")
    k_fit, k_eval, k_one = run(keras)
    assert fit_lines == k_fit and eval_lines == k_eval


def test_evaluate_list_order_as_keras():
    rng = np.random.default_rng(12)
    x = rng.random((16, 3)).astype(np.float32)
    y = rng.random((16, 1)).astype(np.float32)
    ws = [rng.standard_normal((3, 1)).astype(np.float32), np.zeros(1, np.float32)] * 2

    def run(lib):
        i = lib.Input(shape=(3,))
        m = lib.Model(i, [lib.layers.Dense(1, name="zeta")(i), lib.layers.Dense(1, name="alpha")(i)])
        m.set_weights(ws)
        m.compile(optimizer="sgd", loss=["mse", "mae"], metrics=[["mae", "mse"], ["mse"]])
        return m.evaluate(x, [y, y], verbose=0), m.evaluate(x, [y, y], verbose=0, return_dict=True), m
    got, got_dict, m = run(lamina)
    assert m.metrics_names == ["loss", "zeta_loss", "alpha_loss", "alpha_mse", "zeta_mae", "zeta_mse"]
    assert got == [got_dict[k] for k in m.metrics_names]
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed: no reference run")
    want, want_dict, _ = run(keras)
    assert sorted(got_dict) == sorted(want_dict)
    np.testing.assert_allclose(got, want, rtol=1e-5)


def test_fit_resumes_from_the_epoch_a_callback_restored():
    """As Keras's fit: after the callbacks' on_train_begin, `model._initial_epoch` (set by
    BackupAndRestore when it restores a backup) is where the epochs start; it is taken once."""
    class Restored(lamina.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.model._initial_epoch = 2

    x, y = _blobs(n=32, seed=4)
    m = lamina.Sequential([lamina.Input(shape=(2,)), layers.Dense(3, activation="softmax")])
    m.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    assert m._initial_epoch is None
    seen = []
    epochs = lamina.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: seen.append(epoch))
    history = m.fit(x, y, epochs=4, verbose=0, callbacks=[Restored(), epochs])
    assert history.epoch == [2, 3] and seen == [2, 3] and len(history.history["loss"]) == 2
    assert m._initial_epoch is None
    assert m.fit(x, y, epochs=2, verbose=0).epoch == [0, 1]   # a later fit without a backup starts at 0
    assert m.fit(x, y, epochs=3, initial_epoch=1, verbose=0).epoch == [1, 2]


def test_supports_jit_and_jit_compile_are_reported_as_keras():
    # metadata only (lamina has no XLA): Keras's values, so scripts that read them run
    from lamina import layers as L
    assert L.Dense(2).supports_jit and L.RandomFlip().supports_jit
    assert not L.RandomCrop(4, 4).supports_jit and not L.RandomZoom(0.1).supports_jit
    assert not L.StringLookup().supports_jit and not L.Hashing(num_bins=3).supports_jit
    plain = lamina.Sequential([lamina.Input((3,)), L.Dense(2)])
    plain.compile(optimizer="sgd", loss="mse")
    assert plain.jit_compile is True
    plain.compile(optimizer="sgd", loss="mse", run_eagerly=True)
    assert plain.jit_compile is False
    aug = lamina.Sequential([lamina.Input((8, 8, 3)), L.RandomCrop(4, 4), L.Flatten(), L.Dense(2)])
    aug.compile(optimizer="sgd", loss="mse")
    assert aug.jit_compile is False
    with pytest.warns(UserWarning, match="doesn't support `jit_compile=True`"):
        aug.compile(optimizer="sgd", loss="mse", jit_compile=True)
    assert aug.jit_compile is False
