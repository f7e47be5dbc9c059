"""Model.summary (models/summary.py): Keras 3's table and its options, compared with Keras's own
output where Keras is installed."""
import inspect

import numpy as np
import pytest

import lamina
from lamina import layers
from lamina.models.summary import print_summary, render_table
from keras_ref import keras_or_none


def _text(model, **kwargs):
    out = []
    print_summary(model, print_fn=out.append, **kwargs)
    assert len(out) == 1   # Keras 3 calls print_fn once, with the whole summary
    return out[0]


def _models(lib):
    """The same architectures, same names, in lamina or Keras."""
    L = lib.layers
    seq = lib.Sequential([lib.Input((5,)), L.Dense(4, name="d1"), L.Dropout(0.1, name="drop"),
                          L.Dense(1, name="a_very_long_layer_name_that_will_not_fit")], name="seq")
    i = lib.Input((3,), name="in_inner")
    inner = lib.Model(i, L.Dense(2, name="di")(i), name="inner")
    j = lib.Input((3,), name="inp")
    h = inner(j)
    graph = lib.Model(j, L.Concatenate(name="cat")([L.Dense(1, name="do")(h), h]), name="graph")
    graph.get_layer("inner").trainable = False
    a = lib.Input((4,), name="a")
    chain = lib.Model(a, L.Dense(2, name="c2")(L.BatchNormalization(name="bn")(L.Dense(3, name="c1")(a))),
                      name="chain")
    s = lib.Input((6,), name="s")
    shared = L.Dense(6, name="shared")
    twice = lib.Model(s, shared(shared(s)), name="twice")
    nested = lib.Sequential([lib.Input((3,)), L.Dense(2, name="n1"),
                             lib.Sequential([L.Dense(2, name="n2a"), L.Dense(2, name="n2b")], name="sub")],
                            name="outer")
    return {"seq": seq, "graph": graph, "chain": chain, "twice": twice, "nested": nested}


OPTIONS = [{}, {"line_length": 70}, {"show_trainable": True}, {"expand_nested": True},
           {"expand_nested": True, "show_trainable": True, "line_length": 120}]


def test_same_text_as_keras(monkeypatch):
    keras = keras_or_none()
    if keras is None:
        pytest.skip("Keras is not installed")
    monkeypatch.setenv("COLUMNS", "200")   # Keras and rich size the table from the terminal
    ours, theirs = _models(lamina), _models(keras)
    cases = [(name, opts) for name in ours for opts in OPTIONS]
    cases += [("seq", {"positions": [0.5, 0.7, 1.0]}), ("chain", {"positions": [0.2, 0.9, 1.0], "line_length": 50}),
              ("seq", {"layer_range": ["d1", "drop"]}), ("seq", {"layer_range": ["drop", "d1"]}),
              ("seq", {"layer_range": ["d.*", "a_very"]})]
    for name, opts in cases:
        expected = []
        theirs[name].summary(print_fn=lambda s, **_: expected.append(s), **opts)
        assert _text(ours[name], **opts) == expected[0], (name, opts)


def test_chain_and_graph_columns():
    m = _models(lamina)
    assert "Connected to" not in _text(m["chain"], line_length=100)
    assert "Connected to" not in _text(m["seq"], line_length=100)
    graph = _text(m["graph"], line_length=120)
    assert "Connected to" in graph and "inp[0][0]" in graph and "inner[0][0]" in graph
    assert "Connected to" in _text(m["twice"], line_length=120)   # a layer called twice is not a chain


def test_line_length_sets_the_width_of_every_table_line():
    m = _models(lamina)["seq"]
    for n in (40, 70, 100):
        table = [l for l in _text(m, line_length=n).splitlines() if l[:1] in "┏┃┡│├└"]
        assert table and all(len(l) == n for l in table)


def test_positions_place_the_column_borders():
    m = _models(lamina)["chain"]
    top = _text(m, line_length=40, positions=[0.5, 0.75, 1.0]).splitlines()[1]
    # widths 20, 10, 10 (+1 padding each side) fitted into 40 - 4 borders as rich does: 19, 8, 9
    assert [i for i, c in enumerate(top) if c in "┳┓"] == [20, 29, 39]
    top = _text(m, positions=[30, 50, 62]).splitlines()[1]   # absolute: column ends in characters
    assert len(top) == 62
    with pytest.raises(ValueError, match="positions needs one entry per column"):
        _text(m, positions=[0.5, 1.0])
    with pytest.raises(ValueError, match="would be 2 characters wide"):
        _text(m, line_length=40, positions=[0.5, 0.55, 1.0])
    with pytest.raises(ValueError, match="line_length=70"):
        _text(m, positions=[30, 50, 62], line_length=70)
    with pytest.raises(ValueError, match="line_length must be a positive int"):
        _text(m, line_length=0)


def test_show_trainable_adds_a_column():
    m = _models(lamina)["graph"]
    text = _text(m, show_trainable=True, line_length=130)
    rows = {l.split()[1]: l for l in text.splitlines() if l.startswith("│ ") and l.split()[1][0].isalpha()}
    assert "Trainable" in text.splitlines()[2]
    assert rows["inner"].rstrip("│ ").endswith("N")     # frozen
    assert rows["do"].rstrip("│ ").endswith("Y")
    assert rows["cat"].rstrip("│ ").endswith("-")       # no weights
    assert "Trainable" not in _text(m, line_length=130).splitlines()[2]


def test_expand_nested_lists_inner_layers():
    m = _models(lamina)["nested"]
    assert "n2a" not in _text(m, line_length=90)
    text = _text(m, expand_nested=True, line_length=90)
    assert "│    └ n2a (Dense)" in text and "│    └ n2b (Dense)" in text


def test_layer_range():
    m = _models(lamina)["seq"]
    text = _text(m, layer_range=["d1", "drop"], line_length=90)
    assert "d1 (Dense)" in text and "drop (Dropout)" in text and "a_very" not in text
    assert "d1 (Dense)" not in _text(m, layer_range=["drop", "a_.*"], line_length=90)
    for bad, message in [(["d1"], "must be a list or tuple of two"), ((1, 2), "must contain strings only"),
                         (["nope", "d1"], r"\['nope'\] match\(es\) no layer name"),
                         (["(", "d1"], "not a valid regular expression")]:
        with pytest.raises(ValueError, match=message):
            _text(m, layer_range=bad)


def test_counts_memory_and_unbuilt_layers():
    m = _models(lamina)["chain"]   # c1 15 + bn 12 (6 trainable) + c2 8
    text = _text(m, line_length=90)
    assert " Total params: 35 (140.00 B)\n" in text
    assert " Trainable params: 29 (116.00 B)\n" in text and " Non-trainable params: 6 (24.00 B)\n" in text
    assert "Optimizer params" not in text
    m.compile(lamina.optimizers.Adam(), "mse")
    m.fit(np.zeros((4, 4), np.float32), np.zeros((4, 2), np.float32), verbose=0)
    # Keras counts the iteration (int64) and the learning rate (float32) with the 2 x 29 moments
    assert " Optimizer params: 60 (244.00 B)\n" in _text(m, line_length=90)
    assert " Total params: 95 (384.00 B)\n" in _text(m, line_length=90)
    unbuilt = lamina.Sequential([layers.Dense(4, name="u1")], name="unbuilt")
    row = [l for l in _text(unbuilt, line_length=80).splitlines() if "u1" in l][0]
    assert "?" in row and "0 (unbuilt)" in row


def test_long_names_wrap_and_end_in_an_ellipsis():
    text = _text(_models(lamina)["seq"], line_length=60)
    assert "a_very_long_layer_na…" in text or "a_very_long_layer_name_…" in text
    lines = render_table(["A", "B"], ["left", "right"], [10, 10], [["one two three", "x"]], 20)
    assert lines == ["┏━━━━━━━━┳━━━━━━━━━┓", "┃ A      ┃       B ┃", "┡━━━━━━━━╇━━━━━━━━━┩",
                     "│ one    │       x │", "│ two    │         │", "│ three  │         │", "└────────┴─────────┘"]


def test_default_prints_to_stdout(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "84")   # the default width: min(88, terminal - 4)
    m = _models(lamina)["seq"]
    print_summary(m)
    out = capsys.readouterr().out
    assert out == _text(m) and out.startswith('Model: "seq"\n') and len(out.splitlines()[1]) == 80


def test_model_summary_forwards_the_options(capsys):
    params = inspect.signature(lamina.Model.summary).parameters
    if not {"positions", "expand_nested", "show_trainable", "layer_range"} <= set(params):
        pytest.skip("models/model.py's Model.summary does not pass Keras's options to print_summary yet")
    m = _models(lamina)["nested"]
    out = []
    m.summary(line_length=77, expand_nested=True, show_trainable=True, layer_range=["sub", "sub"],
              print_fn=out.append)
    assert out == [_text(m, line_length=77, expand_nested=True, show_trainable=True, layer_range=["sub", "sub"])]
    m.summary(positions=[0.3, 0.6, 1.0], line_length=60)
    assert capsys.readouterr().out == _text(m, positions=[0.3, 0.6, 1.0], line_length=60)


def _wrapped(lib, kind):
    O = lib.optimizers
    if kind == "loss_scale":
        return O.LossScaleOptimizer(O.Adam())
    return O.MultiOptimizer(O.OptimizerMap(O.SGD(momentum=0.9), {".*c1/.*": O.Adam()}))


def _optimizer_count(text):
    import re
    return int(re.search(r" Optimizer params: (\d+) \(", text).group(1))


# chain: c1 15 weights, bn 6 trainable, c2 8. LossScaleOptimizer: its iteration, learning rate, step counter and
# scale, then Adam's iteration, learning rate and 2 x 29 moments. MultiOptimizer: its iteration and learning rate,
# Adam's 2 + 2 x 15 (c1), SGD's 2 + 14 momentums (bn, c2). Bytes: iterations and the step counter int64 (as
# Keras on TensorFlow; Keras on JAX holds them in int32), the rest float32.
@pytest.mark.parametrize("kind, count, size", [("loss_scale", 64, 268), ("multi", 50, 212)])
def test_optimizer_params_of_wrapper_optimizers(kind, count, size):
    m = _models(lamina)["chain"]
    m.compile(_wrapped(lamina, kind), "mse")
    m.fit(np.zeros((4, 4), np.float32), np.zeros((4, 2), np.float32), verbose=0)
    text = _text(m, line_length=90)
    assert f" Optimizer params: {count} ({size:.2f} B)\n" in text
    store = {}
    m.optimizer.save_own_variables(store)   # what a saved file holds for it
    assert sum(np.asarray(v).size for v in store.values()) == count
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed: no reference count")
    k = _models(keras)["chain"]
    k.compile(_wrapped(keras, kind), "mse")
    k.fit(np.zeros((4, 4), np.float32), np.zeros((4, 2), np.float32), verbose=0)
    out = []
    k.summary(print_fn=out.append, line_length=90)
    assert _optimizer_count("\n".join(out)) == count
