"""Pipeline: a sequence of layers applied one after the other as one layer, as Keras 3's
(keras/src/layers/preprocessing/pipeline.py), meant for preprocessing and augmentation chains
(`Pipeline([RandomFlip(), RandomRotation(0.1)])`). Unlike a Sequential model it is a plain
layer: no compile / fit, any input structure the first layer takes."""
from .layer import Layer, name_scope


class Pipeline(Layer):
    """Calls `layers` in order, each on the previous one's output. `training` (default True, as
    Keras's signature) is passed to the layers whose call takes it; each layer's output mask is
    passed on as the next one's `mask`."""

    def __init__(self, layers, name=None):
        if not isinstance(layers, (list, tuple)) or not all(isinstance(l, Layer) for l in layers):
            raise ValueError(f"Pipeline: `layers` must be a list of Layer instances, received {layers!r}")
        super().__init__(name=name)
        self._pipeline_layers = list(layers)
        self.supports_masking = True

    @property
    def layers(self):
        return self._pipeline_layers

    def call(self, inputs, training=True, mask=None):
        if training is None:
            training = True
        outputs = inputs
        with name_scope(self):     # layers built on their first call: weight paths pipeline/layer/weight
            for layer in self._pipeline_layers:
                kwargs = {}
                if layer._call_has_mask:
                    kwargs["mask"] = mask
                if layer._call_has_training:
                    kwargs["training"] = training
                outputs = layer(inputs, **kwargs)
                inputs = outputs
                mask = getattr(outputs, "_keras_mask", None)
        return outputs

    def compute_mask(self, inputs, mask=None):
        return None   # each call carries its last layer's mask on the output

    def get_config(self):
        from .serialization import serialize
        return {"layers": [serialize(l) for l in self._pipeline_layers], "name": self.name}

    @classmethod
    def from_config(cls, config, custom_objects=None):
        from .serialization import deserialize
        layers = config.get("layers")
        if not isinstance(layers, (list, tuple)):
            raise ValueError("Pipeline: the config must hold a `layers` key mapping to a list of serialized layers, "
                             f"received layers={layers!r}")
        config = {**config, "layers": [deserialize(l, custom_objects) if isinstance(l, dict) else l for l in layers]}
        return cls(**config)
