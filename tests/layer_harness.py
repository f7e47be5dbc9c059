"""One harness for every layer (after Keras's run_layer_test): build, output shape (eager and
symbolic), config round trip, weights round trip, and one training step."""
import numpy as np

import lamina
from lamina import layers


def run_layer_test(cls, init_kwargs, input_shape, input_dtype="float32", expected_output_shape=None,
                   expected_num_trainable_weights=None, expected_num_non_trainable_weights=None,
                   input_data=None, expected_output=None, atol=1e-5, train=True, seed=0):
    rng = np.random.default_rng(seed)
    if input_data is None:
        if input_dtype.startswith("int"):
            input_data = rng.integers(0, 5, input_shape).astype(input_dtype)
        else:
            input_data = rng.standard_normal(input_shape).astype(input_dtype)
    layer = cls(**init_kwargs)
    out = layer(input_data)
    outs = out if isinstance(out, (list, tuple)) else [out]
    assert layer.built
    if expected_output_shape is not None:
        exp = expected_output_shape if isinstance(expected_output_shape, list) else [expected_output_shape]
        assert [o.shape for o in outs] == [tuple(e) for e in exp], f"output shapes {[o.shape for o in outs]}"
    if expected_num_trainable_weights is not None:
        assert len(layer.trainable_weights) == expected_num_trainable_weights
    if expected_num_non_trainable_weights is not None:
        assert len(layer.non_trainable_weights) == expected_num_non_trainable_weights
    if expected_output is not None:
        np.testing.assert_allclose(outs[0].numpy(), expected_output, atol=atol, rtol=atol)

    # symbolic call: same shapes with an unknown batch dimension
    sym_layer = cls(**init_kwargs)
    kin = lamina.Input(shape=input_shape[1:], dtype=input_dtype)
    kout = sym_layer(kin)
    kouts = kout if isinstance(kout, (list, tuple)) else [kout]
    for k, o in zip(kouts, outs):
        assert k.shape[0] is None and tuple(k.shape[1:]) == o.shape[1:], f"symbolic {k.shape} vs eager {o.shape}"

    # config round trip, then the same weights give the same outputs
    config = layer.get_config()
    clone = cls.from_config(config)
    assert clone.get_config() == {**config, "name": clone.name} or clone.get_config() == config
    clone(input_data)
    clone.set_weights(layer.get_weights())
    for a, b in zip(outs, [clone(input_data)] if not isinstance(out, (list, tuple)) else clone(input_data)):
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)

    # weights round trip keeps names and shapes
    ws = layer.get_weights()
    layer.set_weights([w + 1 for w in ws])
    for w, v in zip(ws, layer.get_weights()):
        np.testing.assert_allclose(v, w + 1, atol=1e-6)
    layer.set_weights(ws)
    for v in layer.weights:
        assert v.path.startswith(layer.name + "/")

    # one training step moves every trainable weight
    if train and layer.trainable_weights and not isinstance(out, (list, tuple)):
        model = lamina.Sequential([lamina.Input(shape=input_shape[1:], dtype=input_dtype), cls(**init_kwargs)])
        model.compile(optimizer="sgd", loss="mse")
        target = rng.standard_normal(outs[0].shape).astype(np.float32)
        before = [w.numpy() for w in model.trainable_weights]
        model.train_on_batch(input_data, target)
        after = [w.numpy() for w in model.trainable_weights]
        assert any(not np.allclose(a, b) for a, b in zip(before, after)), "a training step changed no weight"
    return layer, outs
