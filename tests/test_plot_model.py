"""utils.model_to_dot / utils.plot_model: the DOT text always; drawings through Graphviz's `dot`
(a stand-in program checks how it is called; the real one where it is installed)."""
import os
import re
import shutil
import stat

import numpy as np
import pytest

import lamina
from lamina import layers, utils


def _graph():
    i = lamina.Input((3,), name="in_inner")
    inner = lamina.Model(i, layers.Dense(2, name="di")(i), name="inner")
    j = lamina.Input((3,), name="inp")
    h = inner(j)
    d = layers.Dense(1, activation="relu", name="do")(h)
    model = lamina.Model(j, layers.Concatenate(name="cat")([d, h]), name="graph")
    model.get_layer("inner").trainable = False
    return model


def _names(model, nested=True):
    """id -> name of every layer box, nested models' layers included."""
    out = {}
    for l in model.layers:
        out[str(id(l))] = l.name
        if nested and hasattr(l, "layers"):
            out.update(_names(l))
    return out


def _nodes(text, names):
    return {names[m] for m in re.findall(r"^(\d+) \[label=", text, re.M)}


def _edges(text, names):
    return {(names[a], names[b]) for a, b in re.findall(r"^(\d+) -> (\d+) \[penwidth=2\];$", text, re.M)}


def test_functional_graph_has_every_layer_and_edge():
    m = _graph()
    text = utils.model_to_dot(m).to_string()
    names = _names(m)
    assert text.startswith("digraph G {\nrankdir=TB;\nconcentrate=true;\ndpi=200;\nsplines=ortho;\n"
                           "node [shape=record];\n") and text.endswith("}\n")
    assert _nodes(text, names) == {"inp", "inner", "do", "cat"}
    assert _edges(text, names) == {("inp", "inner"), ("inner", "do"), ("do", "cat"), ("inner", "cat")}
    assert "<b>do</b> (Dense)" in text and "<b>inp</b> (InputLayer)" in text
    assert str(utils.model_to_dot(m)) == text


def test_sequential_draws_its_layers_in_a_chain():
    m = lamina.Sequential([lamina.Input((4,)), layers.Dense(3, name="a"), layers.Dropout(0.5, name="b"),
                           layers.Dense(1, name="c")])
    text = utils.model_to_dot(m).to_string()
    names = _names(m)
    assert _nodes(text, names) == {"a", "b", "c"}   # as Keras 3: no box for the input
    assert _edges(text, names) == {("a", "b"), ("b", "c")}
    with pytest.raises(ValueError, match="has not yet been built"):
        utils.model_to_dot(lamina.Sequential([layers.Dense(1)]))


def test_expand_nested_draws_clusters_and_connects_inner_layers():
    m = _graph()
    names = _names(m)
    text = utils.model_to_dot(m, expand_nested=True).to_string()
    assert 'subgraph cluster_inner {\nlabel=inner;\nlabeljust=l;\nstyle=dashed;\n' in text
    assert _nodes(text, names) == {"inp", "in_inner", "di", "do", "cat"}
    assert _edges(text, names) == {("inp", "in_inner"), ("in_inner", "di"), ("di", "do"), ("di", "cat"),
                                   ("do", "cat")}
    seq = lamina.Sequential([lamina.Input((3,)), layers.Dense(2, name="n1"),
                             lamina.Sequential([layers.Dense(2, name="s1"), layers.Dense(2, name="s2")], name="sub"),
                             layers.Dense(1, name="n3")])
    text = utils.model_to_dot(seq, expand_nested=True).to_string()
    assert _edges(text, _names(seq)) == {("n1", "s1"), ("s1", "s2"), ("s2", "n3")}
    assert _edges(utils.model_to_dot(seq).to_string(), _names(seq)) == {("n1", "sub"), ("sub", "n3")}


def test_label_options():
    m = _graph()
    plain = utils.model_to_dot(m).to_string()
    for absent in ("Input shape", "Output shape", "Output dtype", "Activation", "Trainable"):
        assert absent not in plain
    full = utils.model_to_dot(m, show_shapes=True, show_dtype=True, show_layer_activations=True,
                              show_trainable=True).to_string()
    do = [l for l in full.splitlines() if "<b>do</b>" in l][0]
    assert "Activation: <b>relu</b>" in do and "Input shape: <b>(None, 2)</b>" in do
    assert "Output shape: <b>(None, 1)</b>" in do and "Output dtype: <b>float32</b>" in do
    assert "<b>Trainable</b>" in do and 'colspan="4"' in do
    inner = [l for l in full.splitlines() if "<b>inner</b>" in l][0]
    assert "<b>Non-trainable</b>" in inner
    cat = [l for l in full.splitlines() if "<b>cat</b>" in l][0]
    assert "Input shape: <b>[(None, 1), (None, 2)]</b>" in cat and "Trainable" not in cat
    inp = [l for l in full.splitlines() if "<b>inp</b>" in l][0]
    assert "Input shape" not in inp and "Output shape: <b>(None, 3)</b>" in inp
    nameless = utils.model_to_dot(m, show_layer_names=False).to_string()
    assert "<b>Dense</b>" in nameless and "<b>do</b>" not in nameless


def test_graph_attributes_and_escaping():
    i = lamina.Input((2,), name="x")
    m = lamina.Model(i, layers.Dense(1, name='a&b<"c">')(i), name="odd name")
    text = utils.model_to_dot(m, rankdir="LR", dpi=96, splines="curved").to_string()
    assert "rankdir=LR;" in text and "dpi=96;" in text and "splines=curved;" in text
    assert "<b>a&amp;b&lt;&quot;c&quot;&gt;</b>" in text
    outer_in = lamina.Input((2,))
    outer = lamina.Model(outer_in, m(outer_in))
    expanded = utils.model_to_dot(outer, expand_nested=True).to_string()
    assert 'subgraph "cluster_odd name" {\nlabel="odd name";' in expanded
    for kwargs, message in [({"rankdir": "XY"}, "rankdir must be one of"), ({"dpi": 0}, "dpi must be a positive"),
                            ({"splines": "wiggly"}, "splines must be one of"),
                            ({"layer_range": ["a", "b"]}, "layer_range` is no longer supported"),
                            ({"colour": True}, r"unrecognized keyword arguments \['colour'\]")]:
        with pytest.raises(ValueError, match=message):
            utils.model_to_dot(m, **kwargs)


def test_subclassed_model_is_one_box():
    class Sub(lamina.Model):
        def __init__(self):
            super().__init__(name="sub")
            self.d = layers.Dense(1)

        def call(self, x):
            return self.d(x)
    m = Sub()
    m(np.zeros((1, 2), np.float32))
    text = utils.model_to_dot(m, show_shapes=True).to_string()
    assert _nodes(text, {str(id(m)): "sub"}) == {"sub"} and "->" not in text
    assert "Output shape: <b>?</b>" in text


def test_plot_model_writes_dot_text_without_graphviz(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    m = _graph()
    target = tmp_path / "model.dot"
    assert utils.plot_model(m, to_file=target, show_shapes=True) is None
    # plot_model's default hides layer names, as Keras 3's
    assert target.read_text() == utils.model_to_dot(m, show_shapes=True, show_layer_names=False).to_string()
    assert sorted(os.listdir(tmp_path)) == ["model.dot"]   # no temporary left behind
    with pytest.raises(ImportError, match="needs Graphviz's `dot` program"):
        utils.plot_model(m, to_file=tmp_path / "model.png")
    assert not (tmp_path / "model.png").exists()


def _fake_dot(folder, body):
    folder.mkdir()
    exe = folder / "dot"
    exe.write_text("#!/bin/sh\n" + body)
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return folder


def test_plot_model_runs_dot_for_pictures(tmp_path, monkeypatch):
    # a stand-in `dot`: prints its arguments, then the DOT text it was given on stdin
    bin_dir = _fake_dot(tmp_path / "bin", 'echo "args:$*"\ncat\n')
    monkeypatch.setenv("PATH", str(bin_dir) + os.pathsep + os.environ.get("PATH", ""))
    m = _graph()
    assert utils.plot_model(m, to_file=tmp_path / "model.pdf", rankdir="LR") is None
    out = (tmp_path / "model.pdf").read_text()
    assert out == "args:-Tpdf\n" + utils.model_to_dot(m, rankdir="LR", show_layer_names=False).to_string()
    utils.plot_model(m, to_file=tmp_path / "model")   # no extension: png, as Keras
    assert (tmp_path / "model").read_text().startswith("args:-Tpng\n")
    png = utils.model_to_dot(m).create(format="png")
    assert png.startswith(b"args:-Tpng\n")


def test_a_failing_dot_leaves_the_old_file(tmp_path, monkeypatch):
    bin_dir = _fake_dot(tmp_path / "bin", 'echo "Format: \\"$1\\" not recognized" >&2\nexit 1\n')
    monkeypatch.setenv("PATH", str(bin_dir))
    target = tmp_path / "model.xyz"
    target.write_text("old")
    with pytest.raises(ValueError, match=r"could not draw the model as 'xyz' \(exit status 1\): Format"):
        utils.plot_model(_graph(), to_file=target)
    assert target.read_text() == "old" and sorted(os.listdir(tmp_path)) == ["bin", "model.xyz"]


@pytest.mark.skipif(utils.graphviz_program() is None,
                    reason="neither Graphviz's `dot` nor graphviz-pure (pip install \"lamina[plot]\") is installed")
def test_real_graphviz_draws_png_and_svg(tmp_path):
    m = _graph()
    utils.plot_model(m, to_file=tmp_path / "m.png", show_shapes=True, expand_nested=True)
    assert (tmp_path / "m.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    utils.plot_model(m, to_file=tmp_path / "m.svg")
    assert "<svg" in (tmp_path / "m.svg").read_text()
