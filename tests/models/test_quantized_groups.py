"""A quantized Functional model runs its Conv / DepthwiseConv + BatchNormalization + capped ReLU
groups fused, with byte activations between them (models/qfusion.py), and its convolutions get a
data-free bias correction (layers/quantization.py): same results as the layers one by one, within
the precision of 8 bits, and the same files."""
import numpy as np
import pytest

import lamina
from lamina import layers


def _randomize_bn(model, rng):
    for l in model.layers:
        if isinstance(l, layers.BatchNormalization):
            c = l.moving_mean.shape[0]
            l.moving_mean.assign(rng.standard_normal(c).astype(np.float32) * 0.3)
            l.moving_variance.assign((rng.random(c) + 0.3).astype(np.float32))
            l.gamma.assign((rng.random(c) + 0.5).astype(np.float32))
            l.beta.assign((rng.random(c) * 0.8).astype(np.float32))


def _mobile(seed=0, two_outputs=False):
    """A small MobileNet-style graph: conv-BN-ReLU6, padded strided depthwise-BN-ReLU6,
    pointwise-BN-ReLU6, depthwise-BN-ReLU6, pointwise-BN-ReLU6, pooling, Dense."""
    lamina.utils.set_random_seed(seed)
    inp = lamina.Input((20, 20, 3))
    x = layers.Conv2D(8, 3, strides=2, padding="same", use_bias=False)(inp)
    x = layers.BatchNormalization()(x)
    a = layers.ReLU(6.0)(x)
    x = layers.ZeroPadding2D(((0, 1), (0, 1)))(a)
    x = layers.DepthwiseConv2D(3, strides=2, padding="valid", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU(6.0)(x)
    x = layers.Conv2D(16, 1, use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU(6.0)(x)
    x = layers.DepthwiseConv2D(3, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU(6.0)(x)
    x = layers.Conv2D(24, 1)(x)
    x = layers.BatchNormalization()(x)
    f = layers.ReLU(6.0)(x)
    out = layers.Dense(5)(layers.GlobalAveragePooling2D()(f))
    model = lamina.Model(inp, [out, a] if two_outputs else out)
    _randomize_bn(model, np.random.default_rng(seed))
    return model


def _unfused(model, x, **kw):
    """model(x) with its layers one by one (no fused groups)."""
    cls = type(model)
    name = "_quantized_graph" if hasattr(cls, "_quantized_graph") else "_quantized_groups"  # Sequential / Functional
    saved = getattr(cls, name)
    setattr(cls, name, lambda self: (None, None) if name == "_quantized_graph" else None)
    try:
        return model(x, **kw)
    finally:
        setattr(cls, name, saved)


def _rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


def test_groups_and_byte_activations_are_planned():
    model = _mobile()
    assert model._quantized_groups() is None   # nothing quantized yet
    model.quantize("int8")
    groups = list(model._quantized_groups().values())
    assert len(groups) == 5
    assert [len(g.nodes) for g in groups] == [3, 4, 3, 3, 3]  # the padding joins the strided depthwise
    assert [g.byte_out for g in groups] == [True, True, True, True, False]  # the last feeds the pooling
    two = _mobile(two_outputs=True)
    two.quantize("int8")
    assert not list(two._quantized_groups().values())[0].byte_out  # a model output stays float


def test_fused_results_match_the_layers_one_by_one_and_float():
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (6, 20, 20, 3)).astype(np.float32)
    model = _mobile()
    ref = np.asarray(model(x))
    model.quantize("int8")
    fused = np.asarray(model(x))
    one_by_one = np.asarray(_unfused(model, x))
    assert not np.array_equal(fused, one_by_one)  # two different paths ran
    assert _rel(fused, one_by_one) < 0.05
    assert _rel(fused, ref) < 0.06
    np.testing.assert_allclose(model.predict(x, verbose=0), fused, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.predict_on_batch(x), fused, rtol=1e-5, atol=1e-5)


def test_training_mode_and_masks_run_the_layers_one_by_one():
    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, (4, 20, 20, 3)).astype(np.float32)
    model = _mobile()
    model.quantize("int8")
    # training=True: BatchNormalization uses the batch's statistics, so no group may run fused
    np.testing.assert_allclose(model(x, training=True), _unfused(model, x, training=True), rtol=1e-6, atol=1e-6)


def test_nan_input_image_gives_nan_for_that_image_only():
    rng = np.random.default_rng(3)
    x = rng.uniform(-1, 1, (3, 20, 20, 3)).astype(np.float32)
    x[1, 5, 5, 0] = np.nan
    model = _mobile()
    model.quantize("int8")
    y = np.asarray(model(x))
    assert np.isnan(y[1]).all() and np.isfinite(y[[0, 2]]).all()


def test_bias_correction_follows_the_formula_and_survives_save_and_load(tmp_path):
    model = _mobile()
    dw = model.layers[5]
    bn = model.layers[2]
    assert isinstance(dw, layers.DepthwiseConv2D) and isinstance(bn, layers.BatchNormalization)
    w = dw.kernel.numpy().astype(np.float64)
    beta, gamma = bn.beta.numpy().astype(np.float64), np.abs(bn.gamma.numpy().astype(np.float64))
    from math import erf, exp, pi, sqrt
    cdf = np.vectorize(lambda z: 0.5 * (1 + erf(z / sqrt(2))))
    pdf = np.vectorize(lambda z: exp(-z * z / 2) / sqrt(2 * pi))
    a, b = -beta / gamma, (6 - beta) / gamma
    mean = beta * (cdf(b) - cdf(a)) + gamma * (pdf(a) - pdf(b)) + 6 * (1 - cdf(b))
    model.quantize("int8")
    q = dw.kernel.numpy().astype(np.float64) / dw.kernel_scale.numpy().astype(np.float64).reshape(1, 1, -1, 1)
    expected = -((q - w)[..., 0] * mean).sum(axis=(0, 1))
    assert dw.use_bias and dw.get_config()["use_bias"]
    np.testing.assert_allclose(dw.bias.numpy(), expected, rtol=1e-4, atol=1e-7)
    assert model.layers[1].bias is None  # the first convolution reads the input: no correction
    x = np.random.default_rng(4).uniform(-1, 1, (2, 20, 20, 3)).astype(np.float32)
    y = np.asarray(model(x))
    path = str(tmp_path / "q.keras")
    model.save(path)
    again = lamina.models.load_model(path)
    np.testing.assert_allclose(np.asarray(again(x)), y, rtol=1e-5, atol=1e-6)


def test_bias_correction_brings_the_quantized_model_closer_to_float():
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, (8, 20, 20, 3)).astype(np.float32)
    model = _mobile()
    ref = np.asarray(model(x))
    model.quantize("int8")
    corrected = _rel(_unfused(model, x), ref)
    plain = _mobile()
    from lamina.models import quantize as mq
    saved = mq._input_means
    mq._input_means = lambda m: {}
    try:
        plain.quantize("int8")
    finally:
        mq._input_means = saved
    assert corrected < _rel(_unfused(plain, x), ref)


def test_sequential_models_run_their_groups_fused_too():
    lamina.utils.set_random_seed(6)
    model = lamina.Sequential([lamina.Input((12, 12, 3)), layers.Conv2D(8, 3, activation="relu"),
                               layers.MaxPooling2D(2), layers.Conv2D(16, 1, use_bias=False),
                               layers.BatchNormalization(), layers.ReLU(6.0), layers.DepthwiseConv2D(3, padding="same"),
                               layers.BatchNormalization(), layers.ReLU(6.0), layers.GlobalAveragePooling2D(),
                               layers.Dense(4)])
    _randomize_bn(model, np.random.default_rng(6))
    x = np.random.default_rng(7).uniform(-1, 1, (5, 12, 12, 3)).astype(np.float32)
    ref = np.asarray(model(x))
    model.quantize("int8")
    groups = list(model._quantized_groups().values())
    assert [(g.kind, len(g.nodes), g.byte_out) for g in groups] == [("conv", 2, False), ("conv", 3, True),
                                                                     ("depthwise", 3, False)]  # 2: with its pooling
    fused = np.asarray(model(x))
    one_by_one = np.asarray(_unfused(model, x))
    assert not np.array_equal(fused, one_by_one)  # the two paths ran (bytes between groups differ in the last bits)
    assert _rel(fused, one_by_one) < 0.05 and _rel(fused, ref) < 0.06
    np.testing.assert_allclose(model.predict(x, verbose=0), fused, rtol=1e-5, atol=1e-5)


def _convnet(pool_kw=None, bn=False):
    """The Deep MNIST convnet's shape (small): conv-relu-maxpool twice, then Dense."""
    lamina.utils.set_random_seed(11)
    pool_kw = pool_kw or {}
    ls = [lamina.Input((14, 13, 1)), layers.Conv2D(8, 5, padding="same", activation="relu"),
          layers.MaxPooling2D(2, **pool_kw), layers.Conv2D(16, 3, padding="same", use_bias=not bn)]
    ls += [layers.BatchNormalization(), layers.ReLU()] if bn else [layers.ReLU()]
    ls += [layers.MaxPooling2D((2, 3)), layers.Flatten(), layers.Dense(10)]
    return lamina.Sequential(ls)


@pytest.mark.parametrize("bn", [False, True])
def test_max_pooling_after_a_conv_runs_in_its_group(bn):
    model = _convnet(bn=bn)
    _randomize_bn(model, np.random.default_rng(2))
    x = np.random.default_rng(3).random((6, 14, 13, 1)).astype(np.float32)
    x[4] = np.nan
    ref = np.asarray(model(x))
    model.quantize("int8")
    groups = list(model._quantized_groups().values())
    assert [(type(g.pool.layer).__name__ if g.pool else None, len(g.nodes)) for g in groups] == \
        [("MaxPooling2D", 2), ("MaxPooling2D", 4 if bn else 3)]
    assert groups[1].act is not None and (groups[1].bn is not None) == bn
    fused = np.asarray(model(x))
    one_by_one = np.asarray(_unfused(model, x))
    assert fused.shape == ref.shape == (6, 10)
    assert np.isnan(fused[4]).all() and np.isnan(one_by_one[4]).all()
    ok = [0, 1, 2, 3, 5]
    assert _rel(fused[ok], one_by_one[ok]) < 0.03 and _rel(fused[ok], ref[ok]) < 0.03
    np.testing.assert_allclose(model.predict(x, verbose=0), fused, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("pool_kw", [{"strides": 1}, {"padding": "same"}])
def test_a_max_pooling_the_kernel_cannot_take_runs_on_its_own(pool_kw):
    model = _convnet(pool_kw)
    x = np.random.default_rng(3).random((2, 14, 13, 1)).astype(np.float32)
    ref = np.asarray(model(x))
    model.quantize("int8")
    groups = list(model._quantized_groups().values())
    assert [g.pool is not None for g in groups] == [False, True]
    assert _rel(model(x), ref) < 0.03


def test_a_conv_output_read_elsewhere_is_not_pooled_in_its_group():
    lamina.utils.set_random_seed(4)
    inp = lamina.Input((10, 10, 3))
    y = layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    p = layers.MaxPooling2D(2)(y)
    out = layers.Concatenate()([layers.Flatten()(p), layers.Flatten()(y)])
    model = lamina.Model(inp, out)
    x = np.random.default_rng(5).random((2, 10, 10, 3)).astype(np.float32)
    ref = np.asarray(model(x))
    model.quantize("int8")
    assert [g.pool for g in model._quantized_groups().values()] == [None]
    assert _rel(model(x), ref) < 0.03


@pytest.mark.parametrize("case", range(24))
def test_random_geometries_agree_with_the_layers_one_by_one(case):
    """Sizes, channel counts (few channels share a vector), kernels, strides and paddings drawn at
    random: a wrong window or border would be far outside 8-bit error."""
    rng = np.random.default_rng(100 + case)
    H, W = int(rng.integers(5, 30)), int(rng.integers(5, 40))
    C = int(rng.choice([1, 2, 3, 4, 8, 16, 20]))
    k1, k2 = int(rng.choice([1, 2, 3, 5])), int(rng.choice([1, 3, 5]))
    s1, s2 = int(rng.choice([1, 2])), int(rng.choice([1, 2]))
    d1 = 2 if s1 == 1 and k1 > 1 and rng.random() < 0.3 else 1  # dilation (not with strides)
    d2 = 2 if s2 == 1 and k2 > 1 and rng.random() < 0.3 else 1
    pad1, pad2 = str(rng.choice(["same", "valid"])), str(rng.choice(["same", "valid"]))
    C2 = int(rng.choice([4, 8, 16, 24]))
    lamina.utils.set_random_seed(case)
    inp = lamina.Input((H, W, C))
    x = layers.Conv2D(C2, k1, strides=s1, padding=pad1, dilation_rate=d1, use_bias=False)(inp)
    x = layers.ReLU(6.0)(layers.BatchNormalization()(x))
    if rng.random() < 0.5:
        x = layers.ZeroPadding2D(((int(rng.integers(0, 2)), 1), (1, int(rng.integers(0, 2)))))(x)
        pad2 = "valid"
    x = layers.DepthwiseConv2D(k2, strides=s2, padding=pad2, dilation_rate=d2)(x)
    x = layers.ReLU(6.0)(layers.BatchNormalization()(x))
    x = layers.Conv2D(8, 1)(x)
    out = layers.ReLU()(layers.BatchNormalization()(x))
    model = lamina.Model(inp, out)
    _randomize_bn(model, rng)
    xs = rng.uniform(-1, 1, (3, H, W, C)).astype(np.float32)
    try:
        ref = np.asarray(model(xs))
    except ValueError as e:
        assert "spans" in str(e)
        pytest.skip("a window larger than its input with padding='valid'")
    model.quantize("int8")
    assert len(model._quantized_groups()) == 3
    fused = np.asarray(model(xs))
    assert fused.shape == ref.shape
    assert _rel(fused, np.asarray(_unfused(model, xs))) < 0.08
    assert _rel(fused, ref) < 0.1


def test_no_bias_correction_where_the_statistics_were_never_measured():
    """An untrained model's BatchNormalization still holds zeros and ones: the values reaching it
    can have any scale (here they shrink layer after layer), so no correction is made."""
    lamina.utils.set_random_seed(8)
    inp = lamina.Input((16, 16, 3))
    x = inp
    for _ in range(8):
        x = layers.Conv2D(16, 3, padding="same", use_bias=False)(x)
        x = layers.Activation("relu")(layers.BatchNormalization(scale=False)(x))
    model = lamina.Model(inp, layers.GlobalAveragePooling2D()(x))
    xs = np.random.default_rng(9).uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    ref = np.asarray(model(xs))
    model.quantize("int8")
    assert all(l.bias is None for l in model.layers if isinstance(l, layers.Conv2D))
    assert _rel(model(xs), ref) < 0.05


def test_nan_marks_do_not_outlive_their_call_in_replayed_predicts():
    model = _mobile()
    model.quantize("int8")
    rng = np.random.default_rng(10)
    clean = rng.uniform(-1, 1, (2, 20, 20, 3)).astype(np.float32)
    bad = clean.copy()
    bad[0, 3, 3, 1] = np.nan
    for _ in range(5):  # predict_on_batch records the call, then replays it
        assert np.isfinite(model.predict_on_batch(clean)).all()
        y = model.predict_on_batch(bad)
        assert np.isnan(y[0]).all() and np.isfinite(y[1]).all()
    assert np.isfinite(model.predict_on_batch(clean)).all()
