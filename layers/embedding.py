"""Embedding: a trainable lookup table from integer ids to dense vectors (Keras's Embedding)."""
from .. import constraints as _constraints
from .. import initializers as _initializers
from .. import ops
from .. import regularizers as _regularizers
from ..backend import dtypes, validation
from .layer import Layer


def _initializer(identifier):
    # Keras's "uniform" (the default here) is RandomUniform(-0.05, 0.05), "normal" RandomNormal(0, 0.05)
    if identifier == "uniform":
        return _initializers.RandomUniform(-0.05, 0.05)
    if identifier == "normal":
        return _initializers.RandomNormal(0.0, 0.05)
    return _initializers.get(identifier)


from .quantization import quantization_config  # noqa: E402


class Embedding(Layer):
    """Maps integer ids in [0, input_dim) to rows of `embeddings` (input_dim, output_dim).

    Inputs of any shape (batch, ...) give outputs (batch, ..., output_dim); float inputs are cast
    to int32. With `mask_zero=True` id 0 is padding: `compute_mask(inputs)` returns `inputs != 0`
    (pass it as `mask=` to a recurrent layer), and `input_dim` must count id 0."""

    def __init__(self, input_dim, output_dim, embeddings_initializer="uniform", embeddings_regularizer=None,
                 embeddings_constraint=None, mask_zero=False, weights=None, lora_rank=None, lora_alpha=None,
                 quantization_config=None, **kwargs):
        super().__init__(**kwargs)
        self.input_dim = validation.positive_int("Embedding", "input_dim", input_dim)
        self.output_dim = validation.positive_int("Embedding", "output_dim", output_dim)
        if lora_rank is not None:
            raise ValueError("Embedding: LoRA (lora_rank) is not supported by lamina; leave it None")
        from .quantization import check_quantization_config
        if check_quantization_config(quantization_config, "Embedding") and \
                not getattr(self, "_pending_quantization", None):
            self._pending_quantization = "int8"  # quantized once built (a Keras int8 layer's config)
        self.embeddings_initializer = _initializer(embeddings_initializer)
        self.embeddings_regularizer = _regularizers.get(embeddings_regularizer)
        self.embeddings_constraint = _constraints.get(embeddings_constraint)
        self.mask_zero = bool(mask_zero)
        self.supports_masking = self.mask_zero
        self._initial_weights = weights

    def build(self, input_shape=None):
        validation.check_weight(self, "embeddings", (self.input_dim, self.output_dim), self.dtype)
        self.embeddings = self.add_weight(name="embeddings", shape=(self.input_dim, self.output_dim),
                                          initializer=self.embeddings_initializer,
                                          regularizer=self.embeddings_regularizer,
                                          constraint=self.embeddings_constraint)
        if self._initial_weights is not None:
            self.set_weights(self._initial_weights)
            self._initial_weights = None

    def call(self, inputs):
        ids = inputs if dtypes.is_int(inputs.dtype) else ops.cast(inputs, "int32")
        try:
            return ops.embedding_lookup(self.embeddings, ids)
        except ValueError as e:
            raise ValueError(f"Embedding '{self.name}' (input_dim={self.input_dim}): {e}. Ids must lie in "
                             f"[0, {self.input_dim}); inputs of shape {inputs.shape}") from None

    def compute_mask(self, inputs, mask=None):
        if not self.mask_zero:
            return None
        return ops.not_equal(ops.convert_to_tensor(inputs), 0)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape) + (self.output_dim,)

    def get_config(self):
        return {**super().get_config(), "input_dim": self.input_dim, "output_dim": self.output_dim,
                "embeddings_initializer": _initializers.serialize(self.embeddings_initializer),
                "embeddings_regularizer": _regularizers.serialize(self.embeddings_regularizer),
                "activity_regularizer": _regularizers.serialize(self.activity_regularizer),
                "embeddings_constraint": _constraints.serialize(self.embeddings_constraint),
                "mask_zero": self.mask_zero,
                "quantization_config": quantization_config() if self.quantization_mode is not None else None}
