"""Beam search on a hand-set model whose sequence probabilities can be enumerated exhaustively."""
import itertools

import numpy as np
import pytest

import lamina
from lamina import ops
from lamina.models.decoding import Vocabulary, beam_search, greedy_decode

V, START, END, L = 4, 0, 1, 4  # tokens: 0 start, 1 end, 2 and 3 words; at most L steps


def _tables(n_inputs, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n_inputs, L + 1, V, V)).astype(np.float32) * 2.0
    logits[..., START] = -30.0  # never emit the start token
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    return logp  # logp[input, position, previous token, next token]


def _step_fn(logp):
    table = lamina.convert_to_tensor(logp.reshape(-1, V))
    n_inputs = logp.shape[0]

    def step(tokens, state):
        which, pos = state  # (N,) input index and position
        row = (which * (L + 1) + pos) * V + tokens
        return ops.take(table, row, axis=0), [which, pos + 1]
    return step


def _state(which):
    w = lamina.convert_to_tensor(np.asarray(which, np.int64))
    return [w, ops.zeros_like(w)]


def _exhaustive_best(logp_i):
    best, best_seq = -np.inf, None
    for n in range(1, L + 1):
        for words in itertools.product(range(V), repeat=n):
            if START in words or (END in words[:-1]) or (n < L and words[-1] != END):
                continue
            prev, s = START, 0.0
            for pos, w in enumerate(words):
                s += logp_i[pos, prev, w]
                prev = w
            if s > best:
                best, best_seq = s, list(words)
    return best_seq, best


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_wide_beam_finds_the_true_best_sequence(seed):
    logp = _tables(1, seed)
    want_seq, want_score = _exhaustive_best(logp[0])
    res = beam_search(_step_fn(logp), _state([0]), [START], END, beam_width=V ** (L - 1), max_length=L,
                      from_logits=False)
    seq, score = res[0][0]
    assert seq == want_seq and score == pytest.approx(want_score, abs=1e-4)


def test_beam_width_one_equals_greedy():
    logp = _tables(3, 5)
    step = _step_fn(logp)
    g_seqs, g_scores = greedy_decode(step, _state([0, 1, 2]), [START] * 3, END, max_length=L, from_logits=False)
    res = beam_search(step, _state([0, 1, 2]), [START] * 3, END, beam_width=1, max_length=L, from_logits=False)
    for (seq, score), gs, gsc in zip([r[0] for r in res], g_seqs, g_scores):
        assert seq == gs and score == pytest.approx(gsc, abs=1e-4)


def test_end_tokens_stop_hypotheses_and_results_are_sorted():
    logp = _tables(2, 7)
    res = beam_search(_step_fn(logp), _state([0, 1]), [START] * 2, END, beam_width=4, max_length=L,
                      from_logits=False)
    for hyps in res:
        assert len(hyps) == 4
        scores = [s for _, s in hyps]
        assert scores == sorted(scores, reverse=True)
        for seq, _ in hyps:
            assert END not in seq[:-1] and (seq[-1] == END or len(seq) == L)


def test_batch_equals_one_at_a_time():
    logp = _tables(3, 11)
    step = _step_fn(logp)
    batch = beam_search(step, _state([0, 1, 2]), [START] * 3, END, beam_width=3, max_length=L, from_logits=False)
    for i in range(3):
        single = beam_search(step, _state([i]), [START], END, beam_width=3, max_length=L, from_logits=False)
        assert [s for s, _ in single[0]] == [s for s, _ in batch[i]]
        np.testing.assert_allclose([x for _, x in single[0]], [x for _, x in batch[i]], atol=1e-5)


def test_length_penalty_and_arguments():
    logp = _tables(1, 3)
    res = beam_search(_step_fn(logp), _state([0]), [START], END, beam_width=3, max_length=L, length_penalty=1.0,
                      from_logits=False, num_results=2)
    assert len(res[0]) == 2
    with pytest.raises(ValueError, match="beam_width"):
        beam_search(_step_fn(logp), _state([0]), [START], END, beam_width=0)


def test_vocabulary_round_trip_oov_and_padding():
    v = Vocabulary.build(["Go home.", "Go now!", "I am home."], max_size=7)
    assert v.itos[:4] == ["<pad>", "<start>", "<end>", "<unk>"] and len(v) == 7
    assert v.itos[4:] == ["go", "home", "."]  # most frequent first, ties by first appearance
    ids = v.encode("Go home now.", add_start=True, add_end=True)
    assert ids == [1, v.stoi["go"], v.stoi["home"], v.unk_id, v.stoi["."], 2]
    assert v.decode(ids) == "go home <unk>."
    batch = v.encode_batch(["go", "go home ."], reverse=True)
    assert batch.tolist() == [[4, 0, 0], [6, 5, 4]]
    chars = Vocabulary.build(["ab", "ba"], char_level=True)
    assert chars.decode(chars.encode("abba")) == "abba"
