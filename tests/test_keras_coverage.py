"""How much of Keras 3's public API lamina has: for each namespace (keras.layers, keras.ops,
keras.metrics, keras.losses, keras.optimizers and keras.optimizers.schedules, keras.callbacks,
keras.utils, keras.config, keras.backend, keras.activations, keras.initializers, keras.regularizers,
keras.constraints, keras.tree, keras.random, keras.applications, keras.datasets, keras.distribution, keras.saving,
keras.wrappers) the public names of Keras (no leading underscore; for layers, the classes) that
lamina's namespace also has, with the same kind of object (a class for a class, a module for a
module, a callable for a function). Run with `-s` to see the missing names.

A few Keras names cannot apply to lamina: they are listed in SKIPPED with the reason and left out
of the count. THRESHOLD is the overall coverage, all namespaces together, the test requires."""
import inspect
import types

import pytest

import lamina
from keras_ref import keras_or_none

THRESHOLD = 90   # percent of Keras's names (less SKIPPED), all namespaces together

SKIPPED = {
    "layers": {
        "TFSMLayer": "loads a TensorFlow SavedModel as a layer; lamina has no TensorFlow runtime to run its graph",
        "JaxLayer": "wraps a JAX function as a layer; lamina's ops and autodiff are its own, not JAX's",
        "FlaxLayer": "wraps a Flax module (JAX); lamina cannot run or differentiate JAX code",
        "TorchModuleWrapper": "wraps a torch.nn.Module as a layer; lamina cannot run or differentiate PyTorch code",
    },
    "optimizers": {
        "legacy": "Keras 3's keras.optimizers.legacy holds only stand-ins that raise ImportError (the tf.keras 2 "
                  "optimizers are gone): nothing to provide",
    },
    "config": {
        "set_backend": "switches Keras between its JAX, TensorFlow and PyTorch backends; lamina is its own backend",
        "is_nnx_enabled": "reports whether Keras layers are Flax NNX modules (JAX backend only); lamina has no Flax",
    },
    "callbacks": {
        "OrbaxCheckpoint": "saves Orbax checkpoints (the orbax-checkpoint library's format for JAX array trees); "
                           "lamina's arrays are not JAX's (ModelCheckpoint and BackupAndRestore checkpoint lamina)",
    },
}


def _namespaces(keras):
    return [
        ("layers", keras.layers, lamina.layers, True),
        ("ops", keras.ops, lamina.ops, False),
        ("metrics", keras.metrics, lamina.metrics, False),
        ("losses", keras.losses, lamina.losses, False),
        ("optimizers", keras.optimizers, lamina.optimizers, False),
        ("optimizers.schedules", keras.optimizers.schedules, lamina.optimizers.schedules, False),
        ("callbacks", keras.callbacks, lamina.callbacks, False),
        ("utils", keras.utils, lamina.utils, False),
        ("config", keras.config, lamina.config, False),
        ("backend", keras.backend, lamina.backend, False),
        ("activations", keras.activations, lamina.activations, False),
        ("initializers", keras.initializers, lamina.initializers, False),
        ("regularizers", keras.regularizers, lamina.regularizers, False),
        ("constraints", keras.constraints, lamina.constraints, False),
        ("tree", keras.tree, lamina.tree, False),
        ("random", keras.random, lamina.random, False),
        ("applications", keras.applications, lamina.applications, False),
        ("datasets", keras.datasets, lamina.datasets, False),
        ("distribution", keras.distribution, lamina.distribution, False),
        ("saving", keras.saving, lamina.saving, False),
        ("wrappers", keras.wrappers, lamina.wrappers, False),
    ]


def _kind(obj):
    if inspect.isclass(obj):
        return "class"
    if isinstance(obj, types.ModuleType):
        return "module"
    return "callable" if callable(obj) else "value"


def _same_kind(keras_obj, ours):
    """A class stands for a class, a module (or a namespace object) for a module, a callable for a
    function: an attribute of another kind (an import of the same name) is not coverage."""
    want, got = _kind(keras_obj), _kind(ours)
    if want == "module":
        return got in ("module", "value") and not isinstance(ours, (int, float, str, bool))
    if want == "callable":
        return callable(ours)
    return want == got


def coverage(keras):
    """{namespace: (covered names, missing names, names of another kind)}."""
    out = {}
    for name, theirs, ours, classes_only in _namespaces(keras):
        names = {n for n in dir(theirs) if not n.startswith("_")}
        if classes_only:
            names = {n for n in names if inspect.isclass(getattr(theirs, n))}
        names -= set(SKIPPED.get(name, {}))
        covered, missing, other_kind = [], [], []
        for n in sorted(names):
            if not hasattr(ours, n):
                missing.append(n)
            elif _same_kind(getattr(theirs, n), getattr(ours, n)):
                covered.append(n)
            else:
                other_kind.append(n)
        out[name] = (covered, missing, other_kind)
    return out


def _report(cov):
    lines = []
    for name, (covered, missing, other) in cov.items():
        total = len(covered) + len(missing) + len(other)
        lines.append(f"{name}: {len(covered)}/{total} = {100 * len(covered) / total:.1f}%")
    return "; ".join(lines)


@pytest.fixture(scope="module")
def keras():
    k = keras_or_none()
    if k is None:
        pytest.skip("the coverage is measured against keras (tested with KERAS_BACKEND=jax)")
    return k


def test_skipped_names_are_keras_names_lamina_lacks(keras):
    spaces = {name: (theirs, ours) for name, theirs, ours, _ in _namespaces(keras)}
    for space, names in SKIPPED.items():
        theirs, ours = spaces[space]
        for n, reason in names.items():
            assert hasattr(theirs, n), f"keras.{space}.{n} no longer exists: drop it from SKIPPED"
            assert not hasattr(ours, n), f"lamina.{space}.{n} exists now: drop it from SKIPPED ({reason})"
            assert len(reason) > 30


def test_keras_api_coverage(keras):
    cov = coverage(keras)
    for name, (covered, missing, other) in cov.items():
        total = len(covered) + len(missing) + len(other)
        print(f"\nkeras.{name}: {len(covered)}/{total} ({100 * len(covered) / total:.1f}%)")
        if missing:
            print(f"  missing: {', '.join(missing)}")
        if other:
            print(f"  present, but not the same kind of object as Keras's: {', '.join(other)}")
    covered = sum(len(c) for c, _, _ in cov.values())
    total = sum(len(c) + len(m) + len(o) for c, m, o in cov.values())
    percent = 100 * covered / total
    print(f"\noverall: {covered}/{total} ({percent:.1f}%)")
    assert percent >= THRESHOLD, (f"lamina has {percent:.1f}% of Keras's public names ({covered}/{total}), less than "
                                  f"{THRESHOLD}%. Per namespace: {_report(cov)}")
