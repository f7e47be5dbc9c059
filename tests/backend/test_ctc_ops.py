"""ops.ctc_loss and ops.ctc_decode (backend/ctc.py): against brute-force sums over every
alignment, Keras (JAX backend), finite differences, and the errors."""
import itertools

import numpy as np
import pytest

import lamina
from lamina import losses, ops
from keras_ref import keras_or_none
from opcheck import check_grad

RNG = np.random.default_rng(21)


def needs_keras():
    keras = keras_or_none()
    if keras is None:
        pytest.skip("Keras parity needs keras (tested with KERAS_BACKEND=jax)")
    return keras


def log_softmax(x):
    x = np.asarray(x, np.float64)
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def collapse(path, blank):
    return tuple(k for k, _ in itertools.groupby(path) if k != blank)


def sequence_log_probs(logits, length, blank):
    """{label sequence: log p} over every alignment of the first `length` steps (tiny cases)."""
    lp = log_softmax(logits)
    out = {}
    for path in itertools.product(range(lp.shape[1]), repeat=length):
        key = collapse(path, blank)
        out[key] = np.logaddexp(out.get(key, -np.inf), sum(lp[t, k] for t, k in enumerate(path)))
    return out


def brute_loss(target, logits, target_length, output_length, blank):
    return np.array([-sequence_log_probs(logits[b], output_length[b], blank).get(
        tuple(int(v) for v in target[b][:target_length[b]]), -np.inf) for b in range(len(target))])


# ---- ctc_loss -------------------------------------------------------------------------------------------------

def test_ctc_loss_is_minus_log_of_the_sum_over_alignments():
    logits = RNG.standard_normal((4, 5, 4)).astype(np.float32)
    target = np.array([[1, 2, 2], [3, 0, 0], [1, 1, 3], [2, 3, 1]])
    tl, ol = np.array([3, 1, 2, 0]), np.array([5, 4, 5, 3])
    np.testing.assert_allclose(ops.ctc_loss(target, logits, tl, ol).numpy(), brute_loss(target, logits, tl, ol, 0),
                               rtol=1e-5)
    # another blank class, labels that use class 0
    target2 = np.array([[0, 1, 0], [2, 2, 0], [1, 0, 0], [0, 0, 0]])
    np.testing.assert_allclose(ops.ctc_loss(target2, logits, [3, 2, 1, 1], ol, mask_index=3).numpy(),
                               brute_loss(target2, logits, [3, 2, 1, 1], ol, 3), rtol=1e-5)
    # output_length None: every step counts (lamina's extension); losses.ctc shares the op
    full = ops.ctc_loss(target, logits, tl, None).numpy()
    np.testing.assert_allclose(full, brute_loss(target, logits, tl, [5] * 4, 0), rtol=1e-5)
    assert losses.ctc_loss is ops.ctc_loss is ops.nn.ctc_loss
    # padding past target_length may hold any value (-1 here)
    padded = np.where(np.arange(3) < tl[:, None], target, -1)
    np.testing.assert_allclose(ops.ctc_loss(padded, logits, tl, ol).numpy(),
                               ops.ctc_loss(target, logits, tl, ol).numpy())
    # a target longer than its output cannot be aligned: a large finite loss
    impossible = float(ops.ctc_loss([[1, 2, 3, 1]], logits[:1, :3], [4], [3])[0])
    assert np.isfinite(impossible) and impossible > 1e4


def test_ctc_loss_gradient():
    logits = RNG.standard_normal((3, 5, 4)).astype(np.float32)
    target = np.array([[1, 2, 2], [3, 0, 0], [1, 1, 3]])
    tl, ol = np.array([3, 1, 2]), np.array([5, 3, 4])
    check_grad(lambda x: ops.ctc_loss(target, x, tl, ol), lambda x: brute_loss(target, x, tl, ol, 0), [logits],
               atol=2e-3, rtol=2e-3)


# ---- ctc_decode -----------------------------------------------------------------------------------------------

def np_greedy(x, lengths, merge, blank):
    out = np.full((x.shape[0], x.shape[1]), -1)
    scores = np.zeros((x.shape[0], 1))
    for b in range(x.shape[0]):
        best = x[b, :lengths[b]].argmax(-1)
        scores[b, 0] = -x[b, :lengths[b]].max(-1).sum()
        keep = [k for i, k in enumerate(best) if k != blank and not (merge and i > 0 and best[i - 1] == k)]
        out[b, :len(keep)] = keep
    return out[None], scores


@pytest.mark.parametrize("merge", [True, False])
@pytest.mark.parametrize("blank", [0, 2, None])
def test_greedy_decode(merge, blank):
    x = RNG.standard_normal((4, 8, 5)).astype(np.float32)
    x[0, 2:5] = x[0, 1] + 0 * x[0, 2:5]         # repeats
    lengths = np.array([8, 5, 0, 7])
    decoded, scores = ops.ctc_decode(x, lengths, merge_repeated=merge, mask_index=blank)
    want, want_scores = np_greedy(x, lengths, merge, 4 if blank is None else blank)
    assert decoded.dtype == "int32" and decoded.shape == (1, 4, 8) and scores.shape == (4, 1)
    np.testing.assert_array_equal(decoded.numpy(), want)
    np.testing.assert_allclose(scores.numpy(), want_scores, rtol=1e-5)


@pytest.mark.parametrize("blank", [0, 3])
def test_beam_search_without_pruning_is_exact(blank):
    """With a beam wider than the number of label sequences, beam search finds the most probable
    sequences exactly: compare with the sum over every alignment."""
    x = (RNG.standard_normal((3, 4, 4)) * 1.5).astype(np.float32)
    lengths = np.array([4, 3, 1])
    decoded, scores = ops.ctc_decode(x, lengths, "beam_search", beam_width=64, top_paths=3, mask_index=blank)
    assert decoded.shape == (3, 3, 4) and decoded.dtype == "int32" and scores.shape == (3, 3)
    for b in range(3):
        probs = sorted(sequence_log_probs(x[b], lengths[b], blank).items(), key=lambda kv: -kv[1])[:3]
        for p, (seq, lp) in enumerate(probs):
            got = decoded.numpy()[p, b]
            assert tuple(got[got >= 0]) == seq and np.all(got[len(seq):] == -1)
            assert scores.numpy()[b, p] == pytest.approx(lp, rel=1e-5)


def np_beam_search(logits, length, beam_width, blank):
    """Textbook CTC prefix beam search: {sequence: [log p ending in blank, in its last label]},
    pruned to the beam_width most probable sequences after every step."""
    lp = log_softmax(logits)
    beams = {(): [0.0, -np.inf]}
    for t in range(max(length, 1)):
        new = {}
        for seq, (pb, pnb) in beams.items():
            tot = np.logaddexp(pb, pnb)
            entry = new.setdefault(seq, [-np.inf, -np.inf])
            entry[0] = np.logaddexp(entry[0], tot + lp[t, blank])
            if seq:
                entry[1] = np.logaddexp(entry[1], pnb + lp[t, seq[-1]])
            for c in range(lp.shape[1]):
                if c != blank:
                    ext = new.setdefault(seq + (c,), [-np.inf, -np.inf])
                    ext[1] = np.logaddexp(ext[1], (pb if seq and seq[-1] == c else tot) + lp[t, c])
        beams = dict(sorted(new.items(), key=lambda kv: -np.logaddexp(*kv[1]))[:beam_width])
    return sorted(((seq, np.logaddexp(*s)) for seq, s in beams.items()), key=lambda kv: -kv[1])


@pytest.mark.parametrize("beam_width,blank", [(1, 0), (3, 2), (7, 5)])
def test_beam_search_pruned_against_numpy(beam_width, blank):
    x = (RNG.standard_normal((3, 10, 6)) * 2).astype(np.float32)
    lengths = np.array([10, 6, 0])
    top = min(beam_width, 3)
    decoded, scores = ops.ctc_decode(x, lengths, "beam_search", beam_width, top, mask_index=blank)
    for b in range(3):
        want = np_beam_search(x[b], lengths[b], beam_width, blank)[:top]
        for p, (seq, lp) in enumerate(want):
            got = decoded.numpy()[p, b]
            assert tuple(got[got >= 0]) == seq
            assert scores.numpy()[b, p] == pytest.approx(lp, rel=1e-5)


def test_beam_search_pruned_keras_parity():
    keras = needs_keras()
    x = (RNG.standard_normal((3, 12, 6)) * 2).astype(np.float32)
    lengths = np.array([12, 7, 1])
    # 6 classes, 12 steps, 4 beams: the search prunes at every step
    ours = ops.ctc_decode(x, lengths, "beam_search", 4, 3, mask_index=5)
    theirs = keras.ops.ctc_decode(x, lengths, "beam_search", 4, 3, mask_index=5)
    np.testing.assert_array_equal(ours[0].numpy(), np.asarray(theirs[0]))
    np.testing.assert_allclose(ours[1].numpy(), np.asarray(theirs[1]), rtol=1e-5)
    ours = ops.ctc_decode(x, lengths, merge_repeated=False, mask_index=3)
    theirs = keras.ops.ctc_decode(x, lengths, merge_repeated=False, mask_index=3)
    np.testing.assert_array_equal(ours[0].numpy(), np.asarray(theirs[0]))
    np.testing.assert_allclose(ours[1].numpy(), np.asarray(theirs[1]), rtol=1e-5)
    target = np.array([[1, 2, 2, 0], [3, 0, 0, 0], [4, 4, 1, 2]])
    tl, ol = np.array([3, 1, 4]), np.array([12, 7, 9])
    np.testing.assert_allclose(ops.ctc_loss(target, x, tl, ol, 5).numpy(),
                               np.asarray(keras.ops.ctc_loss(target, x, tl, ol, 5)), rtol=1e-5)


def test_beam_search_fewer_sequences_than_paths():
    # one step, two classes (blank + one label): only two sequences exist
    x = np.array([[[0.3, -0.2]]], np.float32)
    decoded, scores = ops.ctc_decode(x, [1], "beam_search", beam_width=4, top_paths=3)
    lp = log_softmax(x[0, 0])
    np.testing.assert_array_equal(decoded.numpy()[:, 0, 0], [-1, 1, -1])
    np.testing.assert_allclose(scores.numpy()[0, :2], [lp[0], lp[1]], rtol=1e-6)
    assert scores.numpy()[0, 2] == -np.inf


@pytest.mark.parametrize("call,exc,match", [
    (lambda: ops.ctc_decode(np.zeros((2, 3)), [3, 3]), ValueError, r"expected inputs of shape \(batch_size"),
    (lambda: ops.ctc_decode(np.zeros((2, 3, 4)), [3]), ValueError, r"`sequence_lengths` must have shape \(batch_size"),
    (lambda: ops.ctc_decode(np.zeros((2, 3, 4)), [3, 3], "best"), ValueError, r"'greedy' or 'beam_search'"),
    (lambda: ops.ctc_decode(np.zeros((2, 3, 4)), [3, 3], "beam_search", 2, 3), ValueError,
     r"`top_paths` \(3\) cannot exceed `beam_width` \(2\)"),
    (lambda: ops.ctc_decode(np.zeros((2, 3, 4)), [3, 3], "beam_search", 0), ValueError, r"beam_width.*>= 1"),
    (lambda: ops.ctc_decode(np.zeros((2, 3, 4)), [3, 3], "beam_search", merge_repeated=False), ValueError,
     r"merge_repeated=False applies to strategy='greedy' only"),
    (lambda: ops.ctc_decode(np.zeros((2, 3, 4)), [3, 3], mask_index=4), ValueError,
     r"`mask_index` must be a class index in \[0, 4\)"),
    (lambda: ops.ctc_loss(np.zeros((2, 3)), np.zeros((3, 4, 5)), [1, 1], [4, 4]), ValueError,
     r"expected target of shape \(batch, max_label_length\)"),
    (lambda: ops.ctc_loss(np.zeros((2, 3)), np.zeros((2, 4, 5)), [1, 1, 1], [4, 4]), ValueError,
     r"`target_length` must have shape \(batch_size,\) = \(2,\)"),
    (lambda: ops.ctc_loss([[1, 7]], np.zeros((1, 4, 5)), [2], [4]), ValueError,
     r"`target` holds a label outside \[0, 5\) within its target_length"),
    (lambda: ops.ctc_loss([[-1, 2]], np.zeros((1, 4, 5)), [2], [4]), ValueError, r"holds a label outside"),
    (lambda: ops.ctc_loss(np.zeros((2, 3)), np.zeros((2, 4, 5)), [1, 1], [4, 4], mask_index=1.5), TypeError,
     r"`mask_index` must be an integer"),
])
def test_errors(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_decode_follows_the_input_device():
    x = lamina.convert_to_tensor(RNG.standard_normal((2, 4, 3)).astype(np.float32))
    decoded, scores = ops.ctc_decode(x, [4, 2], "beam_search", beam_width=4)
    assert decoded.device is x.device and scores.device is x.device
