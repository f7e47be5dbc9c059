"""Each optimizer's fused update against a numpy transcription of Keras 3's update rule."""
import numpy as np
import pytest

import lamina
from lamina import optimizers
from lamina.optimizers import schedules


def _run(opt, w0, grads):
    v = lamina.Variable(w0.copy())
    for g in grads:
        opt.apply([lamina.convert_to_tensor(g)], [v])
    return v.numpy()


def _data(seed=0, n=3):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((4, 5)).astype(np.float32), [rng.standard_normal((4, 5)).astype(np.float32) for _ in range(n)]


@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd(momentum, nesterov):
    w0, gs = _data()
    w, vel, lr = w0.astype(np.float64), np.zeros_like(w0, np.float64), 0.1
    for g in gs:
        if momentum == 0:
            w = w - lr * g
        else:
            vel = momentum * vel - lr * g
            w = w + (momentum * vel - lr * g if nesterov else vel)
    np.testing.assert_allclose(_run(optimizers.SGD(lr, momentum=momentum, nesterov=nesterov), w0, gs), w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("amsgrad", [False, True])
def test_adam(amsgrad):
    w0, gs = _data(1)
    lr, b1, b2, eps = 0.01, 0.9, 0.999, 1e-7
    w, m, v, vh = w0.astype(np.float64), 0, 0, 0
    for t, g in enumerate(gs, 1):
        lr_t = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        m = m + (g - m) * (1 - b1)
        v = v + (g * g - v) * (1 - b2)
        vh = np.maximum(vh, v)
        w = w - lr_t * m / (np.sqrt(vh if amsgrad else v) + eps)
    np.testing.assert_allclose(_run(optimizers.Adam(lr, amsgrad=amsgrad), w0, gs), w, rtol=1e-5, atol=1e-6)


def test_adamw_decays_weights():
    w0, gs = _data(2)
    lr, wd, b1, b2, eps = 0.01, 0.1, 0.9, 0.999, 1e-7
    w, m, v = w0.astype(np.float64), 0, 0
    for t, g in enumerate(gs, 1):
        w = w - w * wd * lr
        lr_t = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
        m = m + (g - m) * (1 - b1)
        v = v + (g * g - v) * (1 - b2)
        w = w - lr_t * m / (np.sqrt(v) + eps)
    np.testing.assert_allclose(_run(optimizers.AdamW(lr, weight_decay=wd), w0, gs), w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("momentum,centered", [(0.0, False), (0.5, True)])
def test_rmsprop(momentum, centered):
    w0, gs = _data(3)
    lr, rho, eps = 0.01, 0.9, 1e-7
    w, vel, ag, mom = w0.astype(np.float64), 0, 0, 0
    for g in gs:
        vel = rho * vel + (1 - rho) * g * g
        denom = vel + eps
        if centered:
            ag = rho * ag + (1 - rho) * g
            denom = vel - ag * ag + eps
        inc = lr * g / np.sqrt(denom)
        if momentum:
            mom = momentum * mom + inc
            w = w - mom
        else:
            w = w - inc
    np.testing.assert_allclose(_run(optimizers.RMSprop(lr, momentum=momentum, centered=centered), w0, gs), w,
                               rtol=1e-5, atol=1e-6)


def test_adagrad():
    w0, gs = _data(4)
    lr, eps = 0.1, 1e-7
    w, acc = w0.astype(np.float64), np.full(w0.shape, 0.1)
    for g in gs:
        acc = acc + g * g
        w = w - lr * g / np.sqrt(acc + eps)
    np.testing.assert_allclose(_run(optimizers.Adagrad(lr), w0, gs), w, rtol=1e-5, atol=1e-6)


def test_clipping():
    w0 = np.zeros((2, 2), np.float32)
    g = np.full((2, 2), 3.0, np.float32)  # norm 6
    np.testing.assert_allclose(_run(optimizers.SGD(1.0, clipnorm=1.5), w0, [g]), -g * 1.5 / 6.0, rtol=1e-6)
    np.testing.assert_allclose(_run(optimizers.SGD(1.0, clipvalue=0.5), w0, [g]), np.full((2, 2), -0.5), rtol=1e-6)
    opt = optimizers.SGD(1.0, global_clipnorm=6.0)
    a, b = lamina.Variable(w0), lamina.Variable(w0)
    opt.apply([lamina.convert_to_tensor(g), lamina.convert_to_tensor(g)], [a, b])  # global norm sqrt(72)
    np.testing.assert_allclose(a.numpy(), -g * 6.0 / np.sqrt(72.0), rtol=1e-5)
    with pytest.raises(ValueError, match="only one"):
        optimizers.SGD(clipnorm=1.0, global_clipnorm=1.0)


def test_schedules():
    s = schedules.ExponentialDecay(0.1, decay_steps=10, decay_rate=0.5, staircase=True)
    assert s(9) == pytest.approx(0.1) and s(10) == pytest.approx(0.05)
    p = schedules.PiecewiseConstantDecay([5, 10], [1.0, 0.5, 0.1])
    assert (p(5), p(6), p(11)) == (1.0, 0.5, 0.1)
    c = schedules.CosineDecay(1.0, decay_steps=10, alpha=0.1)
    assert c(0) == pytest.approx(1.0) and c(10) == pytest.approx(0.1) and c(5) == pytest.approx(0.55)
    opt = optimizers.SGD(s)
    v = lamina.Variable(np.zeros(1, np.float32))
    for _ in range(11):
        opt.apply([lamina.convert_to_tensor(np.ones(1, np.float32))], [v])
    assert v.numpy()[0] == pytest.approx(-(10 * 0.1 + 0.05), rel=1e-5)


def test_by_name_and_errors():
    assert isinstance(optimizers.get("adam"), optimizers.Adam)
    with pytest.raises(ValueError, match="Unknown optimizer"):
        optimizers.get("adamm")
    opt = optimizers.get({"class_name": "SGD", "config": optimizers.SGD(0.3, momentum=0.5).get_config()})
    assert opt.learning_rate == 0.3 and opt.momentum == 0.5
