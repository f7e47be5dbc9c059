"""GroupedQueryAttention (exported as GroupQueryAttention too, Keras 3's name for it): attention in which
`num_query_heads` query heads share `num_key_value_heads` key and value heads (each key/value
head serves num_query_heads / num_key_value_heads query heads; Ainslie et al. 2023).

It is MultiHeadAttention (layers/multi_head_attention.py) with one head size `head_dim` for
queries, keys and values, fewer key/value heads, and (batch, length, features) inputs: the same
masks (the inputs' own, query_mask / value_mask / key_mask, attention_mask, use_causal_mask,
sliding_window), the same attention paths (ops.dot_product_attention, or Keras's masked softmax
and dropout when scores are returned or dropout is on) and the same sub-layers, named and shaped
as Keras's: query (features, Nq, head_dim), key and value (features, Nkv, head_dim), optional gate
(features, Nq, head_dim), attention_output (Nq, head_dim, features). The projected keys and
values are repeated to Nq heads before the attention, as Keras does."""
from .. import ops
from .. import constraints as _constraints
from .. import initializers as _initializers
from .. import regularizers as _regularizers
from .layer import Layer
from .multi_head_attention import MultiHeadAttention, _positive


class GroupedQueryAttention(MultiHeadAttention):
    """Grouped-query attention (see the module docstring). Call as gqa(query, value[, key]) with
    query (B, T, dim), value and key (B, S, dim); returns (B, T, dim) (and the (B, Nq, T, S)
    scores with return_attention_scores=True)."""

    _keras_export_name = "GroupQueryAttention"   # the class name Keras writes and resolves in files

    def __init__(self, head_dim, num_query_heads, num_key_value_heads, dropout=0.0, use_bias=True,
                 sliding_window=None, flash_attention=None, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, use_gate=False, seed=None, **kwargs):
        who = "GroupedQueryAttention"
        head_dim = _positive(who, "head_dim", head_dim)
        num_query_heads = _positive(who, "num_query_heads", num_query_heads)
        num_key_value_heads = _positive(who, "num_key_value_heads", num_key_value_heads)
        if num_query_heads % num_key_value_heads:
            raise ValueError(f"{who}: `num_query_heads` must be divisible by `num_key_value_heads`, received "
                             f"num_query_heads={num_query_heads} and num_key_value_heads={num_key_value_heads}")
        self._num_key_value_heads = num_key_value_heads
        super().__init__(num_query_heads, head_dim, value_dim=head_dim, dropout=dropout, use_bias=use_bias,
                         sliding_window=sliding_window, flash_attention=flash_attention,
                         kernel_initializer=kernel_initializer, bias_initializer=bias_initializer,
                         kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
                         activity_regularizer=activity_regularizer, kernel_constraint=kernel_constraint,
                         bias_constraint=bias_constraint, use_gate=use_gate, seed=seed, **kwargs)

    head_dim = property(lambda self: self._key_dim)
    num_query_heads = property(lambda self: self._num_heads)
    num_key_value_heads = property(lambda self: self._num_key_value_heads)
    num_repeats = property(lambda self: self._num_heads // self._num_key_value_heads)
    _kv_heads = property(lambda self: self._num_key_value_heads)

    def build(self, query_shape, value_shape=None, key_shape=None):
        if isinstance(query_shape, dict):
            return self.build(**query_shape)
        for name, s in (("query", query_shape), ("value", value_shape), ("key", key_shape)):
            if s is not None and len(s) != 3:
                raise ValueError(f"GroupedQueryAttention '{self.name}': expected a {name} of shape (batch, length, "
                                 f"features), received {name} shape {tuple(s)}")
        super().build(query_shape, value_shape, key_shape)
        # Keras's GroupedQueryAttention has no public query_dense / ... properties: its files hold
        # the projections under the private names only
        for alias in ("query_dense", "key_dense", "value_dense", "output_dense"):
            object.__delattr__(self, alias)

    def _project_key_value(self, key, value):
        k, v = super()._project_key_value(key, value)
        if self.num_repeats == 1:
            return k, v
        return ops.repeat(k, self.num_repeats, axis=2), ops.repeat(v, self.num_repeats, axis=2)

    def compute_output_shape(self, query_shape, value_shape=None, key_shape=None):
        if value_shape is not None and query_shape[-1] != value_shape[-1]:
            raise ValueError(f"GroupedQueryAttention '{self.name}': the last dimension of `query_shape` and "
                             f"`value_shape` must be equal, but are {query_shape[-1]}, {value_shape[-1]}. Received: "
                             f"query_shape={tuple(query_shape)}, value_shape={tuple(value_shape)}")
        return super().compute_output_shape(query_shape, value_shape, key_shape)

    def get_config(self):
        return {**Layer.get_config(self), "head_dim": self._key_dim, "num_query_heads": self._num_heads,
                "num_key_value_heads": self._num_key_value_heads, "use_bias": self._use_bias,
                "use_gate": self._use_gate, "sliding_window": self._sliding_window, "dropout": self._dropout,
                "kernel_initializer": _initializers.serialize(self._kernel_initializer),
                "bias_initializer": _initializers.serialize(self._bias_initializer),
                "kernel_regularizer": _regularizers.serialize(self._kernel_regularizer),
                "bias_regularizer": _regularizers.serialize(self._bias_regularizer),
                "activity_regularizer": _regularizers.serialize(self._activity_regularizer),
                "kernel_constraint": _constraints.serialize(self._kernel_constraint),
                "bias_constraint": _constraints.serialize(self._bias_constraint), "seed": self.seed}


GroupQueryAttention = GroupedQueryAttention   # the name Keras exports it under
