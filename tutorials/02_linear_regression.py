"""Tutorial 2: linear regression, y = 0.1 x + 0.3 + noise.

First by hand -- two variables, GradientTape and a gradient-descent loop -- then the same model
as one Dense(1) layer trained with compile/fit.

    python tutorials/02_linear_regression.py [--quick]
"""
# %%
import argparse

import numpy as np

import lamina
from lamina import ops


def make_data(n, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random(n).astype(np.float32)
    y = (0.1 * x + 0.3 + rng.normal(0.0, 0.01, n)).astype(np.float32)
    return x, y


def by_hand(x, y, steps, lr=0.5):
    # %% [markdown]
    # ## With variables and GradientTape
    # loss = mean((W x + b - y)^2); each step moves W and b against their gradients.
    W = lamina.Variable(np.random.default_rng(1).uniform(-1, 1, ()).astype(np.float32), name="W")
    b = lamina.Variable(np.zeros((), np.float32), name="b")
    xt, yt = lamina.convert_to_tensor(x), lamina.convert_to_tensor(y)
    for step in range(steps + 1):
        with lamina.GradientTape() as tape:
            loss = ops.mean(ops.square(W * xt + b - yt))
        gW, gb = tape.gradient(loss, [W, b])
        W.assign_sub(gW * lr)
        b.assign_sub(gb * lr)
        if step % max(steps // 5, 1) == 0:
            print(f"step {step:4d}: W = {float(W):.4f}, b = {float(b):.4f}, loss = {float(loss):.6f}")
    return float(W), float(b)


def with_fit(x, y, epochs):
    # %% [markdown]
    # ## With a Dense(1) layer and fit
    model = lamina.Sequential([lamina.Input(shape=(1,)), lamina.layers.Dense(1)])
    model.compile(optimizer=lamina.optimizers.SGD(0.5), loss="mse")
    model.fit(x[:, None], y[:, None], epochs=epochs, batch_size=len(x), verbose=0)
    kernel, bias = model.get_weights()
    print(f"Dense(1): W = {kernel[0, 0]:.4f}, b = {bias[0]:.4f}, "
          f"loss = {model.evaluate(x[:, None], y[:, None], verbose=0):.6f}")
    return float(kernel[0, 0]), float(bias[0])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer steps")
    args = ap.parse_args(argv)
    x, y = make_data(100)
    steps = 200 if args.quick else 1000
    W, b = by_hand(x, y, steps)
    W2, b2 = with_fit(x, y, steps)
    for name, (w, c) in (("by hand", (W, b)), ("fit", (W2, b2))):
        print(f"{name}: learned W = {w:.3f} (true 0.1), b = {c:.3f} (true 0.3)")
    return W, b, W2, b2


if __name__ == "__main__":
    main()
