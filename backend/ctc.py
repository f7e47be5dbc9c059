"""Connectionist Temporal Classification: `ctc_loss` and `ctc_decode`, as keras.ops (the loss
also backs `losses.ctc` / `losses.CTC`).

ctc_loss runs the forward (alpha) recursion in log space over the extended labels
(blank, l1, blank, l2, ..., blank), batched: a Python loop over time steps of a few batched ops
each, so its gradient comes from autodiff. An unreachable lattice state has log-probability
-1e5 rather than -inf (no inf - inf in the gradient): a target that cannot fit in its output
length gets a loss of order 1e5, as Keras's.

ctc_decode's beam search is CTC prefix beam search with Keras's semantics (its JAX backend):
every beam is a distinct label sequence with two scores, the log-probability of its paths that
end in a blank and of those that end in its last label; each step extends every beam by every
class, merges extensions that equal a beam already there (and the blank / repeat transitions),
and keeps the `beam_width` best sequences. It runs batched over the sequences and beams, one
step of a few ops per time step.
"""
import math as _pymath

import numpy as np

from . import dtypes, validation
from . import math as _m
from .device import device as _device
from .extra import argsort, top_k
from .linalg import matmul
from .manipulation import concatenate, expand_dims, reshape, stack, take_along_axis, transpose, unstack
from .math import _as_tensor
from .nn import log_softmax, one_hot

__all__ = ["ctc_loss", "ctc_decode"]

_NEG = -1e5   # the log-probability of an unreachable lattice state in the loss


def _int_tensor(x, op, name, dev):
    t = _as_tensor(x, op)
    t = t if t.device is dev else t.to(dev)
    return t if t.dtype == dtypes.INT64 else _m.cast(t, dtypes.INT64)


def _lengths(x, op, name, batch, dev):
    t = _int_tensor(x, op, name, dev)
    if t.shape != (batch,):
        raise ValueError(f"{op}: `{name}` must have shape (batch_size,) = ({batch},), received shape {t.shape}")
    return t


def _class_index(value, classes, op, name):
    v = validation.integer(value, op, f"`{name}`")
    if not -classes <= v < classes:
        raise ValueError(f"{op}: `{name}` must be a class index in [0, {classes}) (or negative, counting from the "
                         f"end), received {name}={value!r} for {classes} classes")
    return v % classes


def ctc_loss(target, output, target_length, output_length, mask_index=0):
    """CTC loss, -log p(target | output), per sequence (keras.ops.ctc_loss).

    target: (batch, max_label_length) integer labels (a float tensor of integers is accepted);
    output: (batch, max_time, num_classes) logits (log-softmax is taken here);
    target_length: (batch,) label lengths; output_length: (batch,) output lengths (lamina also
    takes None: every sequence uses all max_time steps); mask_index: the blank class.
    Returns (batch,) float32 losses, differentiable in `output`."""
    op = "ctc_loss"
    target, output = _as_tensor(target, op), _as_tensor(output, op)
    if target.ndim != 2 or output.ndim != 3 or target.shape[0] != output.shape[0]:
        raise ValueError(f"{op}: expected target of shape (batch, max_label_length) and output of shape (batch, "
                         f"max_time, num_classes), received target {target.shape} and output {output.shape}")
    if output.dtype != dtypes.FLOAT32:
        output = _m.cast(output, dtypes.FLOAT32)
    b, t_max, classes = output.shape
    blank = _class_index(mask_index, classes, op, "mask_index")
    n_labels = target.shape[1]
    s = 2 * n_labels + 1
    dev = output.device
    target = _int_tensor(target, op, "target", dev)
    tl = _lengths(target_length, op, "target_length", b, dev)
    out_len = None if output_length is None else _lengths(output_length, op, "output_length", b, dev)
    if t_max == 0:
        raise ValueError(f"{op}: output has no time steps (shape {output.shape})")
    with _device(dev):
        logp = log_softmax(output, axis=-1)
        # labels past a sequence's target_length are padding (any value); a negative label within it is
        # made out of range, so that the gather below refuses it instead of reading a class from the end
        tl = expand_dims(_m.clip(tl, 0, n_labels), -1)
        inside = _m.less(np.arange(n_labels, dtype=np.int64), tl)
        target = _m.where(inside, _m.where(_m.less(target, 0), classes, target), blank)
        # the extended labels: blank, l1, blank, l2, ..., blank  -> (batch, s)
        blanks = _m.full((b, n_labels), blank, dtype=dtypes.INT64)
        ext = reshape(stack([blanks, target], axis=-1), (b, 2 * n_labels))
        ext = concatenate([ext, _m.full((b, 1), blank, dtype=dtypes.INT64)], axis=1)
        try:
            emit = take_along_axis(logp, _m.broadcast_to(expand_dims(ext, 1), (b, t_max, s)), axis=2)
        except IndexError:
            raise ValueError(f"{op}: `target` holds a label outside [0, {classes}) within its target_length; labels "
                             f"must be class indices of output's {classes} classes (pad past the length with any "
                             "value)") from None
        # a label may be reached from two states back (skipping a blank) unless it repeats the previous label
        if n_labels > 1:
            differs = _m.cast(_m.not_equal(target[:, 1:], target[:, :-1]), dtypes.FLOAT32)
            odd = reshape(stack([_m.zeros_like(differs), differs], axis=-1), (b, 2 * n_labels - 2))
            skip = concatenate([_m.zeros((b, 2)), odd, _m.zeros((b, 1))], axis=1)
        else:
            skip = _m.zeros((b, s))
        skip_penalty = _m.multiply(_m.subtract(1.0, skip), _NEG)
        neg1, neg2 = _m.full((b, 1), _NEG), _m.full((b, 2), _NEG)
        steps = unstack(transpose(emit, (1, 0, 2)), axis=0)  # t_max tensors of (batch, s)
        # at t = 0 a path starts on the first blank or the first label
        start = concatenate([_m.zeros((1, min(s, 2))), _m.full((1, s - min(s, 2)), _NEG)], axis=1)
        alpha = _m.add(steps[0], start)
        # past its output length a sequence's alphas stay as they are (output_length None: all use t_max)
        limit = None if out_len is None else expand_dims(out_len, -1)
        for t in range(1, t_max):
            one = concatenate([neg1, alpha[:, :-1]], axis=1)
            two = _m.add(concatenate([neg2, alpha[:, :-2]], axis=1), skip_penalty)
            new = _m.add(_m.logaddexp(_m.logaddexp(alpha, one), two), steps[t])
            alpha = new if limit is None else _m.where(_m.less(t, limit), new, alpha)
        # the sequence ends on the last label or on the blank after it
        last = take_along_axis(alpha, _m.multiply(tl, 2), axis=1)
        before = take_along_axis(alpha, _m.maximum(_m.subtract(_m.multiply(tl, 2), 1), 0), axis=1)
        before = _m.add(before, _m.multiply(_m.cast(_m.equal(tl, 0), dtypes.FLOAT32), _NEG))
        return _m.negative(reshape(_m.logaddexp(last, before), (b,)))


def ctc_decode(inputs, sequence_lengths, strategy="greedy", beam_width=100, top_paths=1, merge_repeated=True,
               mask_index=0):
    """Decodes the output of a CTC model (keras.ops.ctc_decode).

    inputs: (batch, max_length, num_classes) logits (not softmax-normalised); sequence_lengths:
    (batch,) the steps of each sequence to decode; mask_index: the blank class (None: the last
    class).
    strategy="greedy": the best class at each step, repeats merged (merge_repeated) and blanks
    removed. Returns (decoded (1, batch, max_length) int32, scores (batch, 1) float32): the labels
    first, then -1 padding; the score is minus the sum of the chosen logits.
    strategy="beam_search": CTC prefix beam search over log-softmax(inputs) keeping `beam_width`
    label sequences. Returns (decoded (top_paths, batch, max_length) int32, scores
    (batch, top_paths) float32, the log-probabilities of the `top_paths` best sequences, best
    first). Beam search always merges repeats not separated by a blank (that is how CTC reads a
    path): `merge_repeated=False` is for greedy decoding only, and is refused here. Sequences of
    exactly equal score may be ranked in another order than Keras's."""
    op = "ctc_decode"
    x = _as_tensor(inputs, op)
    if x.ndim != 3:
        raise ValueError(f"{op}: expected inputs of shape (batch_size, max_length, num_classes), received shape "
                         f"{x.shape}")
    if x.dtype != dtypes.FLOAT32:
        x = _m.cast(x, dtypes.FLOAT32)
    b, t_max, classes = x.shape
    if classes == 0:
        raise ValueError(f"{op}: inputs have no classes (shape {x.shape})")
    blank = classes - 1 if mask_index is None else _class_index(mask_index, classes, op, "mask_index")
    lengths = _lengths(sequence_lengths, op, "sequence_lengths", b, x.device)
    if strategy == "greedy":
        with _device(x.device):
            return _greedy(x, lengths, bool(merge_repeated), blank)
    if strategy != "beam_search":
        raise ValueError(f"{op}: `strategy` must be 'greedy' or 'beam_search', received strategy={strategy!r}")
    beam_width = validation.size(beam_width, op, "`beam_width`", minimum=1)
    top_paths = validation.size(top_paths, op, "`top_paths`", minimum=1)
    if top_paths > beam_width:
        raise ValueError(f"{op}: `top_paths` ({top_paths}) cannot exceed `beam_width` ({beam_width}): the search "
                         "keeps only beam_width sequences")
    if not merge_repeated:
        raise ValueError(f"{op}: merge_repeated=False applies to strategy='greedy' only; beam search scores label "
                         "sequences by CTC's rule, which always merges repeats not separated by a blank (Keras "
                         "ignores the argument there). Pass merge_repeated=True, or use strategy='greedy'")
    if t_max == 0:
        raise ValueError(f"{op}: inputs have no time steps (shape {x.shape})")
    with _device(x.device):
        return _beam_search(x, lengths, beam_width, top_paths, blank)


def _greedy(x, lengths, merge_repeated, blank):
    b, t_max, _ = x.shape
    best = _m.argmax(x, axis=-1)                                       # (b, t) int64
    score = _m.max(x, axis=-1)
    steps = np.arange(t_max, dtype=np.int64).reshape(1, t_max)
    past = _m.greater_equal(steps, expand_dims(lengths, -1))
    best = _m.where(past, blank, best)
    score = _m.where(past, 0.0, score)
    if merge_repeated and t_max > 1:
        repeat = concatenate([_m.zeros((b, 1), dtype=dtypes.BOOL), _m.equal(best[:, 1:], best[:, :-1])], axis=1)
        best = _m.where(repeat, blank, best)
    dropped = _m.equal(best, blank)
    best = _m.where(dropped, -1, best)
    # the kept labels first, in order (their keys are their distinct positions), then the -1s
    order = argsort(_m.where(dropped, t_max, _m.add(_m.zeros((b, t_max), dtype=dtypes.INT64), steps)), axis=-1)
    best = take_along_axis(best, order, axis=-1)
    return (expand_dims(_m.cast(best, dtypes.INT32), 0),
            expand_dims(_m.negative(_m.sum(score, axis=1)), -1))


def _beam_search(x, lengths, k, top_paths, blank):
    """CTC prefix beam search; see ctc_decode. State per (sequence, beam): the label path
    ((b, k, t) int64, -1 padded), its length, and log p(paths ending in a blank) `pb` and in its
    last label `pnb`; a beam with both at -inf is an empty slot."""
    b, t_max, c = x.shape
    ninf = -_pymath.inf
    logp = log_softmax(x, axis=-1)
    positions = np.arange(t_max, dtype=np.int64)
    classes = np.arange(c, dtype=np.int64)
    is_blank_class = classes == blank
    paths = _m.full((b, k, t_max), -1, dtype=dtypes.INT64)
    lens = _m.zeros((b, k), dtype=dtypes.INT64)
    first = np.full((1, k), ninf, np.float32)
    first[0, 0] = 0.0                                     # one beam: the empty sequence, which ends in a blank
    pb = _m.add(_m.zeros((b, k)), first)
    pnb = _m.full((b, k), ninf)
    for t in range(t_max):
        lp = logp[:, t, :]                                                   # (b, c)
        tot = _m.logaddexp(pb, pnb)
        live = _m.greater(tot, ninf)
        has_last = _m.greater(lens, 0)
        last = reshape(take_along_axis(paths, expand_dims(_m.maximum(_m.subtract(lens, 1), 0), -1), axis=2), (b, k))
        last = _m.where(has_last, last, -1)
        # the beam itself: a blank, or its last label again (merged)
        same_pb = _m.add(tot, lp[:, blank:blank + 1])
        lp_last = take_along_axis(lp, _m.maximum(last, 0), axis=1)
        same_pnb = _m.where(has_last, _m.add(pnb, lp_last), ninf)
        # the beam extended by a label c: from any path, or only from blank-ending paths when c repeats the last
        repeats = _m.equal(expand_dims(last, -1), classes)                   # (b, k, c)
        ext = _m.add(_m.where(repeats, expand_dims(pb, -1), expand_dims(tot, -1)), expand_dims(lp, 1))
        ext = _m.where(is_blank_class, ninf, ext)
        # an extension equal to a beam already there (beam j = beam i + last(j)) adds to that beam
        prefix = _m.where(_m.equal(positions, expand_dims(_m.subtract(lens, 1), -1)), -1, paths)
        same = _m.all(_m.equal(expand_dims(prefix, 2), expand_dims(paths, 1)), axis=-1)      # (b, j, i)
        same = _m.logical_and(same, _m.logical_and(expand_dims(_m.logical_and(live, has_last), -1),
                                                   expand_dims(live, 1)))
        ext_for_j = transpose(take_along_axis(ext, _m.broadcast_to(expand_dims(_m.maximum(last, 0), 1), (b, k, k)),
                                              axis=2), (0, 2, 1))              # [b, j, i] = ext[b, i, last[b, j]]
        same_pnb = _m.logaddexp(same_pnb, _m.logsumexp(_m.where(same, ext_for_j, ninf), axis=-1))
        taken = matmul(transpose(_m.cast(same, dtypes.FLOAT32), (0, 2, 1)),
                       one_hot(_m.maximum(last, 0), c))                        # (b, i, c)
        ext = _m.where(_m.greater(taken, 0.5), ninf, ext)
        # keep the k best of the beams and their extensions
        pool = concatenate([_m.logaddexp(same_pb, same_pnb), reshape(ext, (b, k * c))], axis=1)
        best, pick = top_k(pool, k)
        kept = _m.less(pick, k)
        ext_pick = _m.maximum(_m.subtract(pick, k), 0)
        src = _m.where(kept, pick, _m.floor_divide(ext_pick, c))
        label = _m.mod(ext_pick, c)
        new_paths = take_along_axis(paths, _m.broadcast_to(expand_dims(src, -1), (b, k, t_max)), axis=1)
        new_lens = take_along_axis(lens, src, axis=1)
        write = _m.logical_and(_m.equal(positions, expand_dims(new_lens, -1)), expand_dims(_m.logical_not(kept), -1))
        new_paths = _m.where(write, expand_dims(label, -1), new_paths)
        new_lens = _m.add(new_lens, _m.cast(_m.logical_not(kept), dtypes.INT64))
        new_pb = _m.where(kept, take_along_axis(same_pb, src, axis=1), ninf)
        new_pnb = _m.where(kept, take_along_axis(same_pnb, src, axis=1), best)
        if t == 0:
            paths, lens, pb, pnb = new_paths, new_lens, new_pb, new_pnb
        else:       # a sequence past its length keeps its beams
            on = expand_dims(_m.less(t, lengths), -1)
            paths = _m.where(expand_dims(on, -1), new_paths, paths)
            lens, pb, pnb = _m.where(on, new_lens, lens), _m.where(on, new_pb, pb), _m.where(on, new_pnb, pnb)
    scores, pick = top_k(_m.logaddexp(pb, pnb), top_paths)
    decoded = take_along_axis(paths, _m.broadcast_to(expand_dims(pick, -1), (b, top_paths, t_max)), axis=1)
    decoded = _m.where(expand_dims(_m.greater(scores, ninf), -1), decoded, -1)
    return _m.cast(transpose(decoded, (1, 0, 2)), dtypes.INT32), scores
