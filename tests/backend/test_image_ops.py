"""ops.image (backend/image.py, backend/resampling.py): values against numpy references and
Keras (JAX backend), gradients (adjoint identities for the linear samplers, finite differences
for the nonlinear ops), integer images, layouts, and the errors."""
import colorsys
import itertools

import numpy as np
import pytest

import lamina
from lamina import ops
from keras_ref import keras_or_none
from opcheck import check_grad

RNG = np.random.default_rng(5)
IMG = RNG.random((2, 7, 9, 3)).astype(np.float32)


def needs_keras():
    keras = keras_or_none()
    if keras is None:
        pytest.skip("Keras parity needs keras (tested with KERAS_BACKEND=jax)")
    return keras


# ---- numpy references -----------------------------------------------------------------------------------------

def _kernel(method, x):
    if method == "bilinear":
        return np.maximum(0, 1 - x)
    if method == "bicubic":
        return np.where(x < 1, (1.5 * x - 2.5) * x * x + 1, np.where(x < 2, ((-0.5 * x + 2.5) * x - 4) * x + 2, 0))
    r = 3.0 if method == "lanczos3" else 5.0
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(x > 1e-3, r * np.sin(np.pi * x) * np.sin(np.pi * x / r) / (np.pi * x) ** 2, 1)
    return np.where(x > r, 0, out)


def np_resize_axis(x, axis, n_out, method, antialias=False, scale=None, shift=0.0):
    """A dense float64 resampling matrix, as jax.image.scale_and_translate defines it."""
    n_in = x.shape[axis]
    if method == "nearest":
        return np.take(x, np.floor((np.arange(n_out) + 0.5) * n_in / n_out).astype(int), axis=axis)
    scale = n_out / n_in if scale is None else scale
    inv = 1 / scale
    sample = (np.arange(n_out) + 0.5) * inv - shift * inv - 0.5
    i = np.arange(n_in)[:, None]
    if method == "area":
        left = np.arange(n_out) * inv - shift * inv
        w = np.maximum(0, np.minimum(left + inv, i + 1) - np.maximum(left, i))
    else:
        w = _kernel(method, np.abs(sample - i) / (max(inv, 1) if antialias else 1))
    total = w.sum(0)
    w = np.where(np.abs(total) > 1e-4, w / np.where(total == 0, 1, total), 0)
    w = np.where((sample >= -0.5) & (sample <= n_in - 0.5), w, 0)
    return np.moveaxis(np.tensordot(x, w, axes=([axis], [0])), -1, axis)


def _fold(i, n, mode):
    if mode in ("nearest", "constant"):
        return min(max(i, 0), n - 1)
    if mode == "wrap":
        return i % n
    if mode == "reflect":            # d c b a | a b c d | d c b a: period 2n
        m = i % (2 * n)
        return m if m < n else 2 * n - 1 - m
    if n == 1:                       # mirror: d c b | a b c d | c b a: period 2n - 2
        return 0
    m = i % (2 * n - 2)
    return m if m < n else 2 * n - 2 - m


def np_map_coordinates(inp, coords, order, mode="constant", cval=0.0):
    inp, coords = np.asarray(inp, np.float64), np.asarray(coords, np.float64)
    out = []
    for p in coords.reshape(inp.ndim, -1).T:
        taps = []
        for c in p:
            if order == 0:
                taps.append([(int(np.sign(c) * np.floor(abs(c) + 0.5)), 1.0)])
            else:
                lo = int(np.floor(c))
                taps.append([(lo, 1 - (c - lo)), (lo + 1, c - lo)])
        total = 0.0
        for combo in itertools.product(*taps):
            valid = all(0 <= i < n for (i, _), n in zip(combo, inp.shape))
            idx = tuple(_fold(i, n, mode) for (i, _), n in zip(combo, inp.shape))
            value = cval if mode == "constant" and not valid else inp[idx]
            total += np.prod([w for _, w in combo]) * value
        out.append(total)
    return np.array(out).reshape(coords.shape[1:])


def np_affine(images, transform, order, mode, cval):
    b, h, w, c = images.shape
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    out = np.zeros(images.shape)
    for i in range(b):
        a0, a1, a2, b0, b1, b2, c0, c1 = transform[i]
        k = c0 * xs + c1 * ys + 1
        coords = np.stack([(b0 * xs + b1 * ys + b2) / k, (a0 * xs + a1 * ys + a2) / k])
        for ch in range(c):
            out[i, :, :, ch] = np_map_coordinates(images[i, :, :, ch], coords, order, mode, cval)
    return out


def np_patches(x, size, strides, dilation, padding):
    """Patches of a (b, *spatial, c) array by loops over the output positions."""
    n = len(size)
    spatial = x.shape[1:n + 1]
    outs, pads = [], []
    for s, k, st, d in zip(spatial, size, strides, dilation):
        span = (k - 1) * d + 1
        if padding == "valid":
            outs.append((s - span) // st + 1)
            pads.append((0, 0))
        else:
            o = -(-s // st)
            tot = max((o - 1) * st + span - s, 0)
            outs.append(o)
            pads.append((tot // 2, tot - tot // 2))
    x = np.pad(x, [(0, 0)] + pads + [(0, 0)])
    out = np.zeros((x.shape[0],) + tuple(outs) + (int(np.prod(size)) * x.shape[-1],), x.dtype)
    for pos in itertools.product(*[range(o) for o in outs]):
        window = x[(slice(None),) + tuple(slice(p * st, p * st + (k - 1) * d + 1, d)
                                          for p, st, k, d in zip(pos, strides, size, dilation))]
        out[(slice(None),) + pos] = window.reshape(x.shape[0], -1)
    return out


def np_filter(x, k_rows, k_cols, same=True):
    """NHWC images correlated with the outer product of two kernels, zero padding ("same") or
    whole windows only ("valid")."""
    kh, kw = len(k_rows), len(k_cols)
    if same:
        x = np.pad(x, ((0, 0), ((kh - 1) // 2, kh // 2), ((kw - 1) // 2, kw // 2), (0, 0)))
    k = np.outer(k_rows, k_cols)
    oh, ow = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    out = np.zeros((x.shape[0], oh, ow, x.shape[3]))
    for i in range(kh):
        for j in range(kw):
            out += k[i, j] * x[:, i:i + oh, j:j + ow, :]
    return out


def np_gauss(size, sigma):
    x = np.arange(size) - (size - 1) / 2
    g = np.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def np_ssim(a, b, max_val=1.0, size=11, sigma=1.5, k1=0.01, k2=0.03):
    g = np_gauss(size, sigma)
    mean = lambda t: np_filter(t, g, g, same=False)  # noqa: E731
    mu1, mu2 = mean(a), mean(b)
    s1, s2, s12 = mean(a * a) - mu1 ** 2, mean(b * b) - mu2 ** 2, mean(a * b) - mu1 * mu2
    c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
    m = (2 * mu1 * mu2 + c1) * (2 * s12 + c2) / ((mu1 ** 2 + mu2 ** 2 + c1) * (s1 + s2 + c2))
    return m.mean(axis=(1, 2, 3))


def adjoint_check(f, x, rng, rtol=2e-4):
    """The gradient of a linear op f is its adjoint: <grad of sum(f(x) * g), v> == <f(v), g> for
    random g and v."""
    xt = lamina.convert_to_tensor(x)
    with lamina.GradientTape() as tape:
        tape.watch(xt)
        y = f(xt)
        g = rng.standard_normal(y.shape).astype(np.float32)
        loss = ops.sum(y * g)
    grad = tape.gradient(loss, xt).numpy().astype(np.float64)
    for _ in range(2):
        v = rng.standard_normal(x.shape).astype(np.float32)
        lhs = float(np.sum(grad * v))
        rhs = float(np.sum(f(lamina.convert_to_tensor(v)).numpy().astype(np.float64) * g))
        assert lhs == pytest.approx(rhs, rel=rtol, abs=1e-3)


# ---- resize ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("method", ["bilinear", "nearest", "bicubic", "lanczos3", "lanczos5", "area"])
@pytest.mark.parametrize("antialias", [False, True])
def test_resize_against_numpy(method, antialias):
    for size in [(4, 5), (12, 20), (7, 4)]:
        want = np_resize_axis(np_resize_axis(IMG.astype(np.float64), 1, size[0], method, antialias), 2, size[1],
                              method, antialias)
        got = ops.image.resize(IMG, size, method, antialias=antialias).numpy()
        np.testing.assert_allclose(got, want, atol=2e-5, err_msg=f"{method} {size}")


def test_resize_layouts_dtypes_crop_and_pad():
    ref = ops.image.resize(IMG, (5, 6)).numpy()
    cf = ops.image.resize(IMG.transpose(0, 3, 1, 2), (5, 6), data_format="channels_first").numpy()
    np.testing.assert_allclose(cf, ref.transpose(0, 3, 1, 2), rtol=1e-6)
    np.testing.assert_allclose(ops.image.resize(IMG[1], (5, 6)).numpy(), ref[1], rtol=1e-6)
    np.testing.assert_array_equal(ops.image.resize(IMG, (7, 9)).numpy(), IMG)
    ints = (IMG * 300).astype(np.int32)
    out = ops.image.resize(ints, (5, 6))
    assert out.dtype == "int32"
    want = np.clip(np.round(ops.image.resize(ints.astype(np.float32), (5, 6)).numpy()), -2 ** 31, 2 ** 31 - 1)
    np.testing.assert_array_equal(out.numpy(), want)
    near = ops.image.resize(ints, (3, 13), "nearest")
    assert near.dtype == "int32"
    np.testing.assert_array_equal(near.numpy(), np_resize_axis(np_resize_axis(ints, 1, 3, "nearest"), 2, 13, "nearest"))
    crop = ops.image.resize(IMG, (3, 3), crop_to_aspect_ratio=True).numpy()
    np.testing.assert_allclose(crop, ops.image.resize(IMG[:, :, 1:8], (3, 3)).numpy(), rtol=1e-6)
    pad = ops.image.resize(IMG, (9, 9), pad_to_aspect_ratio=True, fill_value=-1.0).numpy()
    padded = np.pad(IMG, ((0, 0), (1, 1), (0, 0), (0, 0)), constant_values=-1.0)
    np.testing.assert_allclose(pad, ops.image.resize(padded, (9, 9)).numpy(), rtol=1e-6)


@pytest.mark.parametrize("method", ["bilinear", "bicubic", "lanczos3", "area", "nearest"])
def test_resize_gradient_is_the_adjoint(method):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 6, 7, 2)).astype(np.float32)
    adjoint_check(lambda t: ops.image.resize(t, (4, 11), method, antialias=True), x, rng)
    adjoint_check(lambda t: ops.image.resize(t, (3, 5), method, crop_to_aspect_ratio=True), x, rng)


def test_scale_and_translate_against_numpy():
    img = RNG.random((6, 8, 2)).astype(np.float32)
    for method, kernel in [("linear", "bilinear"), ("cubic", "bicubic"), ("lanczos3", "lanczos3")]:
        for antialias in (True, False):
            want = np_resize_axis(img.astype(np.float64), 0, 9, kernel, antialias, scale=1.6, shift=0.5)
            want = np_resize_axis(want, 1, 5, kernel, antialias, scale=0.6, shift=-1.0)
            got = ops.image.scale_and_translate(img, (9, 5, 2), [1.6, 0.6], lamina.convert_to_tensor([0.5, -1.0]),
                                                (0, 1), method, antialias)
            np.testing.assert_allclose(got.numpy(), want, atol=2e-5, err_msg=f"{method} {antialias}")
    # a whole-pixel translation shifts the image and fills zeros
    shifted = ops.image.scale_and_translate(img, (6, 8, 2), [1, 1], [2, 0], (0, 1), "linear").numpy()
    np.testing.assert_allclose(shifted[2:], img[:4], atol=1e-6)
    np.testing.assert_array_equal(shifted[:2], 0)
    rng = np.random.default_rng(2)
    adjoint_check(lambda t: ops.image.scale_and_translate(t, (9, 4, 2), [1.5, 0.5], [0.3, 0.0], [0, 1], "cubic"),
                  img, rng)


# ---- affine / perspective / map_coordinates ----------------------------------------------------------------------

TRANSFORMS = np.array([[1.13, 0.21, -1.37, -0.11, 0.93, 2.09, 0, 0],       # no sample exactly half-way between pixels
                       [0.71, -0.33, 2.47, 0.26, 1.19, -1.03, 0.021, -0.013]], np.float32)


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("fill_mode", ["constant", "nearest", "wrap", "mirror", "reflect"])
def test_affine_transform_against_numpy(interpolation, fill_mode):
    x = IMG[:, :5, :6, :2]
    want = np_affine(x.astype(np.float64), TRANSFORMS.astype(np.float64), int(interpolation == "bilinear"),
                     fill_mode, 0.3)
    got = ops.image.affine_transform(x, TRANSFORMS, interpolation, fill_mode, 0.3).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_affine_transform_layouts_broadcast_integers_and_gradient():
    t = TRANSFORMS[0]
    ref = ops.image.affine_transform(IMG, np.stack([t, t])).numpy()
    np.testing.assert_allclose(ops.image.affine_transform(IMG, t).numpy(), ref, rtol=1e-6)
    np.testing.assert_allclose(ops.image.affine_transform(IMG[0], t).numpy(), ref[0], rtol=1e-6)
    cf = ops.image.affine_transform(IMG.transpose(0, 3, 1, 2), t[None], data_format="channels_first").numpy()
    np.testing.assert_allclose(cf, ref.transpose(0, 3, 1, 2), rtol=1e-6)
    ints = (IMG * 100).astype(np.int32)
    out = ops.image.affine_transform(ints, t)
    exact = ops.image.affine_transform(ints.astype(np.float32), t).numpy()
    assert out.dtype == "int32"
    np.testing.assert_array_equal(out.numpy(), np.sign(exact) * np.floor(np.abs(exact) + 0.5))
    # k = c0 x + c1 y + 1 = 0 on the column x = 2: fill_value there
    proj = ops.image.affine_transform(IMG, [1, 0, 0, 0, 1, 0, -0.5, 0], fill_mode="nearest", fill_value=-7).numpy()
    np.testing.assert_array_equal(proj[:, :, 2], -7)
    rng = np.random.default_rng(3)
    for mode in ("constant", "reflect"):
        adjoint_check(lambda x: ops.image.affine_transform(x, TRANSFORMS, fill_mode=mode), IMG, rng)


def test_perspective_transform():
    start = np.array([[0, 0], [8, 0], [0, 6], [8, 6]], np.float32)
    # the same points: the identity
    np.testing.assert_allclose(ops.image.perspective_transform(IMG, start, start).numpy(), IMG, atol=1e-4)
    end = np.array([[1, 0], [7, 1], [0, 6], [8, 5]], np.float32)
    got = ops.image.perspective_transform(IMG, np.stack([start, end]), np.stack([end, start]), fill_value=0.5)
    a = np.zeros((8, 8))      # the homography, solved in float64
    for i, ((sx, sy), (ex, ey)) in enumerate(zip(start, end)):
        a[i] = [ex, ey, 1, 0, 0, 0, -sx * ex, -sx * ey]
        a[i + 4] = [0, 0, 0, ex, ey, 1, -sy * ex, -sy * ey]
    h0 = np.linalg.solve(a, np.concatenate([start[:, 0], start[:, 1]]))
    want0 = np_affine(IMG[:1].astype(np.float64), h0[None], 1, "constant", 0.5)
    np.testing.assert_allclose(got.numpy()[:1], want0, atol=1e-4)
    rng = np.random.default_rng(4)
    adjoint_check(lambda x: ops.image.perspective_transform(x, start, end), IMG, rng)


@pytest.mark.parametrize("order", [0, 1])
@pytest.mark.parametrize("fill_mode", ["constant", "nearest", "wrap", "mirror", "reflect"])
def test_map_coordinates_against_numpy(order, fill_mode):
    inp = RNG.random((5, 6, 4)).astype(np.float32)
    coords = (RNG.random((3, 7, 2)) * np.array([9, 10, 8])[:, None, None] - 2).astype(np.float32)
    want = np_map_coordinates(inp, coords, order, fill_mode, 0.7)
    np.testing.assert_allclose(ops.image.map_coordinates(inp, coords, order, fill_mode, 0.7).numpy(), want,
                               atol=1e-5)
    listed = ops.image.map_coordinates(inp, [coords[0], coords[1], coords[2]], order, fill_mode, 0.7)
    np.testing.assert_allclose(listed.numpy(), want, atol=1e-5)


def test_map_coordinates_integers_and_gradients():
    inp = np.arange(12, dtype=np.int32).reshape(3, 4)
    coords = np.array([[0.5, 1.25, -0.5], [1.5, 2.5, 0.0]], np.float32)
    out = ops.image.map_coordinates(inp, coords, 1, fill_value=-3.7)
    assert out.dtype == "int32"
    exact = np_map_coordinates(inp, coords, 1, "constant", -3)   # fill_value cast to the inputs' dtype first
    np.testing.assert_array_equal(out.numpy(), np.sign(exact) * np.floor(np.abs(exact) + 0.5))
    # gradients in the values and (linear order) the coordinates, away from the integer kinks
    x = RNG.random((4, 5)).astype(np.float32)
    c = np.array([[0.3, 1.6, 2.2, -0.4, 3.7], [0.2, 3.3, 1.7, 2.4, 4.6]], np.float32)
    for mode in ("constant", "reflect", "wrap"):
        check_grad(lambda a, b: ops.image.map_coordinates(a, b, 1, mode, 0.5),
                   lambda a, b: np_map_coordinates(a, b, 1, mode, 0.5), [x, c], atol=2e-3, rtol=2e-3)


# ---- patches, pad, crop --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("size,strides,dilation,padding", [
    ((3, 3), None, 1, "valid"), ((2, 3), (1, 2), 1, "same"), (3, 1, 2, "valid"), ((2, 2), (2, 1), (1, 2), "same")])
def test_extract_patches_against_numpy(size, strides, dilation, padding):
    sz = (size, size) if isinstance(size, int) else size
    st = sz if strides is None else ((strides,) * 2 if isinstance(strides, int) else strides)
    dl = (dilation,) * 2 if isinstance(dilation, int) else dilation
    want = np_patches(IMG, sz, st, dl, padding)
    np.testing.assert_array_equal(ops.image.extract_patches(IMG, size, strides, dilation, padding).numpy(), want)
    cf = ops.image.extract_patches(IMG.transpose(0, 3, 1, 2), size, strides, dilation, padding, "channels_first")
    np.testing.assert_array_equal(cf.numpy(), want.transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(ops.image.extract_patches(IMG[0], size, strides, dilation, padding).numpy(),
                                  want[0])


def test_extract_patches_3d_integers_and_gradient():
    vol = RNG.integers(0, 100, (2, 5, 6, 4, 2)).astype(np.int32)
    want = np_patches(vol, (2, 3, 2), (1, 2, 1), (1, 1, 1), "same")
    got = ops.image.extract_patches_3d(vol, (2, 3, 2), (1, 2, 1), padding="same")
    assert got.dtype == "int32"
    np.testing.assert_array_equal(got.numpy(), want)
    np.testing.assert_array_equal(ops.image.extract_patches(vol[0], (2, 3, 2), (1, 2, 1), padding="same").numpy(),
                                  want[0])
    np.testing.assert_array_equal(ops.image.extract_patches_3d(vol, 2).numpy(), np_patches(vol, (2,) * 3, (2,) * 3,
                                                                                             (1,) * 3, "valid"))
    rng = np.random.default_rng(5)
    adjoint_check(lambda x: ops.image.extract_patches(x, (3, 2), (1, 2), padding="same"), IMG, rng)


def test_pad_and_crop_images():
    got = ops.image.pad_images(IMG, 1, 2, target_height=12, right_padding=1).numpy()
    np.testing.assert_array_equal(got, np.pad(IMG, ((0, 0), (1, 4), (2, 1), (0, 0))))
    cf = ops.image.pad_images(IMG[0].transpose(2, 0, 1), bottom_padding=2, left_padding=0, target_height=10,
                              target_width=9, data_format="channels_first").numpy()
    np.testing.assert_array_equal(cf, np.pad(IMG[0].transpose(2, 0, 1), ((0, 0), (1, 2), (0, 0))))
    crop = ops.image.crop_images(IMG, 1, 2, target_height=5, right_cropping=1).numpy()
    np.testing.assert_array_equal(crop, IMG[:, 1:6, 2:8])
    crop = ops.image.crop_images(IMG[0], bottom_cropping=2, target_height=3, left_cropping=0, target_width=4).numpy()
    np.testing.assert_array_equal(crop, IMG[0, 2:5, 0:4])
    rng = np.random.default_rng(6)
    adjoint_check(lambda x: ops.image.crop_images(ops.image.pad_images(x, 1, 2, 3, 0), 2, 1, 0, 1), IMG, rng)


# ---- colour ---------------------------------------------------------------------------------------------------------

def test_color_conversions_against_colorsys():
    x = RNG.random((2, 4, 5, 3)).astype(np.float32)
    x[0, 0, 0] = [0.5, 0.5, 0.5]      # grey: hue and saturation 0
    x[0, 0, 1] = [0.0, 0.0, 0.0]
    hsv = ops.image.rgb_to_hsv(x).numpy()
    want = np.array([colorsys.rgb_to_hsv(*p) for p in x.reshape(-1, 3).astype(np.float64)]).reshape(x.shape)
    np.testing.assert_allclose(hsv, want, atol=1e-5)
    np.testing.assert_allclose(ops.image.hsv_to_rgb(hsv).numpy(), x, atol=1e-5)
    cf = ops.image.rgb_to_hsv(x.transpose(0, 3, 1, 2), data_format="channels_first").numpy()
    np.testing.assert_allclose(cf, hsv.transpose(0, 3, 1, 2), atol=1e-6)
    gray = ops.image.rgb_to_grayscale(x).numpy()
    np.testing.assert_allclose(gray, (x @ np.array([0.2989, 0.5870, 0.1140], np.float32))[..., None], atol=1e-6)
    ints = (x * 255).astype(np.int32)
    gi = ops.image.rgb_to_grayscale(ints[0])
    assert gi.dtype == "int32" and gi.shape == (4, 5, 1)
    np.testing.assert_array_equal(gi.numpy(), np.trunc(ints[0] @ np.array([0.2989, 0.5870, 0.1140]))[..., None])
    np.testing.assert_array_equal(ops.image.rgb_to_grayscale(gray).numpy(), gray)
    # gradients by finite differences, away from the hue's branch points (channels far apart: a
    # random draw, which depends on the tests run before, could put two of them within a step)
    y = np.array([[[[0.8, 0.4, 0.15], [0.3, 0.75, 0.5]], [[0.2, 0.35, 0.85], [0.9, 0.6, 0.3]]]], np.float32)
    np_hsv = lambda a: np.array([colorsys.rgb_to_hsv(*p) for p in a.reshape(-1, 3)]).reshape(a.shape)  # noqa: E731
    check_grad(ops.image.rgb_to_hsv, np_hsv, [y], atol=2e-3, rtol=2e-3)
    np_rgb = lambda a: np.array([colorsys.hsv_to_rgb(*p) for p in a.reshape(-1, 3)]).reshape(a.shape)  # noqa: E731
    check_grad(ops.image.hsv_to_rgb, np_rgb, [np_hsv(y).astype(np.float32)], atol=2e-3, rtol=2e-3)


# ---- filters -----------------------------------------------------------------------------------------------------

def test_gaussian_blur_sobel_and_ssim_against_numpy():
    for ks, sigma in [((3, 3), (1.0, 1.0)), ((5, 3), (1.5, 0.7)), (4, 2.0)]:
        k = (ks, ks) if isinstance(ks, int) else ks
        s = (sigma, sigma) if isinstance(sigma, float) else sigma
        want = np_filter(IMG.astype(np.float64), np_gauss(k[1], s[1]), np_gauss(k[0], s[0]))
        np.testing.assert_allclose(ops.image.gaussian_blur(IMG, ks, sigma).numpy(), want, atol=1e-5)
    cf = ops.image.gaussian_blur(IMG.transpose(0, 3, 1, 2), data_format="channels_first").numpy()
    np.testing.assert_allclose(cf, ops.image.gaussian_blur(IMG).numpy().transpose(0, 3, 1, 2), atol=1e-6)
    sy = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], np.float64)
    edges = ops.image.sobel_edges(IMG).numpy()
    k_s, k_d = np.array([1, 2, 1.0]), np.array([-1, 0, 1.0])
    np.testing.assert_allclose(edges[..., 0], np_filter(IMG, k_d, k_s), atol=1e-5)     # dy: sy = outer(d, s)
    np.testing.assert_allclose(edges[..., 1], np_filter(IMG, k_s, k_d), atol=1e-5)     # dx: sy.T
    assert np.allclose(np.outer(k_d, k_s), sy)
    a, b = RNG.random((2, 12, 13, 3)), RNG.random((2, 12, 13, 3))
    b = (a + 0.2 * b).astype(np.float32)
    a = a.astype(np.float32)
    np.testing.assert_allclose(ops.image.ssim(a, b).numpy(), np_ssim(a, b), atol=1e-5)
    np.testing.assert_allclose(ops.image.ssim(a, b, 2.0, 5, 1.0, 0.02, 0.04).numpy(),
                               np_ssim(a, b, 2.0, 5, 1.0, 0.02, 0.04), atol=1e-5)
    assert float(ops.image.ssim(a[0], a[0])) == pytest.approx(1.0, abs=1e-5)
    ints = (a * 255).astype(np.int32)
    score = ops.image.ssim(ints, ints, max_val=255.0)
    assert score.dtype == "float32" and np.allclose(score.numpy(), 1.0, atol=1e-5)
    rng = np.random.default_rng(7)
    adjoint_check(lambda x: ops.image.gaussian_blur(x, (5, 3), (1.2, 0.8)), IMG, rng)
    adjoint_check(lambda x: ops.image.sobel_edges(x), IMG, rng)
    check_grad(lambda x, y: ops.image.ssim(x, y, filter_size=3), lambda x, y: np_ssim(x, y, size=3),
               [a[:1, :5, :5, :1], b[:1, :5, :5, :1]], atol=2e-3, rtol=2e-3)


def test_elastic_transform():
    x = RNG.random((2, 10, 12, 3)).astype(np.float32)
    one = ops.image.elastic_transform(x, alpha=5.0, sigma=2.0, seed=3).numpy()
    np.testing.assert_array_equal(ops.image.elastic_transform(x, alpha=5.0, sigma=2.0, seed=3).numpy(), one)
    assert one.shape == x.shape and not np.allclose(one, x)
    gen = ops.SeedGenerator(3)
    first, second = (ops.image.elastic_transform(x, seed=gen).numpy() for _ in range(2))
    assert not np.allclose(first, second)
    # alpha = 0 moves nothing
    np.testing.assert_allclose(ops.image.elastic_transform(x, alpha=0.0, seed=1).numpy(), x, atol=1e-6)
    cf = ops.image.elastic_transform(x.transpose(0, 3, 1, 2), alpha=5.0, sigma=2.0, seed=3,
                                     data_format="channels_first").numpy()
    np.testing.assert_allclose(cf, one.transpose(0, 3, 1, 2), atol=1e-6)
    # the displacement is a smooth field, the same for every channel, independent in x and y
    ramp = np.broadcast_to(np.arange(12, dtype=np.float32)[None, None, :, None], (1, 10, 12, 1)).copy()
    col = np.broadcast_to(np.arange(10, dtype=np.float32)[None, :, None, None], (1, 10, 12, 1)).copy()
    both = np.concatenate([ramp, col], -1)
    moved = ops.image.elastic_transform(both, alpha=3.0, sigma=3.0, fill_mode="nearest", seed=5).numpy()
    dx, dy = moved[0, 2:-2, 2:-2, 0] - ramp[0, 2:-2, 2:-2, 0], moved[0, 2:-2, 2:-2, 1] - col[0, 2:-2, 2:-2, 0]
    assert np.std(dx) > 1e-3 and np.std(dy) > 1e-3 and not np.allclose(dx, dy, atol=1e-3)
    nearest = ops.image.elastic_transform((x * 50).astype(np.int32), interpolation="nearest", seed=2)
    assert nearest.dtype == "int32"


# ---- Keras parity -------------------------------------------------------------------------------------------------

def test_keras_parity():
    keras = needs_keras()
    K = keras.ops.image
    x = IMG
    cf = x.transpose(0, 3, 1, 2)

    def same(ours, theirs, atol=2e-5):
        np.testing.assert_allclose(ours.numpy(), np.asarray(theirs), atol=atol)
    for method in ("bilinear", "nearest", "bicubic", "lanczos3", "lanczos5"):
        same(ops.image.resize(x, (5, 13), method, antialias=True), K.resize(x, (5, 13), method, antialias=True))
    same(ops.image.resize(cf, (4, 8), pad_to_aspect_ratio=True, fill_value=0.5, data_format="channels_first"),
         K.resize(cf, (4, 8), pad_to_aspect_ratio=True, fill_value=0.5, data_format="channels_first"))
    same(ops.image.resize(x, (8, 4), crop_to_aspect_ratio=True), K.resize(x, (8, 4), crop_to_aspect_ratio=True))
    t = TRANSFORMS.copy()
    t[:, 6:] = 0      # Keras's JAX backend ignores c0, c1
    for interp, mode in [("bilinear", "constant"), ("nearest", "reflect"), ("bilinear", "mirror")]:
        same(ops.image.affine_transform(x, t, interp, mode, 0.3), K.affine_transform(x, t, interp, mode, 0.3))
    inp = RNG.random((5, 6, 4)).astype(np.float32)
    coords = (RNG.random((3, 7, 2)) * 9 - 1).astype(np.float32)
    same(ops.image.map_coordinates(inp, coords, 1, "wrap", 0.7), K.map_coordinates(inp, coords, 1, "wrap", 0.7))
    sp = np.array([[[0, 0], [8, 0], [0, 6], [8, 6]]] * 2, np.float32)
    ep = np.array([[[1, 0], [7, 1], [0, 6], [8, 5]], [[0, 1], [8, 0], [1, 6], [8, 6]]], np.float32)
    same(ops.image.perspective_transform(x, sp, ep, fill_value=0.2), K.perspective_transform(x, sp, ep, fill_value=0.2),
         atol=1e-4)
    same(ops.image.extract_patches(x, (2, 3), (1, 2), 1, "same"), K.extract_patches(x, (2, 3), (1, 2), 1, "same"))
    vol = RNG.random((2, 5, 6, 4, 2)).astype(np.float32)
    same(ops.image.extract_patches_3d(vol, 2, 1), K.extract_patches_3d(vol, 2, 1))
    same(ops.image.rgb_to_grayscale(x), K.rgb_to_grayscale(x))
    same(ops.image.rgb_to_hsv(x), K.rgb_to_hsv(x))
    same(ops.image.hsv_to_rgb(x), K.hsv_to_rgb(x))
    same(ops.image.gaussian_blur(x, (5, 3), (1.5, 0.7), data_format="channels_last"),
         K.gaussian_blur(x, (5, 3), (1.5, 0.7), data_format="channels_last"))
    same(ops.image.sobel_edges(x), K.sobel_edges(x))
    b = (x + 0.1).astype(np.float32)
    same(ops.image.ssim(x, b, filter_size=5), K.ssim(x, b, filter_size=5))
    same(ops.image.pad_images(x, 1, 2, 0, 3), K.pad_images(x, 1, 2, 0, 3))
    same(ops.image.crop_images(x, 1, 2, 0, 3), K.crop_images(x, 1, 2, 0, 3))
    same(ops.image.scale_and_translate(x[0], (9, 5, 3), [1.6, 0.6], [0.5, -1.0], (0, 1), "cubic"),
         K.scale_and_translate(x[0], (9, 5, 3), np.array([1.6, 0.6], np.float32), np.array([0.5, -1.0], np.float32),
                               (0, 1), "cubic"))


def test_ops_run_on_the_device_of_their_input():
    """Indices, weights, kernels and random fields are made where the images are (a virtual cpu:1
    here: a constant made on cpu:0 would be refused by the ops)."""
    with lamina.device("cpu:1"):
        x = lamina.convert_to_tensor(IMG)
        coords = lamina.convert_to_tensor(np.ones((2, 3, 3), np.float32))
        t = lamina.convert_to_tensor(TRANSFORMS)
    pts = np.array([[0, 0], [8, 0], [0, 6], [8, 6]], np.float32)
    outs = [ops.image.resize(x, (4, 5)), ops.image.resize(x, (4, 5), "lanczos3", pad_to_aspect_ratio=True),
            ops.image.affine_transform(x, t), ops.image.perspective_transform(x, pts, pts),
            ops.image.map_coordinates(x[0, :, :, 0], coords, 1), ops.image.extract_patches(x, 2, padding="same"),
            ops.image.pad_images(x, 1, 1, 1, 1), ops.image.crop_images(x, 1, 1, 1, 1), ops.image.rgb_to_grayscale(x),
            ops.image.rgb_to_hsv(x), ops.image.hsv_to_rgb(x), ops.image.gaussian_blur(x),
            ops.image.elastic_transform(x, seed=1), ops.image.sobel_edges(x), ops.image.ssim(x, x, filter_size=3),
            ops.image.scale_and_translate(x, (2, 5, 4, 3), [0.7, 0.5], [0, 0], (1, 2), "linear")]
    for i, out in enumerate(outs):
        assert out.device.name == "cpu:1", i


# ---- layers share these ops ------------------------------------------------------------------------------------

def test_image_layers_run_the_ops():
    from lamina.layers import preprocessing_image, reshaping
    from lamina.backend import resampling
    assert preprocessing_image.affine_transform is resampling.transform_batch
    assert preprocessing_image.resize_images is resampling.resize_batch
    np.testing.assert_array_equal(lamina.layers.Resizing(5, 6, interpolation="bicubic")(IMG).numpy(),
                                  ops.image.resize(IMG, (5, 6), "bicubic").numpy())
    up = lamina.layers.UpSampling2D((2, 3), interpolation="lanczos3")(IMG).numpy()
    np.testing.assert_allclose(up, ops.image.resize(IMG, (14, 27), "lanczos3").numpy(), atol=1e-6)
    assert reshaping.resample_axis.__module__.endswith("reshaping")


# ---- errors ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("call,exc,match", [
    (lambda: ops.image.resize(IMG, (3,)), ValueError, r"resize: expected `size` to be a tuple of 2 integers"),
    (lambda: ops.image.resize(IMG, (0, 3)), ValueError, r"resize: `size` must be .* positive integers"),
    (lambda: ops.image.resize(IMG, (3, 3), "gaussian"), ValueError, r"`interpolation` must be one of"),
    (lambda: ops.image.resize(IMG, (3, 3), fill_mode="reflect"), ValueError,
     r"`fill_mode` must be one of \('constant',\)"),
    (lambda: ops.image.resize(IMG, (3, 3), crop_to_aspect_ratio=True, pad_to_aspect_ratio=True), ValueError,
     "only one of"),
    (lambda: ops.image.resize(IMG[0, 0], (3, 3)), ValueError, r"resize: invalid images rank: expected rank 3"),
    (lambda: ops.image.resize(IMG > 0.5, (3, 3)), TypeError, r"resize: expected numeric images .* bool"),
    (lambda: ops.image.resize(IMG, (3, 3), data_format="NHWC"), ValueError, r"`data_format` must be"),
    (lambda: ops.image.affine_transform(IMG, np.zeros(6)), ValueError, r"expected a vector of 8 numbers"),
    (lambda: ops.image.affine_transform(IMG, np.zeros((3, 8))), ValueError, r"3 transforms for a batch of 2"),
    (lambda: ops.image.affine_transform(IMG, TRANSFORMS, "bicubic"), ValueError, r"`interpolation` must be one of"),
    (lambda: ops.image.affine_transform(IMG, TRANSFORMS, fill_mode="edge"), ValueError, r"`fill_mode` must be one"),
    (lambda: ops.image.map_coordinates(IMG, np.zeros((3, 5)), 1), ValueError, r"must be the rank of `inputs`"),
    (lambda: ops.image.map_coordinates(IMG[0, 0, 0], np.zeros(1), 1), ValueError, r"at least rank 2"),
    (lambda: ops.image.map_coordinates(IMG[0, 0], np.zeros((2, 3)), 3), ValueError, r"`order` must be 0"),
    (lambda: ops.image.perspective_transform(IMG, np.zeros((4, 3)), np.zeros((4, 3))), ValueError,
     r"invalid start_points shape"),
    (lambda: ops.image.perspective_transform(IMG, np.zeros((4, 2)), np.zeros((2, 4, 2))), ValueError,
     r"must have the same shape"),
    (lambda: ops.image.perspective_transform(IMG, np.zeros((4, 2)), np.zeros((4, 2))), ValueError,
     r"perspective_transform: no perspective transform maps these end_points"),
    (lambda: ops.image.extract_patches(IMG, (2, 2, 2, 2)), ValueError, r"tuple of length 2 \(or 3"),
    (lambda: ops.image.extract_patches(IMG, "2"), TypeError, r"expected an int or a tuple"),
    (lambda: ops.image.extract_patches(IMG, 8), ValueError, r"spans 8 elements, more than the 7"),
    (lambda: ops.image.extract_patches(IMG, 2, padding="full"), ValueError, r"`padding` must be 'valid' or 'same'"),
    (lambda: ops.image.extract_patches_3d(IMG[0], 2), ValueError, r"volumes of rank 4 \(one\) or 5"),
    (lambda: ops.image.pad_images(IMG, 1, 1), ValueError, r"specify exactly two of top_padding, bottom_padding"),
    (lambda: ops.image.pad_images(IMG, 1, 1, 1, -1), ValueError, r"`right_padding` must be >= 0"),
    (lambda: ops.image.pad_images(IMG, 1, 1, target_height=5, target_width=20), ValueError,
     r"bottom_padding would be -3"),
    (lambda: ops.image.crop_images(IMG, 1, 1, target_height=7, target_width=3), ValueError, r"does not fit"),
    (lambda: ops.image.crop_images(IMG, 1.5, 1, 1, 1), TypeError, r"`top_cropping` must be an integer"),
    (lambda: ops.image.rgb_to_grayscale(IMG[..., :2]), ValueError, r"expected 3 \(RGB\) or 1"),
    (lambda: ops.image.rgb_to_hsv((IMG * 9).astype(np.int32)), TypeError, r"rgb_to_hsv: expected float images"),
    (lambda: ops.image.hsv_to_rgb(IMG[..., :1]), ValueError, r"must have 3 channels"),
    (lambda: ops.image.gaussian_blur(IMG, (3, 0)), ValueError, r"`kernel_size` must be"),
    (lambda: ops.image.gaussian_blur(IMG, 3, (1.0, -1.0)), ValueError, r"`sigma` must be a positive number"),
    (lambda: ops.image.sobel_edges(IMG[0]), ValueError, r"expected rank 4"),
    (lambda: ops.image.ssim(IMG, IMG[:1]), ValueError, r"must have the same shape"),
    (lambda: ops.image.ssim(IMG, IMG, filter_size=4), ValueError, r"odd integer"),
    (lambda: ops.image.ssim(IMG, IMG), ValueError, r"smaller than the 11 x 11 filter window"),
    (lambda: ops.image.elastic_transform(IMG, sigma=0.0), ValueError, r"`sigma` must be a positive number"),
    (lambda: ops.image.elastic_transform(IMG, seed="a"), TypeError, r"seed must be an int, a SeedGenerator"),
    (lambda: ops.image.scale_and_translate(IMG[0], (5, 5, 3), [1, 1], [0, 0], (0, 1), "nearest"), ValueError,
     r"`method` must be one of"),
    (lambda: ops.image.scale_and_translate(IMG[0], (5, 5, 4), [1, 1], [0, 0], (0, 1), "linear"), ValueError,
     r"output_shape\[2\] must equal"),
    (lambda: ops.image.scale_and_translate(IMG[0], (5, 5, 3), [1], [0, 0], (0, 1), "linear"), ValueError,
     r"`scale` must have one entry per spatial dimension"),
    (lambda: ops.image.scale_and_translate(IMG[0], (5, 5, 3), [0, 1], [0, 0], (0, 1), "linear"), ValueError,
     r"finite non-zero"),
])
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()
