"""Attention layers for sequence-to-sequence models, with Keras 3's semantics:
`Attention` (Luong's dot-product score) and `AdditiveAttention` (Bahdanau's additive score).

Inputs: [query (B, Tq, D), value (B, Tv, D)] or [query, value, key]; masks [query_mask,
value_mask] (from Embedding(mask_zero=True) or Masking, or passed with `mask=`) hide padded value
steps from the softmax and zero padded query steps. `return_attention_scores=True` also returns
the attention distribution (B, Tq, Tv)."""
from .. import ops
from .layer import Layer


class _BaseAttention(Layer):
    def __init__(self, use_scale=False, dropout=0.0, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"{type(self).__name__}: dropout must be in [0, 1), received {dropout}")
        self.use_scale, self.dropout = bool(use_scale), float(dropout)
        self.seed = seed
        from ..backend.random import SeedGenerator
        self._seed_gen = SeedGenerator(seed) if seed is not None else None
        self.supports_masking = True

    def _unpack(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) not in (2, 3):
            what = f"a list of {len(inputs)}" if isinstance(inputs, (list, tuple)) else type(inputs).__name__
            raise ValueError(f"{type(self).__name__} '{self.name}' expects a list [query, value] or "
                             f"[query, value, key], received {what}")
        q, v = inputs[0], inputs[1]
        k = inputs[2] if len(inputs) == 3 else v
        self._check_shapes(*(tuple(getattr(t, "shape", t)) for t in (q, v, k)))
        return q, v, k

    def _check_shapes(self, q, v, k):
        """query (B, Tq, D), value (B, Tv, Dv) and key (B, Tv, D) (None: unknown), else ValueError."""
        def same(a, b):
            return a is None or b is None or a == b
        if not (len(q) == len(v) == len(k) == 3 and same(q[0], v[0]) and same(q[0], k[0]) and same(q[2], k[2])
                and same(v[1], k[1])):
            raise ValueError(f"{type(self).__name__} '{self.name}': expected query (batch, Tq, dim), value "
                             f"(batch, Tv, value_dim) and key (batch, Tv, dim), received query {q}, value {v} and "
                             f"key {k}")

    def call(self, inputs, mask=None, training=None, return_attention_scores=False, use_causal_mask=False):
        q, v, k = self._unpack(inputs)
        q_mask = v_mask = None
        if isinstance(mask, (list, tuple)):
            q_mask = mask[0]
            v_mask = mask[1] if len(mask) > 1 else None
        scores = self._score(q, k)  # (B, Tq, Tv)
        big = 1e9
        if v_mask is not None:
            keep = ops.expand_dims(ops.cast(v_mask, "float32"), 1)  # (B, 1, Tv)
            scores = scores - (1.0 - keep) * big
        if use_causal_mask:
            tq, tv = scores.shape[1], scores.shape[2]
            causal = ops.tril(ops.ones((tq, tv)))
            scores = scores - (1.0 - causal) * big
        weights = ops.softmax(scores, axis=-1)
        if training and self.dropout > 0:
            weights = ops.dropout(weights, self.dropout, seed=self._seed_gen)
        out = ops.matmul(weights, v)  # (B, Tq, D)
        if q_mask is not None:
            out = out * ops.expand_dims(ops.cast(q_mask, "float32"), -1)
        return (out, weights) if return_attention_scores else out

    def compute_mask(self, inputs, mask=None):
        if isinstance(mask, (list, tuple)) and mask and mask[0] is not None:
            return mask[0]
        return None

    def compute_output_shape(self, input_shape):
        q, v = input_shape[0], input_shape[1]
        return tuple(q[:-1]) + (v[-1],)

    def get_config(self):
        return {**super().get_config(), "use_scale": self.use_scale, "dropout": self.dropout, "seed": self.seed}


class Attention(_BaseAttention):
    """Dot-product (Luong) attention: scores = query @ key^T, times a learned scalar when
    use_scale=True; score_mode="concat" uses tanh(query + key) summed (scaled) instead."""

    def __init__(self, use_scale=False, score_mode="dot", dropout=0.0, seed=None, **kwargs):
        super().__init__(use_scale=use_scale, dropout=dropout, seed=seed, **kwargs)
        if score_mode not in ("dot", "concat"):
            raise ValueError(f"Attention: score_mode must be 'dot' or 'concat', received {score_mode!r}")
        self.score_mode = score_mode

    def build(self, input_shape):
        self._unpack(input_shape)
        self.scale = self.add_weight(name="scale", shape=(), initializer="ones") if self.use_scale else None
        self.concat_score_weight = self.add_weight(name="concat_score_weight", shape=(), initializer="ones") \
            if self.score_mode == "concat" else None

    def _score(self, q, k):
        if self.score_mode == "dot":
            s = ops.matmul(q, ops.swapaxes(k, 1, 2))
            return s * self.scale if self.scale is not None else s
        qe, ke = ops.expand_dims(q, 2), ops.expand_dims(k, 1)  # (B, Tq, 1, D), (B, 1, Tv, D)
        t = qe + ke
        if self.scale is not None:
            t = t * self.scale
        return self.concat_score_weight * ops.sum(ops.tanh(t), axis=-1)

    def get_config(self):
        return {**super().get_config(), "score_mode": self.score_mode}


class AdditiveAttention(_BaseAttention):
    """Additive (Bahdanau) attention: scores = sum(scale * tanh(query + key)) over features, with a
    learned per-feature scale when use_scale=True (Keras's default)."""

    def __init__(self, use_scale=True, dropout=0.0, seed=None, **kwargs):
        super().__init__(use_scale=use_scale, dropout=dropout, seed=seed, **kwargs)

    def build(self, input_shape):
        q, v, k = self._unpack(input_shape)
        dim = q[-1]   # the scale multiplies tanh(query + key), of the query's width (as Keras)
        self.scale = self.add_weight(name="scale", shape=(dim,), initializer="glorot_uniform") \
            if self.use_scale else None

    def _score(self, q, k):
        t = ops.tanh(ops.expand_dims(q, 2) + ops.expand_dims(k, 1))  # (B, Tq, Tv, D)
        if self.scale is not None:
            t = t * self.scale
        return ops.sum(t, axis=-1)
