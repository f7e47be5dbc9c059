"""Model.export(format="onnx") (models/export_onnx.py): ONNX Runtime's outputs equal lamina's
predict at two batch sizes, onnx.checker passes, and bad calls fail clearly without writing."""
import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import lamina  # noqa: E402
from lamina import layers as L  # noqa: E402

RNG = np.random.default_rng(0)


def _randomize_stats(model):
    """Non-trivial BatchNormalization moving statistics (and betas), so that inference mode shows."""
    for layer in _all_layers(model):
        if isinstance(layer, L.BatchNormalization):
            c = layer.moving_mean.shape
            layer.moving_mean.assign(RNG.normal(size=c).astype("float32"))
            layer.moving_variance.assign(RNG.uniform(0.5, 2.0, size=c).astype("float32"))
            layer.gamma.assign(RNG.uniform(0.5, 1.5, size=c).astype("float32"))
            layer.beta.assign(RNG.normal(size=c).astype("float32"))


def _all_layers(model):
    for layer in model.layers:
        if isinstance(layer, lamina.Model):
            yield from _all_layers(layer)
        yield layer


def _float(shape):
    return lambda n: RNG.normal(size=(n,) + tuple(shape)).astype("float32")


def _check(model, makers, tmp_path, batches=(3, 7), opset_version=None, **kw):
    """Exports `model`, checks the file and compares ONNX Runtime with predict at each batch size."""
    _randomize_stats(model)
    path = str(tmp_path / f"{model.name}.onnx")
    extra = {} if opset_version is None else {"opset_version": opset_version}
    model.export(path, format="onnx", verbose=False, **extra, **kw)
    proto = onnx.load(path)
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == [t.name for t in model.inputs]
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    makers = makers if isinstance(makers, list) else [makers]
    for n in batches:
        xs = [mk(n) for mk in makers]
        want = model.predict(xs if len(xs) > 1 else xs[0], verbose=0, batch_size=64)
        want = want if isinstance(want, (list, tuple)) else [want]
        got = sess.run(None, {i.name: x for i, x in zip(sess.get_inputs(), xs)})
        assert len(got) == len(want)
        for g, w in zip(got, want):
            w = np.asarray(w)
            assert g.shape == w.shape and g.dtype == w.dtype, (g.shape, g.dtype, w.shape, w.dtype)
            if w.dtype == bool or w.dtype.kind in "iu":
                np.testing.assert_array_equal(g, w)
                continue
            scale = max(1.0, float(np.abs(w).max()))
            np.testing.assert_allclose(g, w, rtol=0, atol=1e-5 * scale)
    return proto


def test_mlp(tmp_path):
    m = lamina.Sequential([lamina.Input((12,), name="features"), L.Dense(32, activation="relu"), L.Dropout(0.5),
                           L.Dense(16, activation="tanh"), L.Dense(5, activation="softmax", name="probs")])
    proto = _check(m, _float((12,)), tmp_path)
    assert [o.name for o in proto.graph.output] == ["probs"]
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and dims[1].dim_value == 12
    assert proto.opset_import[0].version == 17


@pytest.mark.parametrize("act", ["relu", "relu6", "sigmoid", "tanh", "softmax", "gelu", "swish", "silu", "elu",
                                 "selu", "softplus", "softsign", "leaky_relu", "hard_sigmoid", "linear",
                                 "exponential", "log_softmax", "hard_silu", "mish", "log_sigmoid", "hard_tanh",
                                 "tanh_shrink", "celu"])
def test_activation_strings(tmp_path, act):
    x = lamina.Input((3, 6))
    y = L.Dense(6, activation=act)(x)   # a rank-3 Dense
    y = L.Activation(act)(y)
    m = lamina.Model(x, y)
    _check(m, lambda n: (3 * RNG.normal(size=(n, 3, 6))).astype("float32"), tmp_path)


def test_gelu_approximate_and_activation_layers(tmp_path):
    import functools
    x = lamina.Input((10,))
    a = L.Activation(functools.partial(lamina.activations.gelu, approximate=True))(x)
    b = L.ReLU(max_value=2.5, negative_slope=0.1, threshold=0.3)(x)
    c = L.ReLU(threshold=0.5)(x)
    d = L.ReLU(max_value=1.0)(x)
    e = L.LeakyReLU(negative_slope=0.05)(x)
    f = L.ELU(alpha=0.7)(x)
    p = L.PReLU(alpha_initializer="random_uniform")(x)
    s = L.Softmax(axis=-1)(x)
    y = L.Concatenate()([a, b, c, d, e, f, p, s])
    _check(lamina.Model(x, y), lambda n: (3 * RNG.normal(size=(n, 10))).astype("float32"), tmp_path)


def test_convnet(tmp_path):
    m = lamina.Sequential([
        lamina.Input((17, 15, 3)),
        L.Conv2D(8, 4, strides=2, padding="same", activation="relu"),     # even kernel: asymmetric "same"
        L.BatchNormalization(),
        L.Conv2D(8, 3, padding="valid", dilation_rate=2),
        L.Conv2D(8, (3, 2), padding="same", groups=2, activation="swish"),
        L.MaxPooling2D(3, strides=2, padding="same"),
        L.AveragePooling2D(2, padding="same"),                                # excludes the padding, as Keras
        L.Conv2D(6, 1),
        L.GlobalAveragePooling2D(),
        L.Dense(4),
    ])
    _check(m, _float((17, 15, 3)), tmp_path)


def test_convnet_flatten_pools(tmp_path):
    m = lamina.Sequential([
        lamina.Input((12, 12, 2)), L.Conv2D(4, 3, padding="same"), L.MaxPooling2D(), L.AveragePooling2D(3, 1),
        L.SpatialDropout2D(0.3), L.Flatten(), L.Dense(3)])
    _check(m, _float((12, 12, 2)), tmp_path)
    x = lamina.Input((9, 9, 4))
    y = L.GlobalMaxPooling2D(keepdims=True)(x)
    z = L.GlobalAveragePooling2D(keepdims=True)(x)
    _check(lamina.Model(x, [y, z]), _float((9, 9, 4)), tmp_path)


def test_dynamic_spatial_sizes_and_channels_first(tmp_path):
    x = lamina.Input((None, None, 3))
    y = L.Conv2D(4, 4, strides=2, padding="same")(x)                 # auto "same" padding (SAME_UPPER)
    y = L.Conv2D(4, 3, padding="same", dilation_rate=2)(y)            # stride 1: pads known
    y = L.MaxPooling2D(3, 2, padding="same")(y)
    y = L.AveragePooling2D(3, 2, padding="same")(y)
    y = L.DepthwiseConv2D(3, padding="same", strides=2)(y)
    y = L.UpSampling2D(2)(y)
    _check(lamina.Model(x, y), _float((13, 11, 3)), tmp_path)
    _check(lamina.Model(x, y), _float((8, 9, 3)), tmp_path, batches=(2,))
    x = lamina.Input((3, 10, 9))
    y = L.MaxPooling2D(3, 2, padding="same", data_format="channels_first")(x)
    y = L.AveragePooling2D(2, padding="same", data_format="channels_first")(y)
    y = L.DepthwiseConv2D(3, padding="same", data_format="channels_first", depth_multiplier=2)(y)
    y = L.SeparableConv2D(4, 2, padding="same", data_format="channels_first")(y)
    y = L.ZeroPadding2D(((1, 0), (2, 1)), data_format="channels_first")(y)
    y = L.Cropping2D(((1, 0), (0, 1)), data_format="channels_first")(y)
    y = L.UpSampling2D(2, data_format="channels_first", interpolation="bilinear")(y)
    z = L.GlobalAveragePooling2D(data_format="channels_first")(y)
    y = L.Flatten(data_format="channels_first")(y)
    _check(lamina.Model(x, [y, z]), _float((3, 10, 9)), tmp_path)


def test_depthwise_and_separable(tmp_path):
    m = lamina.Sequential([
        lamina.Input((13, 11, 3)),
        L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", strides=2, activation="relu6"),
        L.DepthwiseConv2D(2, dilation_rate=2),
        L.SeparableConv2D(5, 3, depth_multiplier=2, padding="same", activation="relu"),
        L.SeparableConv2D(4, 2, strides=2, use_bias=False),
        L.GlobalMaxPooling2D(),
    ])
    _check(m, _float((13, 11, 3)), tmp_path)


def test_conv_transpose(tmp_path):
    x = lamina.Input((7, 6, 3))
    outs = [L.Conv2DTranspose(4, 3, strides=2, padding="same", activation="relu")(x),
            L.Conv2DTranspose(4, (4, 3), strides=(2, 3), padding="same")(x),
            L.Conv2DTranspose(4, 3, strides=2, padding="valid")(x),
            L.Conv2DTranspose(4, 2, strides=3, padding="valid")(x),     # stride above the kernel
            L.Conv2DTranspose(4, 3, strides=2, padding="same", output_padding=1)(x),
            L.Conv2DTranspose(4, 3, strides=2, padding="valid", output_padding=(1, 0))(x),
            L.Conv2DTranspose(2, 3, dilation_rate=2, padding="same", use_bias=False)(x)]
    _check(lamina.Model(x, outs), _float((7, 6, 3)), tmp_path)
    s = lamina.Input((9, 4))
    outs = [L.Conv1DTranspose(3, 4, strides=2, padding="same")(s), L.Conv1DTranspose(3, 3, strides=2)(s)]
    _check(lamina.Model(s, outs), _float((9, 4)), tmp_path)


def test_conv1d_text_model(tmp_path):
    m = lamina.Sequential([
        lamina.Input((20,), dtype="int32"),
        L.Embedding(50, 8),
        L.Conv1D(12, 3, padding="same", activation="relu"),
        L.Conv1D(12, 4, padding="causal", dilation_rate=2),
        L.Conv1D(10, 3, strides=2),
        L.MaxPooling1D(2, padding="same"),
        L.AveragePooling1D(2),
        L.DepthwiseConv1D(2, padding="same"),
        L.SeparableConv1D(6, 2),
        L.GlobalMaxPooling1D(),
        L.Dense(3, activation="sigmoid"),
    ])
    _check(m, lambda n: RNG.integers(0, 50, size=(n, 20)).astype("int32"), tmp_path)
    x = lamina.Input((7,))           # float ids, as lamina casts them
    y = L.GlobalAveragePooling1D()(L.Embedding(10, 4)(x))
    _check(lamina.Model(x, y), lambda n: RNG.integers(0, 10, size=(n, 7)).astype("float32"), tmp_path)


def test_functional_two_inputs_two_outputs(tmp_path):
    a = lamina.Input((6,), name="left")
    b = lamina.Input((6,), name="right")
    ha = L.Dense(8, activation="relu")(a)
    hb = L.Dense(8, activation="relu")(b)
    merged = L.Concatenate()([ha, hb])
    summed = L.Add()([ha, hb, L.Multiply()([ha, hb])])
    diff = L.Subtract()([ha, hb])
    avg = L.Average()([ha, hb, diff])
    mx = L.Maximum()([ha, hb])
    mn = L.Minimum()([avg, mx])
    out1 = L.Dense(3, activation="softmax", name="cls")(merged)
    out2 = L.Dense(1, name="reg")(L.Concatenate()([summed, mn]))
    m = lamina.Model([a, b], [out1, out2])
    proto = _check(m, [_float((6,)), _float((6,))], tmp_path)
    assert [o.name for o in proto.graph.output] == ["cls", "reg"]
    assert [i.name for i in proto.graph.input] == ["left", "right"]


def test_nested_sequential_and_shared_layer(tmp_path):
    inner = lamina.Sequential([lamina.Input((5,)), L.Dense(7, activation="elu"), L.Dense(4)], name="inner")
    shared = L.Dense(4, activation="tanh")
    x = lamina.Input((5,))
    y = inner(x)
    z = L.Add()([shared(y), shared(L.Dense(4)(x))])
    m = lamina.Model(x, z)
    proto = _check(m, _float((5,)), tmp_path)
    shared_weights = [t for t in proto.graph.initializer if t.name.startswith(shared.name + "/")]
    assert len(shared_weights) == 2   # kernel and bias once, for both calls


def test_layer_norm_gelu_softmax(tmp_path):
    x = lamina.Input((6, 10))
    h = L.LayerNormalization()(x)
    h = L.Dense(16, activation="gelu")(h)
    h = L.LayerNormalization(axis=[1, 2], center=False)(h)
    h = L.Dense(10)(h)
    s1 = L.Softmax()(h)
    s2 = L.Softmax(axis=[1, 2])(h)
    s3 = L.Activation("softmax")(h)
    _check(lamina.Model(x, [s1, s2, s3]), _float((6, 10)), tmp_path)


def test_normalization_and_rescaling(tmp_path):
    norm = L.Normalization()
    norm.adapt(RNG.normal(3.0, 2.0, size=(100, 4)).astype("float32"))
    x = lamina.Input((4,))
    y = norm(L.Rescaling(0.5, offset=-1.0)(x))
    z = L.Normalization(mean=[1.0, 2.0, 3.0, 4.0], variance=[1.0, 4.0, 0.0, 2.0], invert=True)(x)
    w = L.Rescaling([1.0, 2.0, 3.0, 4.0])(x)
    _check(lamina.Model(x, [y, z, w]), lambda n: RNG.normal(3.0, 2.0, size=(n, 4)).astype("float32"), tmp_path)
    xi = lamina.Input((5, 5, 3), dtype="int32")       # integer pixels: Rescaling casts them
    yi = L.Conv2D(2, 3)(L.Rescaling(1 / 255)(xi))
    _check(lamina.Model(xi, yi), lambda n: RNG.integers(0, 256, size=(n, 5, 5, 3)).astype("int32"), tmp_path)


def test_spatial_reshaping(tmp_path):
    x = lamina.Input((6, 5, 3))
    a = L.UpSampling2D((2, 3))(x)
    a = L.ZeroPadding2D(((1, 2), (0, 3)))(a)
    a = L.Cropping2D(((2, 1), (1, 0)))(a)
    b = L.UpSampling2D(2, interpolation="bilinear")(x)
    b = L.ZeroPadding2D(1)(b)
    b = L.Cropping2D(1)(b)
    _check(lamina.Model(x, [a, b]), _float((6, 5, 3)), tmp_path)
    s = lamina.Input((7, 4))
    c = L.UpSampling1D(3)(L.ZeroPadding1D((2, 1))(L.Cropping1D((1, 2))(s)))
    _check(lamina.Model(s, c), _float((7, 4)), tmp_path)
    v = lamina.Input((3, 4, 5, 2))
    d = L.UpSampling3D((1, 2, 3))(L.Cropping3D(((0, 1), (1, 1), (2, 0)))(L.ZeroPadding3D(((1, 0), (0, 2), (1, 1)))(v)))
    _check(lamina.Model(v, L.SpatialDropout3D(0.2)(d)), _float((3, 4, 5, 2)), tmp_path)


def test_reshape_permute_repeat(tmp_path):
    m = lamina.Sequential([lamina.Input((12,)), L.Dense(12), L.Reshape((3, 4)), L.Permute((2, 1)),
                           L.Reshape((-1,)), L.RepeatVector(3), L.GaussianNoise(0.5), L.Identity(), L.Flatten()])
    _check(m, _float((12,)), tmp_path)


def test_built_without_input_layer_and_opsets(tmp_path):
    m = lamina.Sequential([L.Dense(4, activation="relu"), L.Dense(2)])
    m.build((None, 3))
    _check(m, _float((3,)), tmp_path)
    x = lamina.Input((8, 8, 2))
    y = L.GlobalAveragePooling2D()(L.LayerNormalization()(L.Conv2D(3, 3)(x)))
    for opset in (18, 21):
        proto = _check(lamina.Model(x, y), _float((8, 8, 2)), tmp_path, opset_version=opset)
        assert proto.opset_import[0].version == opset


def test_input_signature(tmp_path):
    m = lamina.Sequential([lamina.Input((4,)), L.Dense(2)])
    proto = _check(m, _float((4,)), tmp_path, batches=(1,),
                   input_signature=[lamina.layers.InputSpec(shape=(1, 4))])
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    _check(m, _float((4,)), tmp_path, input_signature=[lamina.Input((4,))])
    _check(m, _float((4,)), tmp_path, input_signature=lamina.layers.InputSpec(shape=(None, 4), dtype="float32"))
    with pytest.raises(ValueError, match=r"incompatible with the model's input shape \(None, 4\)"):
        m.export(str(tmp_path / "x.onnx"), format="onnx", input_signature=[lamina.layers.InputSpec(shape=(None, 5))])
    with pytest.raises(ValueError, match="1 input"):
        m.export(str(tmp_path / "x.onnx"), format="onnx",
                 input_signature=[lamina.layers.InputSpec(shape=(None, 4))] * 2)
    with pytest.raises(ValueError, match="dtype 'int32'"):
        m.export(str(tmp_path / "x.onnx"), format="onnx",
                 input_signature=[lamina.layers.InputSpec(shape=(None, 4), dtype="int32")])
    with pytest.raises(TypeError, match="InputSpec"):
        m.export(str(tmp_path / "x.onnx"), format="onnx", input_signature=[(None, 4)])
    assert not os.path.exists(tmp_path / "x.onnx")


def test_verbose_prints_as_keras(tmp_path, capsys):
    m = lamina.Sequential([lamina.Input((2,)), L.Dense(1)])
    path = str(tmp_path / "m.onnx")
    m.export(path, format="onnx")
    assert capsys.readouterr().out == f"Saved artifact at '{path}'.\n"
    m.export(path, format="onnx", verbose=False)
    assert capsys.readouterr().out == ""


# ---- recurrent layers --------------------------------------------------------------------------

def _seq(shape, scale=1.0):
    return lambda n: (scale * RNG.normal(size=(n,) + tuple(shape))).astype("float32")


def _randomize_biases(model):
    """Non-zero recurrent biases (lamina starts them at zeros, except LSTM's forget gate)."""
    for layer in _all_layers(model):
        for sub in (getattr(layer, "forward_layer", None), getattr(layer, "backward_layer", None), layer):
            cell = getattr(sub, "cell", None)
            if cell is not None and getattr(cell, "bias", None) is not None:
                cell.bias.assign(RNG.normal(scale=0.5, size=cell.bias.shape).astype("float32"))


@pytest.mark.parametrize("cls", ["LSTM", "GRU", "GRU_v2", "SimpleRNN"])
def test_recurrent_layers(tmp_path, cls):
    kw = {"reset_after": False} if cls == "GRU_v2" else {}
    layer = getattr(L, cls.split("_")[0])
    x = lamina.Input((6, 5))
    outs = [layer(7, **kw)(x),
            layer(4, return_sequences=True, **kw)(x),
            layer(3, return_sequences=True, go_backwards=True, use_bias=False, **kw)(x),
            layer(3, go_backwards=True, **kw)(x)]
    m = lamina.Model(x, outs)
    _randomize_biases(m)
    _check(m, _seq((6, 5)), tmp_path)


@pytest.mark.parametrize("cls", ["LSTM", "GRU", "SimpleRNN"])
@pytest.mark.parametrize("acts", [("relu", "hard_sigmoid"), ("tanh", "hard_sigmoid"), ("softsign", "sigmoid"),
                                  ("linear", "sigmoid")])
def test_recurrent_activations(tmp_path, cls, acts):
    act, ract = acts
    kw = {} if cls == "SimpleRNN" else {"recurrent_activation": ract}
    x = lamina.Input((5, 4))
    y = getattr(L, cls)(6, activation=act, return_sequences=True, **kw)(x)
    z = getattr(L, cls)(3, activation=act, reset_after=False, **kw)(y) if cls == "GRU" else \
        getattr(L, cls)(3, activation=act, **kw)(y)
    m = lamina.Model(x, [y, z])
    _randomize_biases(m)
    _check(m, _seq((5, 4), 2.0), tmp_path)


def test_recurrent_return_state_and_sequential(tmp_path):
    x = lamina.Input((7, 3))
    seq, h, c = L.LSTM(5, return_sequences=True, return_state=True)(x)
    out, gh = L.GRU(4, return_state=True, go_backwards=True)(seq)
    last, sh = L.SimpleRNN(2, return_state=True)(x)
    m = lamina.Model(x, [seq, h, c, out, gh, L.Dense(2)(L.Concatenate()([h, c])), last, sh])
    _randomize_biases(m)
    _check(m, _seq((7, 3)), tmp_path)
    s = lamina.Sequential([lamina.Input((None, 4)), L.Dense(6), L.LSTM(8, return_sequences=True),
                           L.GRU(5), L.Dense(2, activation="softmax")])
    _randomize_biases(s)
    _check(s, _seq((9, 4)), tmp_path)
    _check(s, _seq((3, 4)), tmp_path, batches=(2,))   # the time axis is dynamic
    t = lamina.Sequential([lamina.Input((8,), dtype="int32"), L.Embedding(20, 6), L.GRU(4)])
    _check(t, lambda n: RNG.integers(0, 20, size=(n, 8)).astype("int32"), tmp_path)


@pytest.mark.parametrize("mode", ["concat", "sum", "mul", "ave", None])
def test_bidirectional(tmp_path, mode):
    x = lamina.Input((6, 4))
    a = L.Bidirectional(L.LSTM(5, return_sequences=True), merge_mode=mode)(x)
    b = L.Bidirectional(L.GRU(3), merge_mode=mode)(x)
    c = L.Bidirectional(L.SimpleRNN(3, return_sequences=True, go_backwards=True), merge_mode=mode)(x)
    outs = [t for o in (a, b, c) for t in (o if isinstance(o, list) else [o])]
    m = lamina.Model(x, outs)
    _randomize_biases(m)
    _check(m, _seq((6, 4)), tmp_path)


def test_bidirectional_return_state(tmp_path):
    x = lamina.Input((5, 3))
    out, fh, fc, bh, bc = L.Bidirectional(L.LSTM(4, return_state=True, return_sequences=True))(x)
    y, fgh, bgh = L.Bidirectional(L.GRU(2, return_state=True, reset_after=False), merge_mode="sum")(out)
    m = lamina.Model(x, [out, fh, fc, bh, bc, y, fgh, bgh])
    _randomize_biases(m)
    _check(m, _seq((5, 3)), tmp_path)


def test_recurrent_refusals(tmp_path):
    x = lamina.Input((4, 3))
    y = L.LSTM(2, activation="gelu")(x)
    with pytest.raises(NotImplementedError, match=r"LSTM 'lstm[^']*': activation='gelu' cannot be exported.*tanh"):
        lamina.Model(x, y).export(str(tmp_path / "m.onnx"), format="onnx")
    x = lamina.Input((4,), dtype="int32")
    y = L.LSTM(2)(L.Embedding(5, 3, mask_zero=True)(x))
    with pytest.raises(NotImplementedError, match="mask"):
        lamina.Model(x, y).export(str(tmp_path / "m.onnx"), format="onnx")
    x = lamina.Input((4, 3))
    h0 = lamina.Input((2,))
    y = L.GRU(2)([x, h0])
    with pytest.raises(NotImplementedError, match="initial states"):
        lamina.Model([x, h0], y).export(str(tmp_path / "m.onnx"), format="onnx")
    s = lamina.Sequential([lamina.Input(batch_shape=(2, 4, 3)), L.SimpleRNN(2, stateful=True)])
    with pytest.raises(NotImplementedError, match="stateful"):
        s.export(str(tmp_path / "m.onnx"), format="onnx")
    assert not (tmp_path / "m.onnx").exists()


# ---- attention, group / unit / RMS normalization -------------------------------------------------

def _randomize_attention_biases(model):
    for layer in _all_layers(model):
        if isinstance(layer, L.MultiHeadAttention):
            for w in layer.weights:
                if "bias" in w.name:
                    w.assign(RNG.normal(scale=0.3, size=w.shape).astype("float32"))


def test_multi_head_attention(tmp_path):
    x = lamina.Input((6, 8))
    c = lamina.Input((4, 5))
    a = L.MultiHeadAttention(2, 4)(x, x)                                              # self-attention
    b = L.MultiHeadAttention(3, 2, value_dim=5, use_bias=False)(x, x, use_causal_mask=True)
    d = L.MultiHeadAttention(2, 3)(x, c)                                              # cross-attention
    e = L.MultiHeadAttention(2, 3, value_dim=4, output_shape=7)(x, c, L.Dense(5)(c))   # a separate key
    f = L.MultiHeadAttention(1, 4, output_shape=(2, 3))(query=x, value=c, use_causal_mask=True)
    m = lamina.Model([x, c], [a, b, d, e, f])
    _randomize_attention_biases(m)
    _check(m, [_seq((6, 8)), _seq((4, 5))], tmp_path)
    y = lamina.Input((None, 8))                                                       # dynamic length
    z = L.LayerNormalization()(L.Add()([y, L.MultiHeadAttention(2, 4)(y, y, use_causal_mask=True)]))
    _check(lamina.Model(y, z), _seq((5, 8)), tmp_path)


def test_multi_head_attention_refusals(tmp_path):
    x = lamina.Input((6, 8))
    mask = lamina.Input((6, 6), dtype="bool")
    y = L.MultiHeadAttention(2, 4)(x, x, attention_mask=mask)
    with pytest.raises(NotImplementedError, match=r"MultiHeadAttention '[^']*' was called with \['attention_mask'\]"):
        lamina.Model([x, mask], y).export(str(tmp_path / "m.onnx"), format="onnx")
    i = lamina.Input((6,), dtype="int32")
    e = L.Embedding(10, 8, mask_zero=True)(i)
    with pytest.raises(NotImplementedError, match="mask"):
        lamina.Model(i, L.MultiHeadAttention(2, 4)(e, e)).export(str(tmp_path / "m.onnx"), format="onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_group_unit_rms_normalization(tmp_path):
    x = lamina.Input((5, 4, 6))
    a = L.GroupNormalization(groups=3)(x)
    b = L.GroupNormalization(groups=-1, center=False)(x)
    c = L.GroupNormalization(groups=2, axis=2, scale=False)(x)
    d = L.UnitNormalization()(x)
    e = L.UnitNormalization(axis=[1, 2])(x)
    f = L.RMSNormalization()(x)
    k = L.RMSNormalization(axis=[2, 3], epsilon=1e-3)(x)
    m = lamina.Model(x, [a, b, c, d, e, f, k])
    for layer in m.layers:
        for w in layer.weights:
            w.assign(RNG.uniform(0.5, 1.5, size=w.shape).astype("float32"))
    _check(m, _seq((5, 4, 6), 3.0), tmp_path)
    s = lamina.Input((None, 8))
    _check(lamina.Model(s, L.GroupNormalization(groups=4)(s)), _seq((3, 8)), tmp_path)


# ---- errors ------------------------------------------------------------------------------------

def _mlp():
    return lamina.Sequential([lamina.Input((3,)), L.Dense(2)])


def test_default_and_other_formats_refused(tmp_path):
    m = _mlp()
    path = tmp_path / "m"
    with pytest.raises(NotImplementedError, match=r"format='tf_saved_model' \(Keras's default format\) needs "
                                                  r"TensorFlow.*format=\"onnx\""):
        m.export(str(path))
    for fmt, need in (("litert", "TensorFlow"), ("openvino", "OpenVINO"), ("torch", "PyTorch")):
        with pytest.raises(NotImplementedError, match=need):
            m.export(str(path), format=fmt)
    with pytest.raises(ValueError, match="unrecognized format='tflite'"):
        m.export(str(path), format="tflite")
    assert not path.exists()


def test_unknown_kwargs_and_bad_opset(tmp_path):
    m = _mlp()
    with pytest.raises(TypeError, match=r"unexpected keyword argument\(s\) \['is_static'\].*opset_version"):
        m.export(str(tmp_path / "m.onnx"), format="onnx", is_static=True)
    with pytest.raises(ValueError, match="opset_version must be an int from 17 to 21"):
        m.export(str(tmp_path / "m.onnx"), format="onnx", opset_version=11)
    assert not (tmp_path / "m.onnx").exists()


def test_unbuilt_model(tmp_path):
    m = lamina.Sequential([L.Dense(2)])
    with pytest.raises(ValueError, match="is not built.*lamina.Input"):
        m.export(str(tmp_path / "m.onnx"), format="onnx")


def test_unsupported_layer_writes_nothing(tmp_path):
    x = lamina.Input((5, 3))
    y = L.Dense(2)(L.RNN(L.LSTMCell(4))(x))
    m = lamina.Model(x, y)
    path = tmp_path / "m.onnx"
    path.write_bytes(b"previous")
    with pytest.raises(NotImplementedError, match=r"'rnn[^']*' \(RNN\).*nothing was written.*Conv2D.*Dense"):
        m.export(str(path), format="onnx")
    assert path.read_bytes() == b"previous"
    x = lamina.Input((4,))
    y = L.Activation(lambda t: t * 2)(x)
    with pytest.raises(NotImplementedError, match=r"\(Activation\)"):
        lamina.Model(x, y).export(str(tmp_path / "n.onnx"), format="onnx")
    assert not (tmp_path / "n.onnx").exists()


def test_masks_refused(tmp_path):
    x = lamina.Input((6,), dtype="int32")
    y = L.GlobalAveragePooling1D()(L.Embedding(10, 4, mask_zero=True)(x))
    with pytest.raises(NotImplementedError, match="mask"):
        lamina.Model(x, y).export(str(tmp_path / "m.onnx"), format="onnx")


def test_training_true_in_graph_refused(tmp_path):
    x = lamina.Input((4,))
    y = L.Dropout(0.5)(x, training=True)
    with pytest.raises(NotImplementedError, match="training=True"):
        lamina.Model(x, y).export(str(tmp_path / "m.onnx"), format="onnx")


def test_subclassed_model_refused(tmp_path):
    class MyModel(lamina.Model):
        def __init__(self):
            super().__init__()
            self.d = L.Dense(2)

        def call(self, x):
            return self.d(x)

    m = MyModel()
    m(np.zeros((1, 3), "float32"))
    with pytest.raises(NotImplementedError, match="subclassed model.*Sequential and Functional"):
        m.export(str(tmp_path / "m.onnx"), format="onnx")


def test_unwritable_path(tmp_path):
    m = _mlp()
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError, match="cannot write"):
        m.export(str(blocker / "m.onnx"), format="onnx", verbose=False)
    with pytest.raises(IsADirectoryError, match="is a folder"):
        m.export(str(tmp_path), format="onnx", verbose=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_missing_onnx_package(tmp_path, monkeypatch):
    import sys
    monkeypatch.setitem(sys.modules, "onnx", None)   # `import onnx` raises ImportError
    with pytest.raises(ImportError, match="pip install onnx"):
        _mlp().export(str(tmp_path / "m.onnx"), format="onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_strided_dilated_same_on_unknown_size_refused(tmp_path):
    x = lamina.Input((None, 8, 3))
    try:
        y = L.Conv2D(2, 3, strides=2, dilation_rate=2, padding="same")(x)
    except ValueError:
        pytest.skip("lamina refuses strides > 1 with dilation_rate > 1")
    with pytest.raises(NotImplementedError, match=r"Conv2D 'conv2d[^']*': padding='same' .*unknown spatial size"):
        lamina.Model(x, y).export(str(tmp_path / "m.onnx"), format="onnx")
    assert not (tmp_path / "m.onnx").exists()


# ---- op nodes: keras.ops calls and Python operators on symbolic tensors ------------------------------

from lamina import ops  # noqa: E402


def _ints(shape, lo, hi, exclude_zero=False):
    def make(n):
        v = RNG.integers(lo, hi, size=(n,) + tuple(shape))
        if exclude_zero:
            v = np.where(v == 0, 1, v)
        return v.astype("int32")
    return make


def test_ops_and_operators_mixed_with_layers(tmp_path):
    """Two inputs, float and bool outputs: arithmetic with Python constants (float32 stays float32),
    numpy constants, comparisons, logical ops, reductions, matmul, reshapes and activations as ops."""
    a = lamina.Input((4, 6), name="a")
    b = lamina.Input((6,), name="b")
    h = L.Dense(6)(a)
    y = (h + b[:, None, :]) * 0.5 - 2.0
    y = 2.0 - y
    y = y ** 2 + abs(-y) / 3.0 + ops.power(h, 3) + ops.true_divide(h, 4.0)
    y = ops.maximum(y, ops.exp(ops.minimum(h, 1.0))) + np.linspace(-1, 1, 6).astype("float32")
    y = L.LayerNormalization()(y)
    z = ops.mean(y, axis=1, keepdims=True) + ops.sum(h, axis=-1)[..., None] * ops.max(h, axis=(1, 2), keepdims=True)
    mm = ops.matmul(h, ops.transpose(h, (0, 2, 1))) @ np.eye(4, dtype="float32")
    c = ops.greater(y, 1.0) & (h < 0.5) | ops.logical_not(ops.equal(h, 0.0))
    c2 = ops.logical_xor(ops.less_equal(h, 0.1), ops.not_equal(h, 0.2)) ^ (h >= b[:, None, :]) | ~(h > 0)
    r = ops.concatenate([ops.reshape(y, (-1, 24)), ops.squeeze(ops.expand_dims(b, 1), axis=1),
                         round(h[:, 0, :] * 3), ops.round(-b)], axis=-1)
    s = ops.nn.softmax(ops.relu(h), axis=1) + ops.sigmoid(h) + ops.tanh(h) + ops.sqrt(ops.square(h)) + \
        ops.log(ops.square(h) + 1.0) + ops.softmax(h)
    s = L.Dense(3, name="head")(-s)
    k = ops.cast(h * 3, "int32") * 2 + 1 - ops.cast(h > 0, "int32")
    m = lamina.Model([a, b], [r, z, mm, c, c2, s, k, ops.min(y, axis=(1, 2)), ops.cast(h, "bool")], name="ops_mix")
    proto = _check(m, [_float((4, 6)), _float((6,))], tmp_path)
    types = [o.type.tensor_type.elem_type for o in proto.graph.output]
    assert types == [1, 1, 1, 9, 9, 1, 6, 1, 9]


def test_op_get_item(tmp_path):
    x = lamina.Input((5, 6, 4))
    outs = [x[:, 1], x[:, -1], x[:, ::2], x[:, ::-1], x[..., 1:4:2], x[:, None, 2:], x[:, -3:-1, ::-2],
            x[..., None], x[:, 1, ..., -1], x[:, :, 0], x[:, 4:0:-2, 1:], ops.get_item(x, (slice(None), 2, None)),
            x[...], x[:, -2], x[:, 3:100], x[:, :100:3, ::-3], x[:, -100:2]]
    m = lamina.Model(x, outs)
    _check(m, _float((5, 6, 4)), tmp_path)


def test_op_floor_divide_and_mod_negative(tmp_path):
    """numpy's semantics: the quotient rounds toward -inf, the remainder takes the divisor's sign;
    floats as numpy's divmod (1.0 // 0.1 is 9.0), integer division by zero 0 as lamina."""
    xf = lamina.Input((8,), name="xf")
    yf = lamina.Input((8,), name="yf")
    xi = lamina.Input((8,), dtype="int32", name="xi")
    yi = lamina.Input((8,), dtype="int32", name="yi")
    outs = [xf // yf, xf % yf, ops.floor_divide(xf, 0.1), ops.mod(xf, -0.3), xf // -2.5, 7.0 % yf, -7.0 // yf,
            xi // yi, xi % yi, xi // -3, xi % -3, ops.floor_divide(xi, 4), 7 % yi, -7 // yi]
    m = lamina.Model([xf, yf, xi, yi], outs)

    def divisors(n):
        return RNG.choice(np.float32([-3, -2.5, -1, -0.1, 0.1, 0.7, 1, 2]), size=(n, 8))
    proto = _check(m, [lambda n: (RNG.integers(-40, 40, size=(n, 8)) * 0.1).astype("float32"), divisors,
                       _ints((8,), -20, 20), _ints((8,), -4, 5)], tmp_path)
    assert [o.type.tensor_type.elem_type for o in proto.graph.output] == [1] * 7 + [6] * 7


def test_op_reductions_keepdims(tmp_path):
    x = lamina.Input((3, 4, 5))
    i = lamina.Input((3, 4), dtype="int32")
    outs = []
    for fn in (ops.mean, ops.sum, ops.max, ops.min):
        for axis in (1, -1, (1, 2), (2, 3), (-3, 3)):
            for keepdims in (False, True):
                outs.append(fn(x, axis=axis, keepdims=keepdims))
        outs.append(fn(i, axis=-1, keepdims=True))
    outs.append(ops.sum(x > 0, axis=2))   # bool summed: counts
    m = lamina.Model([x, i], outs)
    _check(m, [_float((3, 4, 5)), _ints((3, 4), -9, 9)], tmp_path)


def test_op_opset_21_and_shared_constants(tmp_path):
    """The same graph at the newest opset (reduction axes as inputs)."""
    x = lamina.Input((4, 3))
    y = ops.max(x * 2.0, axis=1, keepdims=True) - ops.mean(x, axis=1)[:, None] + ops.min(x, axis=1)[:, None]
    _check(lamina.Model(x, [y, ops.squeeze(x[:, :1])]), _float((4, 3)), tmp_path, opset_version=21)


def test_unsupported_ops_refused(tmp_path):
    x = lamina.Input((4,))
    path = tmp_path / "m.onnx"
    with pytest.raises(NotImplementedError, match=r"'sin[^']*' \(the op sin on symbolic tensors\).*nothing was "
                                                  r"written.*supported ops.*floor_divide.*get_item"):
        lamina.Model(x, ops.sin(x) + 1.0).export(str(path), format="onnx")
    with pytest.raises(NotImplementedError, match=r"op round: round with decimals=2 is not exported"):
        lamina.Model(x, ops.round(x, decimals=2)).export(str(path), format="onnx")
    with pytest.raises(NotImplementedError, match=r"op max: initial=0.0 is not exported"):
        lamina.Model(x, ops.max(x, axis=1, initial=0.0)).export(str(path), format="onnx")
    assert not path.exists()
    from lamina.models.export_onnx import supported_layers, supported_ops
    assert "SymbolicOp" not in supported_layers()
    assert {"add", "true_divide", "absolute", "get_item", "softmax", "cast", "mod"} <= set(supported_ops())


def test_a_model_with_quantized_attention_projections_is_refused(tmp_path):
    # model.quantize quantizes MultiHeadAttention's EinsumDense projections: the attention layer
    # itself is not quantized, but its int8 kernels must not be written as float weights
    x = lamina.Input((5, 8))
    y = L.MultiHeadAttention(num_heads=2, key_dim=4)(x, x)
    model = lamina.Model(x, y)
    model.quantize("int8")
    path = tmp_path / "m.onnx"
    with pytest.raises(NotImplementedError, match="MultiHeadAttention"):
        model.export(str(path), format="onnx")
    assert not path.exists()
