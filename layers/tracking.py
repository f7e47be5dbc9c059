"""Keras's TrackedList and TrackedDict: a list or dict a layer holds as an attribute
(`self.blocks = []`), whose layers, variables and metrics added later (`self.blocks.append(
Dense(4))`) the layer tracks as if they had been assigned, and untracks when they are removed.
Layer.__setattr__ (layers/layer.py) wraps plain lists and dicts of such values (or empty ones) in
them; `owner._track(v)` / `owner._untrack(v)` do the bookkeeping."""


class TrackedList(list):
    """A list attribute of a layer (Keras's TrackedList): layers, variables and metrics appended,
    inserted or set in it later are tracked by the layer; removed ones are untracked."""

    def __init__(self, owner, values=()):
        super().__init__(values)
        self._owner = owner

    def _add(self, v):
        self._owner._track(v)   # sub-layers, variables and metrics (anything else is ignored there)
        return v

    def _drop(self, v):
        if not any(v is other for other in self):
            self._owner._untrack(v)

    def append(self, v):
        super().append(self._add(v))

    def insert(self, i, v):
        super().insert(i, self._add(v))

    def extend(self, values):
        super().extend(self._add(v) for v in list(values))

    def __iadd__(self, values):
        self.extend(values)
        return self

    def __setitem__(self, i, v):
        old = self[i]
        super().__setitem__(i, [self._add(x) for x in v] if isinstance(i, slice) else self._add(v))
        for o in (old if isinstance(i, slice) else [old]):
            self._drop(o)

    def __delitem__(self, i):
        old = self[i]
        super().__delitem__(i)
        for o in (old if isinstance(i, slice) else [old]):
            self._drop(o)

    def pop(self, i=-1):
        v = super().pop(i)
        self._drop(v)
        return v

    def remove(self, v):
        super().remove(v)
        self._drop(v)

    def clear(self):
        old = list(self)
        super().clear()
        for o in old:
            self._drop(o)

    def __reduce_ex__(self, protocol):  # copies and pickles are plain lists
        return list, (list(self),)


class TrackedDict(dict):
    """A dict attribute of a layer (Keras's TrackedDict), as TrackedList."""

    def __init__(self, owner, values=()):
        super().__init__(values)
        self._owner = owner

    def _drop(self, v):
        if not any(v is other for other in self.values()):
            self._owner._untrack(v)

    def __setitem__(self, k, v):
        old = self.get(k)
        self._owner._track(v)
        super().__setitem__(k, v)
        if old is not None and old is not v:
            self._drop(old)

    def update(self, *args, **kwargs):
        for k, v in dict(*args, **kwargs).items():
            self[k] = v

    def setdefault(self, k, default=None):
        if k not in self:
            self[k] = default
        return self[k]

    def __delitem__(self, k):
        v = self[k]
        super().__delitem__(k)
        self._drop(v)

    def pop(self, k, *default):
        had = k in self
        v = super().pop(k, *default)
        if had:
            self._drop(v)
        return v

    def __reduce_ex__(self, protocol):
        return dict, (dict(self),)
