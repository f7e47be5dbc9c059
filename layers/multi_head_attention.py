"""MultiHeadAttention, as Keras 3's (keras/src/layers/attention/multi_head_attention.py).

`mha(query, value, key=None)` with query (B, T, dim), value and key (B, S, dim): query, key and
value are projected to N heads by EinsumDense sub-layers ("query", "key", "value": kernels
(dim, N, key_dim) / (dim, N, value_dim), biases (N, key_dim) / (N, value_dim)), the scores
softmax(query . key / sqrt(key_dim)) over the key positions weight the values, and the heads are
projected back by "attention_output" (kernel (N, value_dim, out), bias (out,)) to the query's
last dimension or `output_shape`. Weights, names and order are Keras's, so `get_weights` /
`set_weights` move them between the two libraries, and saved files put the sub-layers under
Keras's paths (`query_dense`, `key_dense`, `value_dense`, `output_dense`, `_softmax`,
`_dropout_layer`, `_gate_dense`).

Masks (True = attend), combined with a logical and, as Keras combines them: the query's mask
(B, T), the value's and the key's (B, S) (each from Embedding(mask_zero=True) / Masking upstream,
or given as `query_mask=` / `value_mask=` / `key_mask=`, which win; the key's only when a key is
given; Keras 3.15 ignores an explicit `query_mask=` and reads only the query's own mask), the
causal mask (`use_causal_mask=True`), a `sliding_window` band and `attention_mask` (B, T, S).
As in Keras, without dropout, without `return_attention_scores` and for (B, T, dim) inputs the
attention is `ops.dot_product_attention` (a masked logit is -0.7 * float32 max, so a fully masked
query row averages all values), which runs the fused attention kernel unless
`flash_attention=False`; otherwise the scores go through Keras's masked softmax (masked
logits -1e9, masked probabilities then zeroed, so a fully masked row is all zeros) and attention
dropout (seeded by `seed`, applied only in training). `flash_attention=True` requires the fused
kernel: with dropout or `return_attention_scores` it is an error, as in Keras. The output
carries the query's mask.

`attention_axes` attends over other axes of higher-rank inputs: with query (B, X, Y, dim),
attention_axes=(1, 2) attends over X and Y together (scores (B, N, X, Y, X', Y')).
`use_gate=True` multiplies the attention by sigmoid(a projection of the query) before the output
projection (Keras's gated attention).
"""
import math
import string

import numpy as np

from .. import constraints as _constraints
from .. import initializers as _initializers
from .. import ops
from .. import regularizers as _regularizers
from ..backend.settings import is_flash_attention_enabled
from ..backend.device import _scope as _device_scope, current_device
from ..backend.tensor import Tensor
from .core import Dropout, Softmax
from .einsum_dense import EinsumDense
from .layer import Layer, _move

_MASKED_SCORE = -1e9   # Keras's Softmax layer: masked inputs (float32)


def _letter(i):
    return string.ascii_lowercase[i]


def _build_proj_equation(free_dims, bound_dims, output_dims):
    """(equation, bias_axes, output rank) of a projection (Keras's `_build_proj_equation`)."""
    input_str = kernel_str = output_str = bias_axes = ""
    for i in range(free_dims):
        input_str += _letter(i)
        output_str += _letter(i)
    for i in range(free_dims, free_dims + bound_dims):
        input_str += _letter(i)
        kernel_str += _letter(i)
    for i in range(free_dims + bound_dims, free_dims + bound_dims + output_dims):
        kernel_str += _letter(i)
        output_str += _letter(i)
        bias_axes += _letter(i)
    return f"{input_str},{kernel_str}->{output_str}", bias_axes, len(output_str)


def _get_output_shape(output_rank, known_last_dims):
    return [None] * (output_rank - len(known_last_dims)) + list(known_last_dims)


def _build_attention_equation(rank, attn_axes):
    """(query-key equation, combine equation, scores rank) for projected tensors of `rank`
    (Keras's `_build_attention_equation`): scores are (<batch dims>, heads, <query attention
    dims>, <key attention dims>)."""
    target = "".join(_letter(i) for i in range(rank))
    batch_dims = [i for i in range(rank) if i not in attn_axes and i != rank - 1]
    offset, source = rank, ""
    for i in range(rank):
        if i in batch_dims or i == rank - 1:
            source += target[i]
        else:
            source += _letter(offset)
            offset += 1
    product = "".join([target[i] for i in batch_dims] + [target[i] for i in attn_axes]
                      + [source[i] for i in attn_axes])
    return f"{source},{target}->{product}", f"{product},{source}->{target}", len(product)


def _shape(x):
    return tuple(x.shape) if hasattr(x, "shape") and not isinstance(x, (list, tuple)) else tuple(np.shape(x))


def _positive(who, arg, value, allow_none=False):
    if allow_none and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{who}: `{arg}` must be a positive integer{' or None' if allow_none else ''}, received "
                         f"{arg}={value!r}")
    return int(value)


class MultiHeadAttention(Layer):
    """Multi-head attention (see the module docstring)."""

    def __init__(self, num_heads, key_dim, value_dim=None, dropout=0.0, use_bias=True, output_shape=None,
                 attention_axes=None, sliding_window=None, flash_attention=None, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=None, bias_constraint=None, use_gate=False, seed=None, **kwargs):
        who = "MultiHeadAttention"
        self_num_heads = _positive(who, "num_heads", num_heads)
        self_key_dim = _positive(who, "key_dim", key_dim)
        value_dim = _positive(who, "value_dim", value_dim, allow_none=True)
        super().__init__(**kwargs)
        who = f"{type(self).__name__} '{self.name}'"
        if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout <= 1.0:
            raise ValueError(f"{who}: `dropout` must be a number in [0, 1], received dropout={dropout!r}")
        if flash_attention not in (None, True, False):
            raise ValueError(f"{who}: `flash_attention` must be None, True or False, received "
                             f"flash_attention={flash_attention!r}")
        if flash_attention and dropout > 0.0:
            raise ValueError(f"{who}: dropout is not supported when flash attention is enabled (the fused kernel "
                             f"never forms the attention probabilities); received dropout={dropout!r} with "
                             "flash_attention=True: set dropout=0.0 or flash_attention=None")
        # None: lamina.config's choice when the layer is made (disable_flash_attention makes it False)
        self._flash_attention = flash_attention if flash_attention is not None else is_flash_attention_enabled()
        self.supports_masking = True
        self._num_heads, self._key_dim = self_num_heads, self_key_dim
        self._value_dim = value_dim if value_dim else self_key_dim
        self._dropout = float(dropout)
        self._use_bias, self._use_gate = bool(use_bias), bool(use_gate)
        if output_shape:
            if isinstance(output_shape, (int, np.integer)) and not isinstance(output_shape, bool):
                output_shape = (output_shape,)
            if not isinstance(output_shape, (list, tuple)) or not all(
                    isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d > 0 for d in output_shape):
                raise ValueError(f"{who}: invalid `output_shape` {output_shape!r}; when given it is a positive "
                                 "integer or a tuple/list of them (the output's shape after the batch and query "
                                 "dimensions)")
            output_shape = tuple(int(d) for d in output_shape)
        self._output_shape = output_shape
        if isinstance(attention_axes, (int, np.integer)) and not isinstance(attention_axes, bool):
            attention_axes = (int(attention_axes),)
        elif attention_axes is not None and not isinstance(attention_axes, (list, tuple)):
            raise ValueError(f"{who}: `attention_axes` must be an int, list, or tuple, received "
                             f"attention_axes={attention_axes!r}")
        elif attention_axes is not None:
            if not attention_axes or not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool)
                                             for a in attention_axes):
                raise ValueError(f"{who}: `attention_axes` must hold at least one integer axis, received "
                                 f"attention_axes={attention_axes!r}")
            attention_axes = tuple(int(a) for a in attention_axes)
        self._attention_axes = attention_axes
        self._sliding_window = _positive(who, "sliding_window", sliding_window, allow_none=True)
        self._kernel_initializer = _initializers.get(kernel_initializer)
        self._bias_initializer = _initializers.get(bias_initializer)
        self._kernel_regularizer = _regularizers.get(kernel_regularizer)
        self._bias_regularizer = _regularizers.get(bias_regularizer)
        self._activity_regularizer = _regularizers.get(activity_regularizer)
        self._kernel_constraint = _constraints.get(kernel_constraint)
        self._bias_constraint = _constraints.get(bias_constraint)
        self.seed = seed
        self._inverse_sqrt_key_dim = 1.0 / math.sqrt(float(self._key_dim))
        self._build_shapes = None

    num_heads = property(lambda self: self._num_heads)
    _kv_heads = property(lambda self: self._num_heads)   # the key and value projections' heads (fewer in GQA)
    key_dim = property(lambda self: self._key_dim)
    value_dim = property(lambda self: self._value_dim)
    dropout = property(lambda self: self._dropout)
    use_bias = property(lambda self: self._use_bias)
    attention_axes = property(lambda self: self._attention_axes)

    def get_config(self):
        # as Keras's: without flash_attention (a choice of kernel, not of the layer's function)
        return {**super().get_config(), "num_heads": self._num_heads, "key_dim": self._key_dim,
                "value_dim": self._value_dim, "dropout": self._dropout, "use_bias": self._use_bias,
                "use_gate": self._use_gate, "output_shape": self._output_shape,
                "attention_axes": self._attention_axes, "sliding_window": self._sliding_window,
                "kernel_initializer": _initializers.serialize(self._kernel_initializer),
                "bias_initializer": _initializers.serialize(self._bias_initializer),
                "kernel_regularizer": _regularizers.serialize(self._kernel_regularizer),
                "bias_regularizer": _regularizers.serialize(self._bias_regularizer),
                "activity_regularizer": _regularizers.serialize(self._activity_regularizer),
                "kernel_constraint": _constraints.serialize(self._kernel_constraint),
                "bias_constraint": _constraints.serialize(self._bias_constraint), "seed": self.seed}

    # -- build ------------------------------------------------------------------------------------

    def __call__(self, query=None, value=None, key=None, **kwargs):
        """mha(query, value, key=None, ...): builds from the three shapes on the first call (the
        base class would see only the query's), then calls as any layer."""
        if query is None or value is None:
            raise TypeError(f"{type(self).__name__} '{self.name}' takes a query and a value (and optionally a key): "
                            "call it as mha(query, value) (self-attention: mha(x, x)); "
                            f"{'the query' if query is None else 'the value'} is missing")
        if not self.built:
            if self._device is None and _device_scope.stack:
                self._device = current_device()
            shapes = {"query_shape": _shape(query), "value_shape": _shape(value)}
            if key is not None:
                shapes["key_shape"] = _shape(key)
            self._maybe_build(shapes)
        return super().__call__(query, value, key, **kwargs)

    def build(self, query_shape, value_shape=None, key_shape=None):
        """Creates the projections from the three input shapes. Also takes one dict
        {"query_shape", "value_shape"[, "key_shape"]} (Keras's build config "shapes_dict")."""
        if isinstance(query_shape, dict):
            return self.build(**query_shape)
        who = f"{type(self).__name__} '{self.name}'"
        if value_shape is None:
            raise ValueError(f"{who}: build needs the query's and the value's shapes, received only "
                             f"query_shape={query_shape}; call build(query_shape, value_shape[, key_shape])")
        query_shape, value_shape = tuple(query_shape), tuple(value_shape)
        given = {"query_shape": query_shape, "value_shape": value_shape}
        if key_shape is not None:
            given["key_shape"] = key_shape = tuple(key_shape)
        key_shape = value_shape if key_shape is None else key_shape
        if value_shape[1:-1] != key_shape[1:-1]:
            raise ValueError(f"{who}: all dimensions of `value` and `key`, except the last one, must be equal. "
                             f"Received: value_shape={value_shape} and key_shape={key_shape}")
        if not len(query_shape) == len(value_shape) == len(key_shape) or len(query_shape) < 3:
            raise ValueError(f"{who}: query, value and key must have the same rank, at least 3 (batch, positions..., "
                             f"features); received query_shape={query_shape}, value_shape={value_shape}, "
                             f"key_shape={key_shape}")
        for name, s in (("query", query_shape), ("value", value_shape), ("key", key_shape)):
            if s[-1] is None:
                raise ValueError(f"{who}: the last (feature) dimension of the {name} must be known, received "
                                 f"{name} shape {s}")
        rank = len(query_shape) + 1   # of the projected tensors (batch, positions..., heads, depth)
        axes = tuple(range(1, rank - 2)) if self._attention_axes is None else tuple(
            a if a >= 0 else (rank - 1) + a for a in self._attention_axes)
        if len(set(axes)) != len(axes) or not all(1 <= a <= rank - 3 for a in axes):
            raise ValueError(f"{who}: attention_axes={self._attention_axes} must be distinct axes of the query's "
                             f"positions, between 1 and {rank - 3} (or -{rank - 2} and -2) for inputs of shape "
                             f"{query_shape}; the batch (0) and feature (-1) axes cannot be attended over")
        self._build_shapes = given
        common = self._sublayer_kwargs

        def projection(name, shape, depth, activation=None, heads=self._num_heads):
            equation, bias_axes, out_rank = _build_proj_equation(len(shape) - 1, bound_dims=1, output_dims=2)
            layer = EinsumDense(equation, output_shape=_get_output_shape(out_rank - 1, [heads, depth]),
                                bias_axes=bias_axes if self._use_bias else None, activation=activation, name=name,
                                **common())
            layer.build_from_shape(shape)
            return layer

        self._query_dense = projection("query", query_shape, self._key_dim)
        self._key_dense = projection("key", key_shape, self._key_dim, heads=self._kv_heads)
        if self._use_gate:
            self._gate_dense = projection("gate", query_shape, self._value_dim, activation="sigmoid")
        self._value_dense = projection("value", value_shape, self._value_dim, heads=self._kv_heads)
        self._attention_axes = axes
        self._dot_product_equation, self._combine_equation, scores_rank = _build_attention_equation(rank, axes)
        self._softmax_axes = tuple(range(scores_rank - len(axes), scores_rank))
        self._softmax = Softmax(axis=self._softmax_axes, dtype=self.dtype_policy)
        self._dropout_layer = Dropout(rate=self._dropout, dtype=self.dtype_policy, seed=self.seed)
        out_shape = self._output_shape or [query_shape[-1]]
        equation, bias_axes, out_rank = _build_proj_equation(len(query_shape) - 1, bound_dims=2,
                                                             output_dims=len(out_shape))
        self._output_dense = EinsumDense(equation, output_shape=_get_output_shape(out_rank - 1, out_shape),
                                         bias_axes=bias_axes if self._use_bias else None, name="attention_output",
                                         **common())
        self._output_dense.build_from_shape(tuple(query_shape[:-1]) + (self._num_heads, self._value_dim))
        # Keras saves the projections under its read-only properties' names (query_dense, ...)
        self.query_dense, self.key_dense = self._query_dense, self._key_dense
        self.value_dense, self.output_dense = self._value_dense, self._output_dense
        self.built = True

    def _sublayer_kwargs(self):
        """Arguments every projection gets; fresh initializer objects each (Keras's clones; a plain
        function is passed as it is)."""
        def clone(init):
            return type(init).from_config(init.get_config()) if hasattr(init, "get_config") else init
        return dict(kernel_initializer=clone(self._kernel_initializer), bias_initializer=clone(self._bias_initializer),
                    kernel_regularizer=self._kernel_regularizer, bias_regularizer=self._bias_regularizer,
                    activity_regularizer=self._activity_regularizer, kernel_constraint=self._kernel_constraint,
                    bias_constraint=self._bias_constraint, dtype=self.dtype_policy)

    def get_build_config(self):
        """Keras's form for layers built from several shapes: {"shapes_dict": {...}}."""
        return {"shapes_dict": dict(self._build_shapes)} if self._build_shapes else None

    def build_from_config(self, config):
        if not config or self.built:
            return
        shapes = config.get("shapes_dict")
        if shapes is None:
            raise ValueError(f"{type(self).__name__} '{self.name}': its build config {config!r} has no 'shapes_dict' "
                             "(the query, value and key shapes); it cannot be built from one input shape")
        self._maybe_build({k: None if v is None else tuple(v) for k, v in shapes.items()})

    # -- call -------------------------------------------------------------------------------------

    def _check_input(self, name, x, built_shape):
        if len(x.shape) != len(built_shape) or x.shape[-1] != built_shape[-1] or any(
                b is not None and b != d for b, d in zip(built_shape[1:-1], x.shape[1:-1])):
            raise ValueError(f"{type(self).__name__} '{self.name}' was built for a {name} of shape {built_shape}, "
                             f"received a {name} of shape {x.shape}; use one layer per input shape")

    def _tensor(self, x):
        if x is None:
            return None
        if not isinstance(x, Tensor):
            return ops.convert_to_tensor(x)
        return _move(x, self._device) if self._device is not None else x

    def call(self, query, value, key=None, query_mask=None, value_mask=None, key_mask=None, attention_mask=None,
             return_attention_scores=False, training=None, use_causal_mask=False):
        value, key = self._tensor(value), self._tensor(key)
        # masks of the inputs (Embedding(mask_zero=True), Masking) unless given explicitly, as Keras
        # fills them in; the key's only when a key is passed
        if query_mask is None:
            query_mask = query._keras_mask
        if value_mask is None:
            value_mask = value._keras_mask
        if key is not None and key_mask is None:
            key_mask = key._keras_mask
        query_mask, value_mask, key_mask, attention_mask = (
            None if m is None else self._tensor(m) for m in (query_mask, value_mask, key_mask, attention_mask))
        shapes = self._build_shapes
        self._check_input("query", query, shapes["query_shape"])
        self._check_input("value", value, shapes["value_shape"])
        if key is not None:
            self._check_input("key", key, shapes.get("key_shape", shapes["value_shape"]))
        else:
            key = value
        # causal masking as the only mask: dot_product_attention's is_causal, no (T, S) mask built
        causal_only = (use_causal_mask and query_mask is None and value_mask is None and key_mask is None
                       and attention_mask is None and self._sliding_window is None
                       and type(self)._compute_attention is MultiHeadAttention._compute_attention)
        if causal_only:
            attention_mask = None
        else:
            attention_mask = self._compute_attention_mask(query, value, query_mask=query_mask, value_mask=value_mask,
                                                          key_mask=key_mask, attention_mask=attention_mask,
                                                          use_causal_mask=use_causal_mask)
        gate = self._gate_dense(query) if self._use_gate else None
        q = self._query_dense(query)   # (B, T, N, key_dim)
        k, v = self._project_key_value(key, value)   # (B, S, N, key_dim), (B, S, N, value_dim)
        extra = {"use_causal_mask": True} if causal_only else {}
        out, scores = self._compute_attention(q, k, v, attention_mask, training, return_attention_scores, **extra)
        out = self._output_dense(ops.multiply(out, gate) if gate is not None else out)
        if query_mask is not None:
            out._keras_mask = query_mask
        return (out, scores) if return_attention_scores else out

    def _project_key_value(self, key, value):
        return self._key_dense(key), self._value_dense(value)

    def compute_mask(self, inputs, mask=None):
        """None: `call` sets the output's mask (the query's) itself, on the attention output only
        (not on the scores returned with return_attention_scores), as Keras does."""
        return None

    def _compute_attention_mask(self, query, value, query_mask=None, value_mask=None, key_mask=None,
                                attention_mask=None, use_causal_mask=False):
        """The boolean (B, T, S) mask of all masks given (Keras's `_compute_attention_mask`):
        query (B, T, 1) & value (B, 1, S) & key (B, 1, S) & causal (1, T, S) & window & attention_mask."""
        auto = None

        def both(a, b):
            return b if a is None else ops.logical_and(a, b)
        if query_mask is not None:
            auto = ops.expand_dims(ops.cast(query_mask, "bool"), -1)
        if value_mask is not None:
            auto = both(auto, ops.expand_dims(ops.cast(value_mask, "bool"), -2))
        if key_mask is not None:
            auto = both(auto, ops.expand_dims(ops.cast(key_mask, "bool"), -2))
        if use_causal_mask:
            auto = both(auto, self._compute_causal_mask(query, value))
        if self._sliding_window is not None:
            auto = both(auto, self._compute_sliding_window_mask(query, value))
        if attention_mask is not None:
            attention_mask = ops.cast(attention_mask, "bool")
        if auto is not None:
            attention_mask = auto if attention_mask is None else ops.logical_and(attention_mask, auto)
        return attention_mask

    def _compute_causal_mask(self, query, value=None):
        """(1, T, S) boolean: query position t attends to key positions s <= t."""
        t = query.shape[1]
        s = t if value is None else value.shape[1]
        return ops.expand_dims(ops.cast(ops.tri(t, s), "bool"), 0)

    def _compute_sliding_window_mask(self, query, value=None):
        """(1, T, S) boolean band: |t - s| < sliding_window."""
        t = query.shape[1]
        s = t if value is None else value.shape[1]
        rows = ops.reshape(ops.arange(t, dtype="int32"), (1, t, 1))
        cols = ops.reshape(ops.arange(s, dtype="int32"), (1, 1, s))
        return ops.less(ops.abs(ops.subtract(rows, cols)), self._sliding_window)

    def _expand_mask(self, mask, rank):
        """The mask with size-1 head (and batch) axes inserted where Keras inserts them."""
        axis = -len(self._attention_axes) * 2 - 1
        for _ in range(rank - mask.ndim):
            mask = ops.expand_dims(mask, axis)
        return mask

    def _masked_softmax(self, scores, mask=None):
        """Keras's Softmax layer with a mask: masked scores -1e9, softmax over the key attention
        axes, masked probabilities zeroed (a fully masked row is all zeros)."""
        if mask is None:
            return self._softmax(scores)
        keep = ops.cast(self._expand_mask(mask, scores.ndim), "bool")
        if keep.ndim > scores.ndim or any(m != 1 and m != s for m, s in zip(keep.shape[::-1], scores.shape[::-1])):
            raise ValueError(f"{type(self).__name__} '{self.name}': the attention mask of shape {keep.shape} does not "
                             f"broadcast to the attention scores' shape {scores.shape}; expected a mask of shape "
                             "(batch, query positions, key positions)")
        probs = ops.softmax(ops.where(keep, scores, _MASKED_SCORE), axis=self._softmax_axes)
        return ops.where(keep, probs, 0.0)

    def _compute_attention(self, query, key, value, attention_mask=None, training=None,
                           return_attention_scores=False, use_causal_mask=False):
        """Attention of the projected query (B, T, N, key_dim), key and value: (output, scores)
        (scores None on the dot_product_attention path). Subclasses may override it, as in Keras."""
        if self._flash_attention and return_attention_scores:
            raise ValueError(f"MultiHeadAttention '{self.name}': returning attention scores is not supported when "
                             "flash attention is enabled (the fused kernel never forms them); create the layer with "
                             "flash_attention=None or False to get the scores")
        if self._flash_attention and query.ndim != 4:
            raise ValueError(f"MultiHeadAttention '{self.name}': flash_attention=True attends over one axis of "
                             f"(batch, positions, features) inputs; attention_axes={self._attention_axes} gives "
                             f"projected inputs of shape {query.shape}: use flash_attention=None or False")
        if not (self._dropout > 0.0 or return_attention_scores or query.ndim != 4):
            mask = None
            if attention_mask is not None:
                mask = ops.cast(self._expand_mask(attention_mask, 4), "bool")
            out = ops.dot_product_attention(query, key, value, mask=mask, scale=self._inverse_sqrt_key_dim,
                                            is_causal=use_causal_mask, flash_attention=self._flash_attention)
            return out, None
        if use_causal_mask:
            causal = self._compute_causal_mask(query, value)
            attention_mask = causal if attention_mask is None else ops.logical_and(
                ops.cast(attention_mask, "bool"), causal)
        query = ops.multiply(query, self._inverse_sqrt_key_dim)
        scores = ops.einsum(self._dot_product_equation, key, query)   # (B, N, T, S)
        scores = self._masked_softmax(scores, attention_mask)
        weights = self._dropout_layer(scores, training=training) if self._dropout > 0.0 else scores
        return ops.einsum(self._combine_equation, weights, value), scores

    def compute_output_shape(self, query_shape, value_shape=None, key_shape=None):
        query_shape = tuple(query_shape)
        if value_shape is not None:
            value_shape = tuple(value_shape)
            key_shape = value_shape if key_shape is None else tuple(key_shape)
            if value_shape[1:-1] != key_shape[1:-1]:
                raise ValueError(f"{type(self).__name__} '{self.name}': all dimensions of `value` and `key`, except "
                                 f"the last one, must be equal. Received: value_shape={value_shape} and "
                                 f"key_shape={key_shape}")
        if self._output_shape:
            return query_shape[:-1] + tuple(self._output_shape)
        return query_shape
