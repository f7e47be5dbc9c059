"""Nested structures, as `keras.tree`: lists, tuples, namedtuples, dicts (also OrderedDict and
defaultdict) and deques are nodes; everything else (tensors, arrays, numbers, strings, None) is a
leaf. A dict's children are taken in sorted key order, an OrderedDict's in its own order, and a
rebuilt dict keeps the key order of the structure it was rebuilt from (Keras's rules, which come
from optree's)."""
import collections

__all__ = ["MAP_TO_NONE", "is_nested", "traverse", "flatten", "flatten_with_path", "map_structure",
           "map_structure_up_to", "assert_same_structure", "assert_same_paths", "pack_sequence_as",
           "lists_to_tuples", "map_shape_structure"]


class MAP_TO_NONE:
    """Returned by `traverse`'s function to put None in place of a sub-structure."""


def _is_namedtuple(x):
    return isinstance(x, tuple) and hasattr(type(x), "_fields")


def is_nested(structure):
    """True for a list, tuple, namedtuple, dict or deque (even empty), False for a leaf."""
    return isinstance(structure, (list, tuple, dict, collections.deque))


def _keys(d):
    if isinstance(d, collections.OrderedDict):
        return list(d)
    try:
        return sorted(d)
    except TypeError:
        raise TypeError(f"keras.tree: a dict's keys must be sortable (they give its order); received keys "
                        f"{list(d)!r}") from None


def _children(s):
    """(keys or indices, children) of a node."""
    if isinstance(s, dict):
        keys = _keys(s)
        return keys, [s[k] for k in keys]
    return list(range(len(s))), list(s)


def _children_like(node, s):
    """The children of `s` (a node that matches `node`) in `node`'s order: a dict's by key."""
    if isinstance(node, dict):
        return [s[k] for k in _keys(node)]
    return list(s)


def _rebuild(s, children):
    """A node like `s` with `children` (in `_children`'s order)."""
    if isinstance(s, dict):
        by_key = dict(zip(_keys(s), children))
        if isinstance(s, collections.defaultdict):
            return collections.defaultdict(s.default_factory, ((k, by_key[k]) for k in s))
        return type(s)((k, by_key[k]) for k in s)
    if _is_namedtuple(s):
        return type(s)(*children)
    if isinstance(s, collections.deque):
        return collections.deque(children, maxlen=s.maxlen)
    return type(s)(children)


def _describe(s):
    return "a namedtuple " + type(s).__name__ if _is_namedtuple(s) else f"a {type(s).__name__}"


def _check_same_node(a, b, path):
    """ValueError unless `b` is a node that matches node `a` (type, length, keys)."""
    where = f" at path {path}" if path else ""
    if isinstance(a, dict):
        if not isinstance(b, dict):
            raise ValueError(f"Structures don't have the same nested structure{where}: expected a dict, received "
                             f"{_describe(b)} {b!r}")
        if set(a) != set(b):
            raise ValueError(f"Structures don't have the same nested structure{where}: dict keys "
                             f"{sorted(map(repr, a))} and {sorted(map(repr, b))} differ")
        return
    same_type = type(a) is type(b) if _is_namedtuple(a) or _is_namedtuple(b) else \
        (isinstance(b, type(a)) or isinstance(a, type(b))) and not isinstance(b, dict)
    if not same_type:
        raise ValueError(f"Structures don't have the same nested structure{where}: expected {_describe(a)}, "
                         f"received {_describe(b)} {b!r}")
    if len(a) != len(b):
        raise ValueError(f"Structures don't have the same nested structure{where}: {_describe(a)} of {len(a)} "
                         f"items against one of {len(b)}")


def flatten(structure):
    """The leaves of `structure`, depth first (dict values in key order); a leaf gives [leaf]."""
    out = []

    def walk(s):
        if is_nested(s):
            for c in _children(s)[1]:
                walk(c)
        else:
            out.append(s)
    walk(structure)
    return out


def flatten_with_path(structure):
    """[(path, leaf)], a path being the tuple of indices and keys that leads to the leaf."""
    out = []

    def walk(s, path):
        if is_nested(s):
            for k, c in zip(*_children(s)):
                walk(c, path + (k,))
        else:
            out.append((path, s))
    walk(structure, ())
    return out


def pack_sequence_as(structure, flat_sequence):
    """The leaves of `flat_sequence`, in order, put in the places of `structure`'s leaves."""
    if isinstance(flat_sequence, (str, bytes)) or not hasattr(flat_sequence, "__iter__"):
        raise TypeError(f"pack_sequence_as: flat_sequence must be a list or other iterable of leaves, received "
                        f"{type(flat_sequence).__name__}")
    flat = list(flat_sequence)
    n = len(flatten(structure))
    if len(flat) != n:
        raise ValueError(f"pack_sequence_as: the structure has {n} leaves but flat_sequence has {len(flat)} items")
    it = iter(flat)

    def build(s):
        return _rebuild(s, [build(c) for c in _children(s)[1]]) if is_nested(s) else next(it)
    return build(structure)


def _check_func(func, where):
    if not callable(func):
        raise TypeError(f"{where}: func must be callable, received {type(func).__name__} {func!r}")


def map_structure(func, *structures, none_is_leaf=True):
    """`func` applied to the leaves of `structures` (all of the same layout), in a structure of
    that layout. With `none_is_leaf=False`, None stays None and `func` is not called on it."""
    _check_func(func, "map_structure")
    if not structures:
        raise ValueError("map_structure: must provide at least one structure")

    def walk(ss, path):
        first = ss[0]
        if first is None and not none_is_leaf:
            for s in ss[1:]:
                if s is not None:
                    raise ValueError(f"Structures don't have the same nested structure at path {path}: None "
                                     f"against {s!r}")
            return None
        if not is_nested(first):
            for s in ss[1:]:
                if is_nested(s):
                    raise ValueError(f"Structures don't have the same nested structure at path {path}: a leaf "
                                     f"against {_describe(s)} {s!r}")
            return func(*ss)
        for s in ss[1:]:
            _check_same_node(first, s, path)
        keys, _ = _children(first)
        kids = [_children_like(first, s) for s in ss]
        return _rebuild(first, [walk([k[i] for k in kids], path + (key,)) for i, key in enumerate(keys)])
    return walk(list(structures), ())


def map_structure_up_to(shallow_structure, func, *structures):
    """`func` applied to the sub-structures of `structures` found at the leaves of
    `shallow_structure` (which the structures must contain); the result has the shallow layout."""
    _check_func(func, "map_structure_up_to")
    if not structures:
        raise ValueError("map_structure_up_to: must provide at least one structure")

    def walk(shallow, ss, path):
        if not is_nested(shallow):
            return func(*ss)
        for s in ss:
            if not is_nested(s):
                raise ValueError(f"Structures don't have the same nested structure at path {path}: the shallow "
                                 f"structure has {_describe(shallow)} where a structure has the leaf {s!r}")
            _check_same_node(shallow, s, path)
        keys, shallow_kids = _children(shallow)
        kids = [_children_like(shallow, s) for s in ss]
        return _rebuild(shallow, [walk(sk, [k[i] for k in kids], path + (keys[i],))
                                  for i, sk in enumerate(shallow_kids)])
    return walk(shallow_structure, list(structures), ())


def assert_same_structure(a, b, check_types=None):
    """ValueError unless `a` and `b` nest the same way: the same node types (dict, OrderedDict and
    defaultdict alike; list, tuple, deque and each namedtuple type distinct), lengths and keys.
    `check_types` is accepted for Keras's signature and, as in Keras 3, has no effect."""
    map_structure(lambda *_: None, a, b)


def assert_same_paths(a, b):
    """ValueError unless `a` and `b` have the same leaf paths (node types are not compared)."""
    pa = {p for p, _ in flatten_with_path(a)}
    pb = {p for p, _ in flatten_with_path(b)}
    if pa != pb:
        msg = "`a` and `b` don't have the same paths."
        if pa - pb:
            msg += f"\nPaths in `a` missing in `b`:\n{pa - pb}"
        if pb - pa:
            msg += f"\nPaths in `b` missing in `a`:\n{pb - pa}"
        raise ValueError(msg)


def traverse(func, structure, top_down=True):
    """Depth-first walk calling `func` on every sub-structure and leaf. Top-down, a non-None
    result replaces that sub-structure (and its children are not visited); bottom-up, it replaces
    the already-traversed sub-structure. `MAP_TO_NONE` stands for None as a replacement."""
    _check_func(func, "traverse")

    def children(s):
        return _rebuild(s, [walk(c) for c in _children(s)[1]]) if is_nested(s) else s

    def walk(s):
        if top_down:
            ret = func(s)
            if ret is None:
                return children(s)
        else:
            s = children(s)
            ret = func(s)
            if ret is None:
                return s
        return None if ret is MAP_TO_NONE else ret
    return walk(structure)


def lists_to_tuples(structure):
    """`structure` with every list made a tuple."""
    return traverse(lambda s: tuple(s) if isinstance(s, list) else None, structure, top_down=False)


def map_shape_structure(func, structure):
    """`func` applied to every shape (a list or tuple of ints and Nones) in `structure`."""
    def is_shape(x):
        return isinstance(x, (list, tuple)) and all(isinstance(e, int) or e is None for e in x)

    def walk(s):
        if is_shape(s) or not is_nested(s):
            return func(s)
        return _rebuild(s, [walk(c) for c in _children(s)[1]])
    return walk(structure)
