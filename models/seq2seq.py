"""`Seq2Seq`: a ready encoder-decoder for translation, trained teacher-forced with `fit` and
decoded one step at a time with greedy or beam search.

    model = Seq2Seq(src_vocab_size, tgt_vocab_size, embedding_dim=128, units=256, cell="lstm",
                    attention="luong")
    model.compile(optimizer="adam", loss=losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit([source_ids, target_in_ids], target_out_ids)      # target_in = <start> y1 .. yn
    seqs, scores = model.greedy_decode(source_ids, start_id, end_id, max_length=20)
    hyps = model.beam_search(source_ids, start_id, end_id, beam_width=5)

Encoder: Embedding(mask_zero) -> LSTM/GRU returning its sequence and final states. Decoder:
Embedding -> LSTM/GRU starting from the encoder's final states, then
- attention=None: Dense(target_vocab_size) on the decoder's outputs;
- attention="luong": dot-product scores between each decoder output h_t and the encoder outputs
  (`layers.Attention`), context c_t = the weighted sum of encoder outputs, then
  Dense(units, tanh)([h_t; c_t]) -> Dense(target_vocab_size) (Luong et al. 2015, "dot" score);
- attention="bahdanau": the same, with Bahdanau's additive score v . tanh(W_q h_t + W_k e_s)
  (`layers.AdditiveAttention` on Dense projections without bias; v is its learned scale).
  Unlike Bahdanau et al. 2014 the query is the current decoder output and the context is not fed
  back into the recurrence, so the decoder still runs as one fused kernel over the whole target
  sequence during training (the TensorFlow NMT tutorial's arrangement).
Padded source positions (id 0 with mask_zero=True) are hidden from the attention softmax and do
not change the encoder's final states; padded target positions are left out of the loss and the
metrics (the output carries the mask `target_in != 0`).

Inference: `encode(source_ids)` returns the decoder's initial state (a dict of tensors with the
batch as leading dimension: the recurrent states and, with attention, the encoder outputs, their
key projections and the source mask); `step(tokens, state)` runs ONE decoder step and returns
(logits (N, target_vocab_size), new state), the step function `decoding.greedy_decode` and
`decoding.beam_search` expect. All weights are created in the constructor, so a model is ready to
save, load or decode as soon as it is made.
"""
import numpy as np

from .. import layers, ops
from ..backend.tensor import Tensor, convert_to_tensor
from ..backend.validation import positive_int
from . import decoding
from .model import Model
from .saving import register

CELLS = {"lstm": layers.LSTM, "gru": layers.GRU}
ATTENTIONS = (None, "luong", "bahdanau")


def _positive_int(arg, value, minimum=1):
    return positive_int("Seq2Seq", arg, value, minimum)


class Seq2Seq(Model):
    """Encoder-decoder with optional Luong or Bahdanau attention (see the module docstring).

    Args:
        source_vocab_size, target_vocab_size: sizes of the id spaces (id 0 is padding when
            mask_zero=True, so count it).
        embedding_dim: size of both embeddings. units: size of both recurrent layers.
        cell: "lstm" or "gru". attention: None, "luong" or "bahdanau".
        mask_zero: treat id 0 as padding in sources and targets.
        dropout: rate applied (training only) to the embeddings and to the decoder's final
            features before the output projection.
        seed: optional integer seed for the dropout masks.

    Call: `model([source_ids (B, S), target_in_ids (B, T)])` -> logits (B, T, target_vocab_size).
    """

    def __init__(self, source_vocab_size, target_vocab_size, embedding_dim=128, units=256, cell="lstm",
                 attention=None, mask_zero=True, dropout=0.0, seed=None, name=None, **kwargs):
        super().__init__(name=name, **kwargs)
        self.source_vocab_size = _positive_int("source_vocab_size", source_vocab_size, 2)
        self.target_vocab_size = _positive_int("target_vocab_size", target_vocab_size, 2)
        self.embedding_dim = _positive_int("embedding_dim", embedding_dim)
        self.units = _positive_int("units", units)
        cell_name = cell.lower() if isinstance(cell, str) else cell
        if cell_name not in CELLS:
            raise ValueError(f"Seq2Seq: `cell` must be one of {sorted(CELLS)}, received cell={cell!r}")
        self.cell = cell_name
        att = attention.lower() if isinstance(attention, str) else attention
        if att not in ATTENTIONS:
            raise ValueError(f"Seq2Seq: `attention` must be None, 'luong' or 'bahdanau', received "
                             f"attention={attention!r}")
        self.attention = att
        if not isinstance(mask_zero, (bool, np.bool_)):
            raise ValueError(f"Seq2Seq: `mask_zero` must be True or False, received mask_zero={mask_zero!r}")
        self.mask_zero = bool(mask_zero)
        try:
            rate = float(dropout)
        except (TypeError, ValueError):
            rate = -1.0
        if isinstance(dropout, bool) or not 0.0 <= rate < 1.0:
            raise ValueError(f"Seq2Seq: `dropout` must be a number in [0, 1), received dropout={dropout!r}")
        self.dropout = rate
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise ValueError(f"Seq2Seq: `seed` must be an integer or None, received seed={seed!r}")
        self.seed = None if seed is None else int(seed)

        rnn = CELLS[self.cell]
        E, U = self.embedding_dim, self.units
        self.source_embedding = layers.Embedding(self.source_vocab_size, E, mask_zero=self.mask_zero,
                                                 name="source_embedding")
        self.encoder = rnn(U, return_sequences=True, return_state=True, name="encoder")
        self.target_embedding = layers.Embedding(self.target_vocab_size, E, mask_zero=self.mask_zero,
                                                 name="target_embedding")
        self.decoder = rnn(U, return_sequences=True, return_state=True, name="decoder")
        if self.attention == "luong":
            self.attention_layer = layers.Attention(name="attention")
        elif self.attention == "bahdanau":
            self.query_projection = layers.Dense(U, use_bias=False, name="query_projection")
            self.key_projection = layers.Dense(U, use_bias=False, name="key_projection")
            self.attention_layer = layers.AdditiveAttention(name="attention")
        if self.attention is not None:
            self.attention_combine = layers.Dense(U, activation="tanh", name="attention_combine")
        self.output_projection = layers.Dense(self.target_vocab_size, name="output_projection")
        if self.dropout > 0:
            s = self.seed
            self.embedding_dropout = layers.Dropout(self.dropout, seed=s, name="embedding_dropout")
            self.output_dropout = layers.Dropout(self.dropout, seed=None if s is None else s + 1,
                                                 name="output_dropout")
        self._maybe_build(None)

    # -- weights: every shape is known from the constructor's arguments --
    def build(self, input_shape=None):
        E, U = self.embedding_dim, self.units
        self.source_embedding.build_from_shape((None, None))
        self.encoder.build_from_shape((None, None, E))
        self.target_embedding.build_from_shape((None, None))
        self.decoder.build_from_shape((None, None, E))
        head_in = U
        if self.attention == "luong":
            self.attention_layer.build_from_shape([(None, None, U), (None, None, U)])
        elif self.attention == "bahdanau":
            self.query_projection.build_from_shape((None, None, U))
            self.key_projection.build_from_shape((None, None, U))
            self.attention_layer.build_from_shape([(None, None, U), (None, None, U), (None, None, U)])
        if self.attention is not None:
            self.attention_combine.build_from_shape((None, None, 2 * U))
        self.output_projection.build_from_shape((None, None, head_in))
        self.built = True

    # -- the pieces --
    def _ids(self, x, what):
        t = x if isinstance(x, Tensor) else convert_to_tensor(np.asarray(x))
        if t.ndim != 2:
            raise ValueError(f"Seq2Seq '{self.name}': {what} ids must have shape (batch, length), received shape "
                             f"{t.shape}")
        if t.dtype not in ("int32", "int64"):
            t = ops.cast(t, "int64")
        return t

    def _drop(self, layer_attr, x, training):
        layer = getattr(self, layer_attr, None)
        return layer(x, training=training) if layer is not None else x

    def _encode(self, source, training):
        mask = self.source_embedding.compute_mask(source)  # None without mask_zero
        emb = self._drop("embedding_dropout", self.source_embedding(source), training)
        enc_seq, *states = self.encoder(emb, mask=mask, training=training)
        state = {"states": states}
        if self.attention is not None:
            state["values"] = enc_seq
            if mask is not None:
                state["source_mask"] = ops.cast(mask, "float32")
            if self.attention == "bahdanau":
                state["keys"] = self.key_projection(enc_seq)
        return state

    def _head(self, dec_seq, state, training):
        """Decoder outputs (N, T, U) -> logits (N, T, V), attending over the encoder outputs."""
        x = dec_seq
        if self.attention is not None:
            mask = state.get("source_mask")
            att_mask = None if mask is None else [None, mask]
            if self.attention == "luong":
                ctx = self.attention_layer([dec_seq, state["values"]], mask=att_mask)
            else:
                q = self.query_projection(dec_seq)
                ctx = self.attention_layer([q, state["values"], state["keys"]], mask=att_mask)
            x = self.attention_combine(ops.concatenate([dec_seq, ctx], axis=-1))
        x = self._drop("output_dropout", x, training)
        return self.output_projection(x)

    def _unpack(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            got = f"a {type(inputs).__name__} of length {len(inputs)}" if isinstance(inputs, (list, tuple)) \
                else type(inputs).__name__
            raise ValueError(f"Seq2Seq '{self.name}' expects inputs [source_ids (batch, source_length), "
                             f"target_in_ids (batch, target_length)], received {got}. Train with "
                             "model.fit([source_ids, target_in_ids], target_out_ids)")
        src = self._ids(inputs[0], "source")
        tgt = self._ids(inputs[1], "target")
        if src.shape[0] != tgt.shape[0]:
            raise ValueError(f"Seq2Seq '{self.name}': source and target batches differ in size: source shape "
                             f"{src.shape}, target shape {tgt.shape}")
        return src, tgt

    def call(self, inputs, training=None):
        """Teacher-forced logits (B, T, V) for [source_ids, target_in_ids]."""
        source, target = self._unpack(inputs)
        state = self._encode(source, training)
        tmask = self.target_embedding.compute_mask(target)
        emb = self._drop("embedding_dropout", self.target_embedding(target), training)
        dec_seq, *_ = self.decoder(emb, initial_state=state["states"], mask=tmask, training=training)
        return self._head(dec_seq, state, training)

    def compute_mask(self, inputs, mask=None):
        """Padded target steps (target_in == 0) are masked out of the loss and metrics."""
        if not self.mask_zero or not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            return None
        return ops.not_equal(ops.convert_to_tensor(inputs[1]), 0)

    def compute_output_shape(self, input_shape):
        tgt = input_shape[1]
        return (tgt[0], tgt[1], self.target_vocab_size)

    # -- inference --
    def encode(self, source_ids):
        """The decoder's initial state for `source_ids` (batch, source_length): a dict of tensors,
        each with the batch as its leading dimension (beam search reorders their rows)."""
        source = self._ids(source_ids, "source")
        return self._encode(source, training=False)

    def step(self, tokens, state):
        """One decoder step: the previous tokens (N,) and the state -> (logits (N, V), new state)."""
        t = tokens if isinstance(tokens, Tensor) else convert_to_tensor(np.asarray(tokens, np.int64))
        if t.ndim != 1:
            raise ValueError(f"Seq2Seq '{self.name}'.step: tokens must have shape (N,), received shape {t.shape}")
        n = t.shape[0]
        emb = self.target_embedding(ops.reshape(t, (n, 1)))
        out, *states = self.decoder(emb, initial_state=state["states"], training=False)
        logits = self._head(out, state, training=False)
        return ops.reshape(logits, (n, self.target_vocab_size)), {**state, "states": states}

    def _batches(self, source_ids, batch_size):
        src = np.asarray(source_ids.numpy() if isinstance(source_ids, Tensor) else source_ids)
        if src.ndim != 2:
            raise ValueError(f"Seq2Seq '{self.name}': source ids must have shape (batch, length), received shape "
                             f"{src.shape}")
        bs = _positive_int("batch_size", batch_size)
        for i in range(0, len(src), bs):
            chunk = src[i:i + bs]
            # trailing all-padding columns change nothing (masked); dropping them saves work
            if self.mask_zero and chunk.size:
                used = np.nonzero((chunk != 0).any(axis=0))[0]
                chunk = chunk[:, :used[-1] + 1] if len(used) else chunk[:, :1]
            yield chunk.astype(np.int64)

    def greedy_decode(self, source_ids, start_id, end_id, max_length=50, batch_size=64):
        """Greedy decoding of each source row: (sequences, scores), a list of token lists (without
        the start token, ending with end_id when it was produced) and their log-probabilities."""
        seqs, scores = [], []
        for chunk in self._batches(source_ids, batch_size):
            state = self.encode(chunk)
            s, sc = decoding.greedy_decode(self.step, state, np.full(len(chunk), start_id), end_id, max_length)
            seqs.extend(s)
            scores.extend(float(v) for v in sc)
        return seqs, np.asarray(scores)

    def beam_search(self, source_ids, start_id, end_id, beam_width=5, max_length=50, length_penalty=0.0,
                    num_results=1, batch_size=64):
        """Beam search for each source row: a list (one per row) of the `num_results` best
        (tokens, score) pairs, best first (see `decoding.beam_search`)."""
        out = []
        for chunk in self._batches(source_ids, batch_size):
            state = self.encode(chunk)
            out.extend(decoding.beam_search(self.step, state, np.full(len(chunk), start_id), end_id, beam_width,
                                            max_length, length_penalty, num_results))
        return out

    def translate(self, sentences, source_vocab, target_vocab, beam_width=1, max_length=50, length_penalty=0.0,
                  batch_size=64):
        """Strings to strings with the given Vocabulary objects (greedy when beam_width == 1)."""
        ids = source_vocab.encode_batch(sentences)
        if beam_width == 1:
            seqs, _ = self.greedy_decode(ids, target_vocab.start_id, target_vocab.end_id, max_length, batch_size)
        else:
            res = self.beam_search(ids, target_vocab.start_id, target_vocab.end_id, beam_width, max_length,
                                   length_penalty, 1, batch_size)
            seqs = [r[0][0] if r else [] for r in res]
        return [target_vocab.decode(s) for s in seqs]

    def get_config(self):
        return {**super().get_config(), "source_vocab_size": self.source_vocab_size,
                "target_vocab_size": self.target_vocab_size, "embedding_dim": self.embedding_dim,
                "units": self.units, "cell": self.cell, "attention": self.attention, "mask_zero": self.mask_zero,
                "dropout": self.dropout, "seed": self.seed}


register(Seq2Seq)
