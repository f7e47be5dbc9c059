import keras
# Scenario: customizing saving and serialization (guides/serialization_and_saving and
# guides/customizing_saving_and_serialization, Keras 3 versions): keras.saving.get_custom_objects()
# cleared, a CustomLayer(factor) registered with keras.saving.register_keras_serializable(
# package="MyLayers") and a custom_fn activation registered as "my_package>custom_fn", a functional
# model saved to .keras and reloaded three ways (registration, custom_objects=, and
# keras.saving.custom_object_scope) with predictions compared; keras.saving.get_registered_name /
# get_registered_object; model.to_json + keras.models.model_from_json; the guide's MyDense
# (registered name "MyLayers>KernelMult", regularizer and initializer in its config) and a
# CustomModel layer whose from_config deserializes its sublayers, serialized with
# keras.layers.serialize/deserialize and rebuilt with keras.Model.from_config; a Dense subclass
# with an extra keras.Variable saved with save_own_variables/load_own_variables; a layer whose
# build(input_shape, layer_init) is restored with get_build_config/build_from_config; a Model
# subclass with custom compile() restored with get_compile_config/compile_from_config (a
# registered loss and metric function), each trained briefly, saved to .keras and reloaded.
# Thresholds: every reloaded model predicts as the original (atol 1e-5), the custom variable,
# build config and compile config survive the round trip, the registry lookups name the right
# objects, the JSON round trip rebuilds the same architecture, and each training loss is finite.
import json
import os
import tempfile

import numpy as np
from keras import ops

keras.utils.set_random_seed(5)
rng = np.random.default_rng(0)
work = tempfile.mkdtemp()


def path(name):
    return os.path.join(work, name)


def same(a, b):
    return bool(np.allclose(a, b, atol=1e-5))


# ---- Registering custom objects ----
# Clear all previously registered custom objects
keras.saving.get_custom_objects().clear()


# Upon registration, you can optionally specify a package or a name.
# If left blank, the package defaults to `Custom` and the name defaults to
# the class name.
@keras.saving.register_keras_serializable(package="MyLayers")
class CustomLayer(keras.layers.Layer):
    def __init__(self, factor):
        super().__init__()
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {"factor": self.factor}


@keras.saving.register_keras_serializable(package="my_package", name="custom_fn")
def custom_fn(x):
    return x**2


# Create the model.
def get_model():
    inputs = keras.Input(shape=(4,))
    mid = CustomLayer(0.5)(inputs)
    outputs = keras.layers.Dense(1, activation=custom_fn)(mid)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer="rmsprop", loss="mean_squared_error")
    return model


# Train the model.
def train_model(model):
    input = rng.random((32, 4))
    target = rng.random((32, 1))
    history = model.fit(input, target, verbose=0)
    return model, history.history["loss"][-1]


test_input = rng.random((4, 4))
test_target = rng.random((4, 1))

model = get_model()
model, registered_loss = train_model(model)
model.save(path("custom_model.keras"))

# Now, we can simply load without worrying about our custom objects.
reconstructed_model = keras.models.load_model(path("custom_model.keras"))
registered_round_trip = same(model.predict(test_input, verbose=0), reconstructed_model.predict(test_input, verbose=0))
reloaded_layer_classes = [layer.__class__.__name__ for layer in reconstructed_model.layers]
reloaded_factor = reconstructed_model.layers[1].factor

# ---- Passing custom objects to `load_model()` ----
model = get_model()
model, _ = train_model(model)
model.save(path("custom_model.keras"))

# Upon loading, pass a dict containing the custom objects used in the
# `custom_objects` argument of `keras.models.load_model()`.
reconstructed_model = keras.models.load_model(
    path("custom_model.keras"),
    custom_objects={"CustomLayer": CustomLayer, "custom_fn": custom_fn},
)
custom_objects_round_trip = same(model.predict(test_input, verbose=0),
                                 reconstructed_model.predict(test_input, verbose=0))

# ---- Using a custom object scope ----
model = get_model()
model, _ = train_model(model)
model.save(path("custom_model.keras"))

# Pass the custom objects dictionary to a custom object scope and place
# the `keras.models.load_model()` call within the scope.
custom_objects = {"CustomLayer": CustomLayer, "custom_fn": custom_fn}

with keras.saving.custom_object_scope(custom_objects):
    reconstructed_model = keras.models.load_model(path("custom_model.keras"))
scope_round_trip = same(model.predict(test_input, verbose=0), reconstructed_model.predict(test_input, verbose=0))

# ---- the registry ----
registered_names = [keras.saving.get_registered_name(CustomLayer), keras.saving.get_registered_name(custom_fn),
                    keras.saving.get_registered_name(keras.layers.Dense)]
registry_lookups = (keras.saving.get_registered_object("MyLayers>CustomLayer") is CustomLayer
                    and keras.saving.get_registered_object("my_package>custom_fn") is custom_fn
                    and keras.saving.get_registered_object("CustomLayer", custom_objects=custom_objects)
                    is CustomLayer)
registered_keys = sorted(keras.saving.get_custom_objects())

# ---- to_json() and keras.models.model_from_json() ----
json_config = model.to_json()
new_model = keras.models.model_from_json(json_config)
json_same_architecture = ([layer.__class__.__name__ for layer in new_model.layers]
                          == [layer.__class__.__name__ for layer in model.layers]
                          and new_model.count_params() == model.count_params()
                          and new_model.layers[1].factor == model.layers[1].factor)
new_model.set_weights(model.get_weights())
json_same_predictions = same(model.predict(test_input, verbose=0), new_model.predict(test_input, verbose=0))
json_top_keys = sorted(json.loads(json_config))


# ---- Defining the config methods ----
@keras.saving.register_keras_serializable(package="MyLayers", name="KernelMult")
class MyDense(keras.layers.Layer):
    def __init__(
        self,
        units,
        *,
        kernel_regularizer=None,
        kernel_initializer=None,
        nested_model=None,
        **kwargs
    ):
        super().__init__(**kwargs)
        self.hidden_units = units
        self.kernel_regularizer = kernel_regularizer
        self.kernel_initializer = kernel_initializer
        self.nested_model = nested_model

    def get_config(self):
        config = super().get_config()
        # Update the config with the custom layer's parameters
        config.update(
            {
                "units": self.hidden_units,
                "kernel_regularizer": self.kernel_regularizer,
                "kernel_initializer": self.kernel_initializer,
                "nested_model": self.nested_model,
            }
        )
        return config

    def build(self, input_shape):
        input_units = input_shape[-1]
        self.kernel = self.add_weight(
            name="kernel",
            shape=(input_units, self.hidden_units),
            regularizer=self.kernel_regularizer,
            initializer=self.kernel_initializer,
        )

    def call(self, inputs):
        return ops.matmul(inputs, self.kernel)


layer = MyDense(units=16, kernel_regularizer="l1", kernel_initializer="ones")
layer3 = MyDense(units=64, nested_model=layer)

config = keras.layers.serialize(layer3)
new_layer = keras.layers.deserialize(config)
mydense_serialized = {"class_name": config["class_name"], "registered_name": config["registered_name"],
                      "module": config.get("module"), "units": config["config"]["units"],
                      "nested_registered_name": config["config"]["nested_model"]["registered_name"]}
mydense_deserialized = [new_layer.__class__.__name__, new_layer.hidden_units,
                        # no from_config: the nested layer stays its serialized config (a dict)
                        isinstance(new_layer.nested_model, dict), new_layer.nested_model["registered_name"]]

regularized = MyDense(units=16, kernel_regularizer=keras.regularizers.L1L2(l1=1e-5, l2=1e-4),
                      kernel_initializer="ones")
regularized_config = keras.layers.serialize(regularized)
regularizer_class = regularized_config["config"]["kernel_regularizer"]["class_name"]


@keras.saving.register_keras_serializable(package="ComplexModels")
class CustomModel(keras.layers.Layer):
    def __init__(self, first_layer, second_layer=None, **kwargs):
        super().__init__(**kwargs)
        self.first_layer = first_layer
        if second_layer is not None:
            self.second_layer = second_layer
        else:
            self.second_layer = keras.layers.Dense(8)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "first_layer": self.first_layer,
                "second_layer": self.second_layer,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        # Note that you can also use `keras.saving.deserialize_keras_object` here
        config["first_layer"] = keras.layers.deserialize(config["first_layer"])
        config["second_layer"] = keras.layers.deserialize(config["second_layer"])
        return cls(**config)

    def call(self, inputs):
        return self.first_layer(self.second_layer(inputs))


# Let's make our first layer the custom layer from the previous example (MyDense)
inputs = keras.Input((32,))
outputs = CustomModel(first_layer=layer)(inputs)
model = keras.Model(inputs, outputs)

config = model.get_config()
new_model = keras.Model.from_config(config)
complex_shapes = [list(model.output.shape), list(new_model.output.shape)]
complex_params = [int(model.count_params()), int(new_model.count_params())]
complex_sublayers = [new_model.layers[1].first_layer.__class__.__name__,
                     new_model.layers[1].second_layer.__class__.__name__]


# ---- save_own_variables() and load_own_variables() ----
@keras.saving.register_keras_serializable(package="my_custom_package")
class LayerWithCustomVariable(keras.layers.Dense):
    def __init__(self, units, **kwargs):
        super().__init__(units, **kwargs)
        self.my_variable = keras.Variable(
            rng.random((units,)), name="my_variable", dtype="float32"
        )

    def save_own_variables(self, store):
        super().save_own_variables(store)
        # Stores the value of the variable upon saving
        store["variables"] = self.my_variable.numpy()

    def load_own_variables(self, store):
        # Assigns the value of the variable upon loading
        self.my_variable.assign(store["variables"])
        # Load the remaining weights (the guide loops over self.weights, which in Keras 3 also
        # holds my_variable, tracked first: the Dense weights that super() stored are these two)
        for i, v in enumerate([self.kernel, self.bias]):
            v.assign(store[f"{i}"])
        # Note: You must specify how all variables (including layer weights)
        # are loaded in `load_own_variables.`

    def call(self, inputs):
        dense_out = super().call(inputs)
        return dense_out + self.my_variable


model = keras.Sequential([LayerWithCustomVariable(1)])

ref_input = rng.random((8, 10))
ref_output = rng.random((8, 10))
model.compile(optimizer="adam", loss="mean_squared_error")
custom_variable_loss = model.fit(ref_input, ref_output, verbose=0).history["loss"][-1]

model.save(path("custom_vars_model.keras"))
restored_model = keras.models.load_model(path("custom_vars_model.keras"))

custom_variable_restored = same(model.layers[0].my_variable.numpy(), restored_model.layers[0].my_variable.numpy())
custom_variable_predictions = same(model.predict(ref_input, verbose=0), restored_model.predict(ref_input, verbose=0))
custom_variable_weights = [list(w.shape) for w in restored_model.layers[0].weights]


# ---- get_build_config() and build_from_config() ----
@keras.saving.register_keras_serializable(package="my_custom_package")
class LayerWithCustomBuild(keras.layers.Layer):
    def __init__(self, units=32, **kwargs):
        super().__init__(**kwargs)
        self.units = units

    def call(self, inputs):
        return keras.ops.matmul(inputs, self.w) + self.b

    def get_config(self):
        return dict(units=self.units, **super().get_config())

    def build(self, input_shape, layer_init):
        # Note the overriding of `build()` to add an extra argument.
        # Therefore, we will need to manually call build with `layer_init` argument
        # before the first execution of `call()`.
        super().build(input_shape)
        self._input_shape = input_shape
        self.w = self.add_weight(
            shape=(input_shape[-1], self.units),
            initializer=layer_init,
            trainable=True,
        )
        self.b = self.add_weight(
            shape=(self.units,),
            initializer=layer_init,
            trainable=True,
        )
        self.layer_init = layer_init

    def get_build_config(self):
        build_config = {
            "layer_init": self.layer_init,
            "input_shape": self._input_shape,
        }  # Stores our initializer for `build()`
        return build_config

    def build_from_config(self, config):
        # Calls `build()` with the parameters at loading time
        self.build(config["input_shape"], config["layer_init"])


custom_layer = LayerWithCustomBuild(units=16)
custom_layer.build(input_shape=(8,), layer_init="random_normal")

model = keras.Sequential(
    [
        custom_layer,
        keras.layers.Dense(1, activation="sigmoid"),
    ]
)

x = rng.random((16, 8))
y = model(x)

model.save(path("custom_build_model.keras"))
restored_model = keras.models.load_model(path("custom_build_model.keras"))

build_config = custom_layer.get_build_config()
restored_layer_init = restored_model.layers[0].layer_init
restored_built = bool(restored_model.built and restored_model.layers[0].built)
custom_build_predictions = same(model.predict(x, verbose=0), restored_model.predict(x, verbose=0))


# ---- get_compile_config() and compile_from_config() ----
@keras.saving.register_keras_serializable(package="my_custom_package")
def small_square_sum_loss(y_true, y_pred):
    loss = keras.ops.square(y_pred - y_true)
    loss = loss / 10.0
    loss = keras.ops.sum(loss, axis=1)
    return loss


@keras.saving.register_keras_serializable(package="my_custom_package")
def mean_pred(y_true, y_pred):
    return keras.ops.mean(y_pred)


@keras.saving.register_keras_serializable(package="my_custom_package")
class ModelWithCustomCompile(keras.Model):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.dense1 = keras.layers.Dense(8, activation="relu")
        self.dense2 = keras.layers.Dense(4, activation="softmax")

    def call(self, inputs):
        x = self.dense1(inputs)
        return self.dense2(x)

    def compile(self, optimizer, loss_fn, metrics):
        super().compile(optimizer=optimizer, loss=loss_fn, metrics=metrics)
        self.model_optimizer = optimizer
        self.loss_fn = loss_fn
        self.loss_metrics = metrics

    def get_compile_config(self):
        # These parameters will be serialized at saving time.
        return {
            "model_optimizer": self.model_optimizer,
            "loss_fn": self.loss_fn,
            "metric": self.loss_metrics,
        }

    def compile_from_config(self, config):
        # Deserializes the compile parameters (important, since many are custom)
        optimizer = keras.utils.deserialize_keras_object(config["model_optimizer"])
        loss_fn = keras.utils.deserialize_keras_object(config["loss_fn"])
        metrics = keras.utils.deserialize_keras_object(config["metric"])

        # Calls compile with the deserialized parameters
        self.compile(optimizer=optimizer, loss_fn=loss_fn, metrics=metrics)


model = ModelWithCustomCompile()
model.compile(
    optimizer="SGD", loss_fn=small_square_sum_loss, metrics=["accuracy", mean_pred]
)

x = rng.random((16, 8))
y = rng.random((16, 4))

compile_history = model.fit(x, y, verbose=0)

model.save(path("custom_compile_model.keras"))
restored_model = keras.models.load_model(path("custom_compile_model.keras"))

compile_config_restored = (model.model_optimizer == restored_model.model_optimizer
                           and model.loss_fn is restored_model.loss_fn
                           and model.loss_metrics == restored_model.loss_metrics)
custom_compile_predictions = same(model.predict(x, verbose=0), restored_model.predict(x, verbose=0))
restored_history = restored_model.fit(x, y, verbose=0)

print("RESULT " + json.dumps({
    "figures": {"reloaded_layer_classes": reloaded_layer_classes, "reloaded_factor": reloaded_factor,
                "registered_names": registered_names, "registered_keys": registered_keys,
                "json_top_keys": json_top_keys, "mydense_serialized": mydense_serialized,
                "mydense_deserialized": mydense_deserialized, "regularizer_class": regularizer_class,
                "complex_shapes": complex_shapes, "complex_params": complex_params,
                "complex_sublayers": complex_sublayers, "custom_variable_weights": custom_variable_weights,
                "build_config": build_config, "restored_layer_init": restored_layer_init,
                "restored_loss_fn": restored_model.loss_fn.__name__,
                "restored_metrics": [m if isinstance(m, str) else m.__name__ for m in restored_model.loss_metrics],
                "compile_history_keys": sorted(compile_history.history),
                "restored_history_keys": sorted(restored_history.history),
                "registered_loss": round(registered_loss, 4),
                "custom_variable_loss": round(custom_variable_loss, 4)},
    "checks": {"registered_round_trip": registered_round_trip, "custom_objects_round_trip": custom_objects_round_trip,
               "custom_object_scope_round_trip": scope_round_trip, "registry_lookups": bool(registry_lookups),
               "json_same_architecture": bool(json_same_architecture), "json_same_predictions": json_same_predictions,
               "complex_model_rebuilt": complex_shapes[0] == complex_shapes[1]
               and complex_params[0] == complex_params[1],
               "custom_variable_restored": custom_variable_restored,
               "custom_variable_predictions": custom_variable_predictions,
               "build_config_restored": restored_layer_init == "random_normal" and restored_built,
               "custom_build_predictions": custom_build_predictions,
               "compile_config_restored": bool(compile_config_restored),
               "custom_compile_predictions": custom_compile_predictions,
               "losses_finite": bool(np.isfinite([registered_loss, custom_variable_loss,
                                                  compile_history.history["loss"][-1],
                                                  restored_history.history["loss"][-1]]).all())},
    "info": {"compile_loss": round(compile_history.history["loss"][-1], 4),
             "restored_compile_loss": round(restored_history.history["loss"][-1], 4),
             "json_length": len(json_config)},
}))
