"""Tutorial 1: warm-up -- tensors, ops, variables, and assignment.

TensorFlow's first workshop cells built a graph of constants and ops, ran it in a session, and
counted with a variable. lamina runs ops eagerly (no session): an op returns a tensor at once.

    python tutorials/01_graphs_and_variables.py [--quick]
"""
# %%
import argparse

import numpy as np

import lamina
from lamina import ops


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="same as the full run (it is already tiny)")
    ap.add_argument("--fib", type=int, default=20, help="how many Fibonacci numbers to print")
    args = ap.parse_args(argv)

    # %% [markdown]
    # ## A small graph of ops
    # Constants become tensors; `+`, `*` and `@` are ops whose results are tensors too.
    a = lamina.convert_to_tensor(3.0)
    b = lamina.convert_to_tensor(4.0)
    c = a * b + 2.0
    print("a * b + 2 =", float(c))
    m1 = lamina.convert_to_tensor([[3.0, 3.0]])
    m2 = lamina.convert_to_tensor([[2.0], [2.0]])
    product = ops.matmul(m1, m2)
    print("[[3, 3]] @ [[2], [2]] =", product.numpy().tolist())

    # %% [markdown]
    # ## Variables hold state
    # A Variable is updated in place by assign / assign_add; tensors are immutable.
    state = lamina.Variable(np.array(0, np.int32), name="counter")
    for _ in range(3):
        state.assign_add(np.array(1, np.int32))
        print("counter:", int(state))

    # %% [markdown]
    # ## Exercise: Fibonacci with two variables and assignment
    # f(n) = f(n-1) + f(n-2): keep the last two numbers in variables and update them each step.
    prev = lamina.Variable(np.array(0, np.int64), name="fib_prev")
    curr = lamina.Variable(np.array(1, np.int64), name="fib_curr")
    seq = []
    for _ in range(args.fib):
        seq.append(int(prev))
        nxt = prev + curr
        prev.assign(curr)
        curr.assign(nxt)
    print("Fibonacci:", seq)
    expected = [0, 1]
    while len(expected) < args.fib:
        expected.append(expected[-1] + expected[-2])
    assert seq == expected[:args.fib], "the variables did not follow the recurrence"

    # %% [markdown]
    # ## Gradients
    # GradientTape records ops on variables and gives d(loss)/d(variable).
    x = lamina.Variable(np.array(3.0, np.float32), name="x")
    with lamina.GradientTape() as tape:
        y = x * x + 2.0 * x
    print("d(x^2 + 2x)/dx at x=3:", float(tape.gradient(y, x)), "(expected 8); loss", float(y))
    return seq


if __name__ == "__main__":
    main()
