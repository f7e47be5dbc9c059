"""Embedding: a trainable lookup table from integer ids to dense vectors (Keras's Embedding)."""
import numpy as np

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
        self.lora_rank = validation.positive_int("Embedding", "lora_rank", lora_rank) if lora_rank is not None \
            else None
        if lora_alpha is not None and (isinstance(lora_alpha, bool) or not isinstance(lora_alpha, (int, float))
                                       or lora_alpha <= 0):
            raise ValueError(f"Embedding: `lora_alpha` must be a positive number, received lora_alpha={lora_alpha!r}")
        self.lora_alpha = lora_alpha if lora_alpha is not None else self.lora_rank
        self.lora_enabled = False
        from .quantization import check_quantization_config
        qmode = check_quantization_config(quantization_config, "Embedding")
        if qmode and not getattr(self, "_pending_quantization", None):
            self._pending_quantization = qmode  # quantized once built (a Keras int8 / int4 layer's config)
        self.embeddings_initializer = _initializer(embeddings_initializer)
        self.embeddings_regularizer = _regularizers.get(embeddings_regularizer)
        self.embeddings_constraint = _constraints.get(embeddings_constraint)
        self.mask_zero = bool(mask_zero)
        self.supports_masking = self.mask_zero
        self._initial_weights = weights

    def build(self, input_shape=None):
        validation.check_weight(self, "embeddings", (self.input_dim, self.output_dim), self.dtype)
        self.embeddings = self.add_weight(name="embeddings", autocast=False, shape=(self.input_dim, self.output_dim),
                                          initializer=self.embeddings_initializer,
                                          regularizer=self.embeddings_regularizer,
                                          constraint=self.embeddings_constraint)
        if self._initial_weights is not None:
            self.set_weights(self._initial_weights)
            self._initial_weights = None
        if self.lora_rank:
            self.built = True
            self.enable_lora(self.lora_rank, self.lora_alpha)

    def enable_lora(self, rank, lora_alpha=None, a_initializer="he_uniform", b_initializer="zeros"):
        """Keras's enable_lora: freezes `embeddings` and trains a low-rank update
        (lora_alpha / rank) * lora_embeddings_a (input_dim, rank) @ lora_embeddings_b (rank, output_dim)."""
        from .core import enable_lora_on
        enable_lora_on(self, "embeddings", rank, lora_alpha, a_initializer, b_initializer, weight="embeddings",
                       what="embedding")

    def merged_embeddings(self):
        """The table the layer looks up: with LoRA, embeddings + (alpha / rank) * a @ b."""
        if not self.lora_enabled:
            return self.embeddings
        delta = ops.matmul(self.lora_embeddings_a, self.lora_embeddings_b)
        return ops.add(self.embeddings, ops.multiply(delta, float(self.lora_alpha) / self.lora_rank))

    def save_own_variables(self, store):
        """As Keras: with LoRA the merged table is saved, not the factors."""
        if not self.lora_enabled or not self.built:
            return Layer.save_own_variables(self, store)
        store["0"] = self.merged_embeddings().numpy()

    def load_own_variables(self, store):
        """As Keras: the table is assigned; with LoRA the factors restart at zero."""
        if not self.lora_enabled:
            return Layer.load_own_variables(self, store)
        if len(store.keys()) != 1 or tuple(np.asarray(store["0"]).shape) != self.embeddings.shape:
            raise ValueError(f"Weight mismatch for {type(self).__name__} '{self.name}' (LoRA): it expects one saved "
                             f"table of shape {self.embeddings.shape}, the file has {len(store.keys())} variable(s)")
        self.embeddings.assign(np.asarray(store["0"]))
        self.lora_embeddings_a.assign(np.zeros(self.lora_embeddings_a.shape, np.float32))
        self.lora_embeddings_b.assign(np.zeros(self.lora_embeddings_b.shape, np.float32))

    def call(self, inputs):
        ids = inputs if dtypes.is_int(inputs.dtype) else ops.cast(inputs, "int32")
        try:
            out = ops.embedding_lookup(self.embeddings, ids)
        except ValueError as e:
            raise ValueError(f"{type(self).__name__} '{self.name}' (input_dim={self.input_dim}): {e}. Ids must lie in "
                             f"[0, {self.input_dim}); inputs of shape {inputs.shape}") from None
        if self.lora_enabled:   # the looked-up rows of a, times b: the merged table's rows
            low = ops.matmul(ops.embedding_lookup(self.lora_embeddings_a, ids), self.lora_embeddings_b)
            out = ops.add(out, ops.multiply(low, float(self.lora_alpha) / self.lora_rank))
        return out

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
                "quantization_config": quantization_config(self) if self.quantization_mode is not None else None,
                **({"lora_rank": self.lora_rank, "lora_alpha": self.lora_alpha} if self.lora_rank else {})}


class ReversibleEmbedding(Embedding):
    """An Embedding that also maps back from the embedding space to logits over the vocabulary,
    as Keras's ReversibleEmbedding (language-model heads that share the input embedding):
    `layer(ids)` embeds (batch, ...) ids to (batch, ..., output_dim); `layer(x, reverse=True)`
    maps (batch, ..., output_dim) to (batch, ..., input_dim) logits x @ embeddings.T, or
    x @ reverse_embeddings (output_dim, input_dim) with `tie_weights=False` (a second weight,
    initialized like the embeddings). `logit_soft_cap` c: logits -> c * tanh(logits / c).
    lamina computes in float32: `reverse_dtype` may be None or "float32". Quantization is not
    available for this layer."""

    def __init__(self, input_dim, output_dim, tie_weights=True, embeddings_initializer="uniform",
                 embeddings_regularizer=None, embeddings_constraint=None, mask_zero=False, reverse_dtype=None,
                 logit_soft_cap=None, **kwargs):
        who = "ReversibleEmbedding"
        if kwargs.get("lora_rank") is not None:
            raise ValueError(f"{who}: LoRA is not available for this layer in lamina (its reverse product would need "
                             "the merged table); leave lora_rank None, or use Embedding")
        if kwargs.get("quantization_config") is not None:
            raise ValueError(f"{who}: quantization is not available for this layer in lamina; leave "
                             "quantization_config None")
        super().__init__(input_dim, output_dim, embeddings_initializer=embeddings_initializer,
                         embeddings_regularizer=embeddings_regularizer, embeddings_constraint=embeddings_constraint,
                         mask_zero=mask_zero, **kwargs)
        try:
            float32 = reverse_dtype is None or dtypes.standardize(reverse_dtype) == dtypes.FLOAT32
        except TypeError:
            float32 = False
        if not float32:
            raise ValueError(f"{who}: reverse_dtype={reverse_dtype!r} is not supported (lamina computes in float32); "
                             "pass None or 'float32'")
        if logit_soft_cap is not None and (isinstance(logit_soft_cap, bool) or
                                           not isinstance(logit_soft_cap, (int, float)) or not logit_soft_cap > 0):
            raise ValueError(f"{who}: `logit_soft_cap` must be None or a positive number, received "
                             f"logit_soft_cap={logit_soft_cap!r}")
        self.tie_weights = bool(tie_weights)
        self.reverse_dtype = reverse_dtype
        self.logit_soft_cap = logit_soft_cap

    def build(self, input_shape=None):
        super().build(input_shape)
        if not self.tie_weights:
            validation.check_weight(self, "reverse_embeddings", (self.output_dim, self.input_dim), self.dtype)
            self.reverse_embeddings = self.add_weight(name="reverse_embeddings",
                                                      shape=(self.output_dim, self.input_dim),
                                                      initializer=self.embeddings_initializer)

    def call(self, inputs, reverse=False):
        if not reverse:
            out = super().call(inputs)
            mask = Embedding.compute_mask(self, inputs)
            if mask is not None:
                out._keras_mask = mask
            return out
        x = inputs if dtypes.is_float(inputs.dtype) else ops.cast(inputs, dtypes.FLOAT32)
        if x.ndim == 0 or x.shape[-1] != self.output_dim:
            raise ValueError(f"ReversibleEmbedding '{self.name}': reverse=True maps vectors of size output_dim="
                             f"{self.output_dim} to logits, received inputs of shape {x.shape}")
        kernel = ops.transpose(self.embeddings) if self.tie_weights else self.reverse_embeddings
        logits = ops.matmul(x, kernel)
        if self.logit_soft_cap is not None:
            cap = float(self.logit_soft_cap)
            logits = ops.multiply(ops.tanh(ops.divide(logits, cap)), cap)
        return logits

    def compute_mask(self, inputs, mask=None):
        return None   # the forward call sets its output's mask itself; logits carry none (as Keras)

    def compute_output_shape(self, input_shape, reverse=False):
        if reverse:
            return tuple(input_shape[:-1]) + (self.input_dim,)
        return tuple(input_shape) + (self.output_dim,)

    def compute_output_dtype(self, input_dtypes):
        return dtypes.FLOAT32

    def quantize(self, mode, type_check=True, config=None):
        raise NotImplementedError(f"ReversibleEmbedding '{self.name}'.quantize: quantization is not available for "
                                  "this layer in lamina (its reverse projection has no int8 form); keep it in float32")

    def get_config(self):
        return {**super().get_config(), "tie_weights": self.tie_weights, "reverse_dtype": self.reverse_dtype,
                "logit_soft_cap": self.logit_soft_cap}
