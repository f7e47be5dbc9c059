import keras
# Scenario: post-training quantization (guides/quantization_overview, guides/int8_quantization_in_keras
# and guides/int4_quantization_in_keras, Keras 3.15): the int8 guide's small functional model
# (Dense(32, relu), Dense(1, name="target")) trained briefly on a learnable numpy rule, its float
# outputs captured, model.quantize("int8") in place and the MSE between float and int8 outputs;
# model.save("int8.keras") / keras.saving.load_model round trip, and save_weights / load_weights
# into a fresh model quantized the same way; the quantized layers' variables (kernel int8,
# kernel_scale per output unit, bias float32), quantization_mode and the "int8_from_float32" dtype
# policy; the overview's Sequential get_model() (dense_1, output_head) quantized whole, then
# selectively with a regex-list filter and a callable filter; layer-wise Dense.quantize("int4") on
# a built layer; the int4 guide's model.quantize("int4") with its MSE and .keras round trip; a
# token model of the covered layer kinds (Embedding, EinsumDense("abc,cd->abd"), Dense) quantized
# to int8 and int4; and Dense.quantize("float8") (the overview's third mode; Keras's Embedding
# has no float8 form). Thresholds: int8 outputs within 1e-3 MSE of the float model's (and 5% of
# the outputs' variance), int4 within 5e-2 (and 10% of the variance), the token model's loss below a
# quarter of the targets' variance and its int8 / int4 outputs within 5% / 20% of their variance,
# reloaded quantized models (.keras, and save_weights / load_weights) equal the quantized model to
# 1e-10 MSE, the int8 kernel spans [-127, 127] with one scale per unit, filters quantize only the
# layers they select, float8 outputs within 5% of the float layer's variance.
import json
import os
import tempfile

import numpy as np
from keras import layers

keras.utils.set_random_seed(45)
rng = np.random.default_rng(0)
workdir = tempfile.mkdtemp()

# a learnable rule in place of the guides' random targets
true_w = rng.normal(0, 1, (10, 1)).astype("float32")


def make_data(n):
    x = rng.random((n, 10)).astype("float32")
    y = ((x - 0.5) @ true_w + 0.3 * np.sin(3 * x[:, :1])).astype("float32")
    return x, y


def mse_of(a, b):
    return float(keras.ops.mean(keras.ops.square(a - b)))


def variables_of(layer):
    return {w.path.split("/")[-1]: [w.dtype, list(w.shape)] for w in layer.weights}


# ---- int8 guide: quantizing a minimal functional model -------------------------------------------
inputs = keras.Input(shape=(10,))
x = layers.Dense(32, activation="relu")(inputs)
outputs = layers.Dense(1, name="target")(x)
model = keras.Model(inputs, outputs)

model.compile(optimizer="adam", loss="mse")
x_train, y_train = make_data(256)
history = model.fit(x_train, y_train, epochs=30, batch_size=32, verbose=0)
params_float = int(model.count_params())

x_eval, y_eval = make_data(32)
y_fp32 = model(x_eval)
model.quantize("int8")
y_int8 = model(x_eval)
int8_mse = mse_of(y_fp32, y_int8)
output_variance = float(np.var(keras.ops.convert_to_numpy(y_fp32)))
print("Full-Precision vs INT8 MSE:", int8_mse)

hidden, target = model.layers[1], model.layers[2]
int8_variables = {"hidden": variables_of(hidden), "target": variables_of(target)}
kernel_q = keras.ops.convert_to_numpy(hidden.kernel)
kernel_scale = keras.ops.convert_to_numpy(hidden.kernel_scale)

# saving and reloading a quantized model
model.save(os.path.join(workdir, "int8.keras"))
int8_reloaded = keras.saving.load_model(os.path.join(workdir, "int8.keras"))
y_int8_reloaded = int8_reloaded(x_eval)
roundtrip_mse = mse_of(y_int8, y_int8_reloaded)
print("MSE (INT8 vs reloaded-INT8):", roundtrip_mse)

# weights only: a fresh model of the same architecture, quantized the same way, takes them
model.save_weights(os.path.join(workdir, "int8.weights.h5"))
inputs2 = keras.Input(shape=(10,))
x2 = layers.Dense(32, activation="relu")(inputs2)
fresh = keras.Model(inputs2, layers.Dense(1, name="target")(x2))
fresh.quantize("int8")
fresh.load_weights(os.path.join(workdir, "int8.weights.h5"))
weights_roundtrip_mse = mse_of(y_int8, fresh(x_eval))
evaluate_int8_loss = float(int8_reloaded.evaluate(x_eval, y_eval, verbose=0))  # compiled as saved


# ---- overview: model quantization, selective and layer-wise ---------------------------------------
def get_model():
    """
    Helper to build a simple sequential model.
    """
    return keras.Sequential(
        [
            keras.Input(shape=(10,)),
            keras.layers.Dense(32, activation="relu", name="dense_1"),
            keras.layers.Dense(1, name="output_head"),
        ]
    )


seq = get_model()
seq.compile(optimizer="adam", loss="mean_squared_error")
seq.fit(x_train[:100], y_train[:100], epochs=1, verbose=0)
seq.quantize("int8")
seq_modes = {layer.name: layer.quantization_mode for layer in seq.layers}


def modes(m):
    return {layer.name: getattr(layer, "quantization_mode", None) for layer in m.layers}


# Quantize only layers with "dense" in the name, but skip "output"
model_regex = get_model()
model_regex.quantize("int8", filters=["dense", "^((?!output).)*$"])
regex_modes = modes(model_regex)


def my_filter(layer):
    # Only quantize Dense layers that aren't the output
    return isinstance(layer, keras.layers.Dense) and layer.name != "output_head"


model_callable = get_model()
model_callable.quantize("int8", filters=my_filter)
callable_modes = modes(model_callable)

input_shape = (10,)
layer = layers.Dense(32, activation="relu")
layer.build(input_shape)
layer.quantize("int4")  # Or "int8", "float8", etc.
int4_layer_variables = variables_of(layer)
int4_layer_policy = layer.dtype_policy.name

# ---- int4 guide ---------------------------------------------------------------------------------
inputs = keras.Input(shape=(10,))
x = layers.Dense(32, activation="relu")(inputs)
outputs = layers.Dense(1, name="target")(x)
model4 = keras.Model(inputs, outputs)
model4.compile(optimizer="adam", loss="mse")
model4.fit(x_train, y_train, epochs=30, batch_size=32, verbose=0)
y_fp32_4 = model4(x_eval)
model4.quantize("int4")
y_int4 = model4(x_eval)
int4_mse = mse_of(y_fp32_4, y_int4)
int4_variance = float(np.var(keras.ops.convert_to_numpy(y_fp32_4)))
print("Full-Precision vs INT4 MSE:", int4_mse)
model4.save(os.path.join(workdir, "int4.keras"))
int4_reloaded = keras.saving.load_model(os.path.join(workdir, "int4.keras"))
int4_roundtrip_mse = mse_of(y_int4, int4_reloaded(x_eval))
print("MSE (INT4 vs reloaded INT4):", int4_roundtrip_mse)

# ---- the covered layer kinds: Embedding, EinsumDense, Dense ---------------------------------------
seq_len, vocab = 8, 50
tokens = rng.integers(0, vocab, (512, seq_len))
token_value = rng.normal(0, 1, vocab).astype("float32")
token_y = np.tanh(token_value[tokens].mean(axis=1, keepdims=True) * 2).astype("float32")


def get_token_model():
    token_inputs = keras.Input(shape=(seq_len,), dtype="int32")
    h = layers.Embedding(vocab, 16, name="embedding")(token_inputs)
    h = layers.EinsumDense("abc,cd->abd", output_shape=(seq_len, 16), bias_axes="d", activation="relu",
                           name="einsum_dense")(h)
    h = layers.GlobalAveragePooling1D()(h)
    return keras.Model(token_inputs, layers.Dense(1, name="head")(h))


token_model = get_token_model()
token_model.compile(optimizer=keras.optimizers.Adam(0.01), loss="mse")
token_history = token_model.fit(tokens, token_y, epochs=10, batch_size=64, verbose=0)
token_weights = token_model.get_weights()
token_eval = tokens[:64]
y_token_fp32 = token_model(token_eval)
token_variance = float(np.var(keras.ops.convert_to_numpy(y_token_fp32)))
token_model.quantize("int8")
token_int8_mse = mse_of(y_token_fp32, token_model(token_eval))
token_int8_variables = {name: variables_of(token_model.get_layer(name)) for name in ("embedding", "einsum_dense", "head")}
token_int8_modes = modes(token_model)
token_model.save(os.path.join(workdir, "token_int8.keras"))
token_reloaded = keras.saving.load_model(os.path.join(workdir, "token_int8.keras"))
token_roundtrip_mse = mse_of(token_model(token_eval), token_reloaded(token_eval))

token_model4 = get_token_model()
token_model4.set_weights(token_weights)
token_model4.quantize("int4")
token_int4_mse = mse_of(y_token_fp32, token_model4(token_eval))
token_int4_modes = modes(token_model4)

# ---- float8 on a Dense layer --------------------------------------------------------------------
dense8 = layers.Dense(16)
dense8.build((None, 10))
y_dense_fp32 = dense8(x_eval)
dense8.quantize("float8")
float8_mse = mse_of(y_dense_fp32, dense8(x_eval))
float8_variance = float(np.var(keras.ops.convert_to_numpy(y_dense_fp32)))
float8_variables = variables_of(dense8)

print("RESULT " + json.dumps({
    "figures": {"params_float": params_float, "params_int8": int(model.count_params()),
                "params_int4": int(model4.count_params()),
                "int8_variables": int8_variables, "int8_policy": hidden.dtype_policy.name,
                "int8_modes": {"hidden": hidden.quantization_mode, "target": target.quantization_mode},
                "seq_modes": seq_modes, "regex_filter_modes": regex_modes, "callable_filter_modes": callable_modes,
                "int4_layer_variables": int4_layer_variables, "int4_layer_policy": int4_layer_policy,
                "int4_policy": model4.layers[1].dtype_policy.name,
                "token_int8_variables": token_int8_variables, "token_int8_modes": token_int8_modes,
                "token_int4_modes": token_int4_modes, "float8_variables": float8_variables,
                "float8_policy": dense8.dtype_policy.name,
                "reloaded_class": type(int8_reloaded.layers[1]).__name__,
                "final_train_loss": round(float(history.history["loss"][-1]), 4),
                "token_final_loss": round(float(token_history.history["loss"][-1]), 4),
                "int8_eval_loss": round(evaluate_int8_loss, 4)},
    "checks": {"int8_close_to_float": int8_mse < 1e-3 and int8_mse < 0.05 * output_variance,
               "int8_changes_outputs": int8_mse > 0.0,
               "kernel_is_int8": str(kernel_q.dtype) == "int8" and hidden.kernel.dtype == "int8",
               "kernel_uses_int8_range": int(np.abs(kernel_q).max()) == 127,
               "kernel_scale_per_unit": int(np.prod(kernel_scale.shape)) == 32,
               "int8_reload_equal": roundtrip_mse < 1e-10,
               "int8_reload_still_int8": int8_reloaded.layers[1].kernel.dtype == "int8",
               "int8_load_weights_equal": weights_roundtrip_mse < 1e-10,
               "regex_filter_skips_output": regex_modes == {"dense_1": "int8", "output_head": None},
               "callable_filter_skips_output": callable_modes == {"dense_1": "int8", "output_head": None},
               "int4_close_to_float": int4_mse < 5e-2 and int4_mse < 0.1 * int4_variance,
               "int4_reload_equal": int4_roundtrip_mse < 1e-10,
               "token_model_learns": token_history.history["loss"][-1] < 0.25 * float(np.var(token_y)),
               "token_int8_close": token_int8_mse < 0.05 * token_variance,
               "token_int4_close": token_int4_mse < 0.2 * token_variance,
               "token_int8_reload_equal": token_roundtrip_mse < 1e-10,
               "float8_close": float8_mse < 0.05 * float8_variance},
    "info": {"int8_mse": int8_mse, "int4_mse": int4_mse, "output_variance": output_variance,
             "token_int8_mse": token_int8_mse, "token_int4_mse": token_int4_mse, "token_variance": token_variance,
             "float8_mse": float8_mse, "float8_variance": float8_variance,
             "roundtrip_mse": roundtrip_mse, "weights_roundtrip_mse": weights_roundtrip_mse,
             "loss": [round(v, 4) for v in history.history["loss"]]},
}))
