"""Writes layers/_keras_ops.py from real Keras (run by hand: `KERAS_BACKEND=jax python
tests/layers/make_keras_ops_table.py`): for every keras.ops function that builds an Operation, its
family (keras.src.ops.<family>), the Operation's class name, the function's parameters and the
parameters the Operation takes in `call` ("*name": a variable number of them; the others are its
constructor's, in its config). A
functional model's op nodes are saved and loaded with it (layers/core.py, SymbolicOp)."""
import importlib
import inspect
import os
import re

os.environ.setdefault("KERAS_BACKEND", "jax")


def table():
    import keras
    rows = {}
    for family in ("numpy", "nn", "math", "core", "linalg", "image"):
        mod = importlib.import_module(f"keras.src.ops.{family}")
        public = getattr(keras.ops, family) if family in ("linalg", "image") else keras.ops
        for name, fn in sorted(vars(mod).items()):
            if not inspect.isfunction(fn) or name.startswith("_") or fn.__module__ != mod.__name__ or \
                    not hasattr(public, name):
                continue
            made = re.findall(r"return ([A-Z][A-Za-z0-9]*)\(", inspect.getsource(fn))
            cls = getattr(mod, made[-1], None) if made else None
            if not inspect.isclass(cls):
                continue
            params = tuple(p for p in inspect.signature(fn).parameters if p != "kwargs")
            call = tuple(("*" if q.kind == q.VAR_POSITIONAL else "") + p
                         for p, q in inspect.signature(cls.call).parameters.items() if p != "self")
            rows.setdefault(name, []).append((family, cls.__name__, params, call))
    return rows


if __name__ == "__main__":
    import keras
    rows = table()
    lines = ['"""keras.ops functions as Keras saves them (written by tests/layers/make_keras_ops_table.py from',
             f'Keras {keras.__version__}): name -> [(family, Operation class, parameters, call parameters)]; the',
             'parameters not in `call` are the Operation\'s constructor arguments, saved in its config."""',
             "OPS = {"]
    for name in sorted(rows):
        lines.append(f"    {name!r}: {rows[name]!r},")
    lines.append("}")
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "layers", "_keras_ops.py")
    with open(path + ".tmp", "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(path + ".tmp", path)
    print(path, len(rows))
