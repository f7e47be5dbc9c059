"""lamina.tree (keras.tree): nested lists, tuples, namedtuples, dicts and deques; checked
against fixed expectations, and against real Keras's results when keras is installed."""
import collections

import numpy as np
import pytest

import lamina
from lamina import tree
from keras_ref import keras_or_none

F = collections.namedtuple("F", "a b")
G = collections.namedtuple("F", "a b")   # the same name and fields: still another type
OD = collections.OrderedDict


def test_flatten_orders_dict_values_by_key():
    s = {"b": 1, "a": [2, (3, None)]}
    assert tree.flatten(s) == [2, 3, None, 1]
    assert tree.flatten_with_path(s) == [(("a", 0), 2), (("a", 1, 0), 3), (("a", 1, 1), None), (("b",), 1)]
    assert tree.flatten(OD([("b", 1), ("a", 2)])) == [1, 2]   # an OrderedDict keeps its order
    assert tree.flatten(None) == [None] and tree.flatten(5) == [5] and tree.flatten([]) == []
    x = np.zeros(3)
    assert tree.flatten([x])[0] is x and not tree.is_nested(x)
    assert tree.is_nested(()) and tree.is_nested({}) and not tree.is_nested("abc")


def test_pack_sequence_as_keeps_the_structures_key_order():
    s = {"key3": "", "key1": "", "key2": ""}
    out = tree.pack_sequence_as(s, ["value1", "value2", "value3"])
    assert out == {"key3": "value3", "key1": "value1", "key2": "value2"} and list(out) == ["key3", "key1", "key2"]
    assert tree.pack_sequence_as((("a", "b"), ("c", "d", "e"), "f"), [1, 2, 3, 4, 5, 6]) == ((1, 2), (3, 4, 5), 6)
    assert tree.pack_sequence_as(F(0, [0]), [1, 2]) == F(1, [2])
    assert tree.pack_sequence_as(7, [1]) == 1
    with pytest.raises(ValueError, match="2 leaves but flat_sequence has 1"):
        tree.pack_sequence_as([0, 0], [1])
    with pytest.raises(TypeError, match="flat_sequence must be a list"):
        tree.pack_sequence_as([0], 3)


def test_map_structure():
    assert tree.map_structure(lambda v: v ** 2, [[1], [2], [3]]) == [[1], [4], [9]]
    assert tree.map_structure(lambda x, y: x * y, [[1], [2]], [[3], [4]]) == [[3], [8]]
    assert tree.map_structure(lambda v: v * 2, F(1, 2)) == F(2, 4)
    assert tree.map_structure(lambda a, b: a + b, {"x": 1, "y": 2}, OD([("y", 5), ("x", 6)])) == {"x": 7, "y": 7}
    assert tree.map_structure(lambda a: 1, [None, 2], none_is_leaf=False) == [None, 1]
    assert tree.map_structure(lambda a: 1, [None, 2]) == [1, 1]
    d = tree.map_structure(str, collections.defaultdict(list, {"b": 1, "a": 2}))
    assert isinstance(d, collections.defaultdict) and d.default_factory is list and d == {"b": "1", "a": "2"}
    t = lamina.ops.ones((2,))
    assert tree.map_structure(lambda v: v, {"t": t})["t"] is t


@pytest.mark.parametrize("a,b,match", [
    ([1, 2], (1, 2), "expected a list, received a tuple"),
    ([1, 2], [1, [2]], r"at path \(1,\): a leaf against a list"),
    ({"x": 1}, {"y": 2}, "dict keys"),
    (F(1, 2), G(1, 2), "namedtuple"),
    ([1, 2], [1], "2 items against one of 1"),
])
def test_mismatched_structures_name_the_difference(a, b, match):
    with pytest.raises(ValueError, match=match):
        tree.map_structure(lambda *v: v, a, b)
    with pytest.raises(ValueError, match="same nested structure"):
        tree.assert_same_structure(a, b)


def test_assert_same_paths_ignores_node_types():
    tree.assert_same_paths([0, 1], (2, 3))
    tree.assert_same_paths(F(0, 1), G(2, 3))
    with pytest.raises(ValueError, match=r"Paths in `a` missing in `b`:\n\{\('a',\)\}"):
        tree.assert_same_paths({"a": 1}, [1])
    tree.assert_same_structure({"x": 1}, OD([("x", 3)]))


def test_map_structure_up_to():
    assert tree.map_structure_up_to([None, None], len, [[1, 1], [2, 2]]) == [2, 2]
    assert tree.map_structure_up_to([None, [None, None]], str, [[1, 1], [2, 2]]) == ["[1, 1]", ["2", "2"]]
    assert tree.map_structure_up_to({"a": None}, lambda x, y: (x, y), {"a": [1]}, {"a": 2}) == {"a": ([1], 2)}
    with pytest.raises(ValueError, match="the shallow structure has a list where a structure has the leaf 2"):
        tree.map_structure_up_to([None, [None]], len, [[1], 2])


def test_traverse_top_down_and_bottom_up():
    s = [(1, 2), [3], {"a": 4}]
    seen = []
    assert tree.traverse(seen.append, s, top_down=True) == s
    assert seen == [s, (1, 2), 1, 2, [3], 3, {"a": 4}, 4]
    seen = []
    assert tree.traverse(seen.append, s, top_down=False) == s
    assert seen == [1, 2, (1, 2), 3, [3], 4, {"a": 4}, s]
    assert tree.traverse(lambda x: tree.MAP_TO_NONE if x == [3] else None, s) == [(1, 2), None, {"a": 4}]
    # top-down, a replaced sub-structure is not visited
    seen = []
    tree.traverse(lambda x: seen.append(x) or ("cut" if x == (1, 2) else None), s)
    assert 1 not in seen
    with pytest.raises(TypeError, match="func must be callable"):
        tree.traverse(3, s)


def test_lists_to_tuples_and_shapes():
    assert tree.lists_to_tuples([1, [2, {"a": [3]}]]) == (1, (2, {"a": (3,)}))
    shapes = {"a": (None, 3), "b": [(2,), [1, None]]}
    assert tree.map_shape_structure(lambda s: len(s), shapes) == {"a": 2, "b": [1, 2]}


def test_unsortable_dict_keys_are_a_clear_error():
    with pytest.raises(TypeError, match="keys must be sortable"):
        tree.flatten({1: "a", "b": 2})


def test_agrees_with_keras():
    keras = keras_or_none()
    if keras is None:
        pytest.skip("keras is not installed")
    cases = [1, None, [], (), {}, [1], {"b": 1, "a": [2, (3, None)]}, OD([("b", 1), ("a", 2)]),
             collections.defaultdict(int, {"b": 1, "a": 2}), F(1, {"z": 2}), collections.deque([1, [2]]),
             {2: 1, 1: 2}, ["s", {"q": (1, [2, 3])}]]
    for c in cases:
        for fn in ("flatten", "flatten_with_path", "is_nested", "lists_to_tuples"):
            assert repr(getattr(tree, fn)(c)) == repr(getattr(keras.tree, fn)(c)), (fn, c)
        mine, theirs = tree.map_structure(str, c), keras.tree.map_structure(str, c)
        assert type(mine) is type(theirs) and repr(mine) == repr(theirs), c
        flat = list(range(len(tree.flatten(c))))
        assert repr(tree.pack_sequence_as(c, flat)) == repr(keras.tree.pack_sequence_as(c, flat)), c
        for top in (True, False):
            a, b = [], []
            tree.traverse(lambda s: a.append(repr(s)), c, top_down=top)
            keras.tree.traverse(lambda s: b.append(repr(s)), c, top_down=top)
            assert a == b, c
    for a, b in [([1, 2], (1, 2)), ([1, 2], [1, [2]]), ({"x": 1}, {"y": 2}), ({"x": 1}, OD([("x", 3)])),
                 (F(1, 2), (1, 2)), ([1, 2], [1]), ([1, [3]], [1, [2]]), ([1, 2], [3, 4])]:
        for fn in ("assert_same_structure", "assert_same_paths"):
            outcomes = []
            for mod in (tree, keras.tree):
                try:
                    getattr(mod, fn)(a, b)
                    outcomes.append("ok")
                except ValueError:
                    outcomes.append("error")
            assert outcomes[0] == outcomes[1], (fn, a, b)
