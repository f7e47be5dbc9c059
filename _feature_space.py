"""`FeatureSpace`, Keras 3's `keras.utils.FeatureSpace`: one layer that preprocesses and encodes
a dict of structured-data columns (floats, integer and string categories, hashed values, feature
crosses) into one float32 vector per example ("concat") or a dict of encoded features ("dict").

Built on lamina's preprocessing layers, with Keras's choices: "float" is an Identity,
"float_rescaled" a Rescaling, "float_normalized" a Normalization, "float_discretized" a
Discretization, "integer_categorical" / "string_categorical" an IntegerLookup / StringLookup,
"integer_hashed" / "string_hashed" a Hashing, crosses a HashedCrossing; every "one_hot" feature
is then multi-hot encoded by a CategoryEncoding, and "concat" joins the features in sorted name
order, then the crosses in sorted name order. Each feature reaches its preprocessor as a
(batch, 1) column.

Keras adapts from a tf.data.Dataset; lamina has no tf.data, so `adapt` takes numpy-side data (a
dict of columns, a pandas DataFrame, or an iterable of dict batches) and hands each adaptable
preprocessor the batches Keras's tf.data pipeline would give it (see `adapt`)."""
import numpy as np

from . import ops
from .backend.naming import unique_name
from .backend.tensor import Tensor, convert_to_tensor
from .layers import (CategoryEncoding, Concatenate, Discretization, HashedCrossing, Hashing, Identity, IntegerLookup,
                     Normalization, Rescaling, StringLookup)
from .layers.input_layer import Input, KerasTensor
from .layers.layer import Layer

_FEATURE_TYPES = ("float", "float_rescaled", "float_normalized", "float_discretized", "integer_categorical",
                  "integer_hashed", "string_categorical", "string_hashed")
_ADAPT_BATCH = 32   # Keras batches an unbatched dataset by 32 before adapting


def _positive_int(who, name, value, allow_none=False):
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{who}: `{name}` must be a positive integer{' or None' if allow_none else ''}, received "
                         f"{name}={value!r}")
    return int(value)


def _check_dtype(who, dtype):
    """The dtype name of a feature: "string" or a numeric dtype name."""
    if dtype is str or dtype == "string":
        return "string"
    try:
        d = np.dtype(dtype)
    except TypeError:
        d = None
    if d is None or d.kind not in "iufb":
        raise ValueError(f"{who}: `dtype` must be 'string' or a numeric dtype name ('float32', 'int32', ...), "
                         f"received dtype={dtype!r}")
    return d.name


def _is_config(value, class_name):
    return isinstance(value, dict) and value.get("class_name") == class_name and isinstance(value.get("config"), dict)


class Cross:
    """A cross of features (Keras's `keras.src.layers.preprocessing.feature_space.Cross`): the
    features' values are hashed together into `crossing_dim` bins (HashedCrossing), then one-hot
    encoded ("one_hot") or left as the bin index ("int"). Named "<f1>_X_<f2>..."."""

    def __init__(self, feature_names, crossing_dim, output_mode="one_hot"):
        if output_mode not in {"int", "one_hot"}:
            raise ValueError("Invalid value for argument `output_mode` of a FeatureSpace cross. Expected one of "
                             f"{{'int', 'one_hot'}}. Received: output_mode={output_mode!r}")
        if isinstance(feature_names, str) or not isinstance(feature_names, (list, tuple)) or \
                len(feature_names) < 2 or not all(isinstance(n, str) for n in feature_names):
            raise ValueError("FeatureSpace.cross: `feature_names` must be a list or tuple of at least two feature "
                             f"names (strings), received feature_names={feature_names!r}")
        self.feature_names = tuple(feature_names)
        self.crossing_dim = _positive_int("FeatureSpace.cross", "crossing_dim", crossing_dim)
        self.output_mode = output_mode

    @property
    def name(self):
        return "_X_".join(self.feature_names)

    def get_config(self):
        return {"feature_names": self.feature_names, "crossing_dim": self.crossing_dim,
                "output_mode": self.output_mode}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<Cross {self.name} crossing_dim={self.crossing_dim} output_mode={self.output_mode}>"


class Feature:
    """One feature of a FeatureSpace (Keras's `Feature`): the dtype of its input ("float32",
    "int32", "string", ...), the preprocessing layer applied to it, and how its result is encoded:
    "float" (as it is), "one_hot" (multi-hot over the preprocessor's output range) or "int"."""

    def __init__(self, dtype, preprocessor, output_mode):
        if output_mode not in {"int", "one_hot", "float"}:
            raise ValueError("Invalid value for argument `output_mode` of a FeatureSpace feature. Expected one of "
                             f"{{'int', 'one_hot', 'float'}}. Received: output_mode={output_mode!r}")
        self.dtype = _check_dtype("FeatureSpace.feature", dtype)
        if isinstance(preprocessor, dict):
            preprocessor = _deserialize_preprocessor(preprocessor)
        if not isinstance(preprocessor, Layer):
            raise TypeError("FeatureSpace.feature: `preprocessor` must be a lamina layer (e.g. "
                            f"lamina.layers.StringLookup()), received {type(preprocessor).__name__}")
        self.preprocessor = preprocessor
        self.output_mode = output_mode

    def get_config(self):
        from .saving import serialize_keras_object
        return {"dtype": self.dtype, "preprocessor": serialize_keras_object(self.preprocessor),
                "output_mode": self.output_mode}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __repr__(self):
        return f"<Feature dtype={self.dtype} preprocessor={self.preprocessor.name} output_mode={self.output_mode}>"


def _deserialize_preprocessor(config):
    """A preprocessor layer from its serialized config. Keras's "float" features use its private
    TFDIdentity layer: that loads as lamina's Identity."""
    from .saving import deserialize_keras_object
    if config.get("class_name") == "TFDIdentity":
        inner = {k: v for k, v in (config.get("config") or {}).items() if k in ("name", "trainable", "dtype")}
        layer = Identity.from_config(inner)
        layer.built = True
        return layer
    return deserialize_keras_object(config)


class FeatureSpace(Layer):
    """One-stop preprocessing and encoding of structured data, as Keras's `keras.utils.FeatureSpace`.

    features: a dict {name: type}, the type a string ("float", "float_rescaled",
        "float_normalized", "float_discretized", "integer_categorical", "integer_hashed",
        "string_categorical", "string_hashed"; default arguments) or a `FeatureSpace.<type>(...)`
        / `FeatureSpace.feature(dtype, preprocessor, output_mode)` object.
    output_mode: "concat" (one float32 tensor (batch, total)) or "dict" (one encoded tensor per
        feature and cross).
    crosses: feature names to cross, e.g. [("f1", "f2")], or `FeatureSpace.cross(...)` objects.
    crossing_dim / hashing_dim / num_discretization_bins: the defaults of the crosses given as
        names, of the "*_hashed" and of the "float_discretized" string types (32 each).

    `adapt(data)` fits the preprocessors that learn from data (Normalization, Discretization, the
    lookups); then `fs(data)` encodes a dict of columns (or one example of scalars),
    `get_inputs()` / `get_encoded_features()` give the symbolic inputs and encoded output to build
    a `Model(inputs, outputs)` on, and `fs.save("fs.keras")` / `lamina.saving.load_model` keep
    the adapted state. `fs.preprocessors[name]` and `fs.crossers[cross_name]` are the layers."""

    # -- the feature types (Keras's static constructors) --
    @classmethod
    def cross(cls, feature_names, crossing_dim, output_mode="one_hot"):
        return Cross(feature_names, crossing_dim, output_mode=output_mode)

    @classmethod
    def feature(cls, dtype, preprocessor, output_mode):
        return Feature(dtype, preprocessor, output_mode)

    @classmethod
    def float(cls, name=None):
        name = name or unique_name("float")
        return Feature("float32", Identity(name=f"{name}_preprocessor"), "float")

    @classmethod
    def float_rescaled(cls, scale=1.0, offset=0.0, name=None):
        name = name or unique_name("float_rescaled")
        return Feature("float32", Rescaling(scale=scale, offset=offset, name=f"{name}_preprocessor"), "float")

    @classmethod
    def float_normalized(cls, name=None):
        name = name or unique_name("float_normalized")
        return Feature("float32", Normalization(axis=-1, name=f"{name}_preprocessor"), "float")

    @classmethod
    def float_discretized(cls, num_bins, bin_boundaries=None, output_mode="one_hot", name=None):
        name = name or unique_name("float_discretized")
        layer = Discretization(num_bins=num_bins, bin_boundaries=bin_boundaries, name=f"{name}_preprocessor")
        return Feature("float32", layer, output_mode)

    @classmethod
    def integer_categorical(cls, max_tokens=None, num_oov_indices=1, output_mode="one_hot", name=None):
        name = name or unique_name("integer_categorical")
        layer = IntegerLookup(name=f"{name}_preprocessor", max_tokens=max_tokens, num_oov_indices=num_oov_indices)
        return Feature("int32", layer, output_mode)

    @classmethod
    def string_categorical(cls, max_tokens=None, num_oov_indices=1, output_mode="one_hot", name=None):
        name = name or unique_name("string_categorical")
        layer = StringLookup(name=f"{name}_preprocessor", max_tokens=max_tokens, num_oov_indices=num_oov_indices)
        return Feature("string", layer, output_mode)

    @classmethod
    def string_hashed(cls, num_bins, output_mode="one_hot", name=None):
        name = name or unique_name("string_hashed")
        return Feature("string", Hashing(name=f"{name}_preprocessor", num_bins=num_bins), output_mode)

    @classmethod
    def integer_hashed(cls, num_bins, output_mode="one_hot", name=None):
        name = name or unique_name("integer_hashed")
        return Feature("int32", Hashing(name=f"{name}_preprocessor", num_bins=num_bins), output_mode)

    def __init__(self, features, output_mode="concat", crosses=None, crossing_dim=32, hashing_dim=32,
                 num_discretization_bins=32, name=None):
        super().__init__(name=name)
        if not features:
            raise ValueError("FeatureSpace: the `features` argument cannot be None or empty; pass a dict "
                             "{feature name: feature type}, e.g. {'age': 'float_normalized'}")
        if not isinstance(features, dict) or not all(isinstance(k, str) for k in features):
            raise TypeError("FeatureSpace: `features` must be a dict {feature name (str): feature type}, received "
                            f"{type(features).__name__}")
        self.crossing_dim = _positive_int("FeatureSpace", "crossing_dim", crossing_dim, allow_none=True)
        self.hashing_dim = _positive_int("FeatureSpace", "hashing_dim", hashing_dim)
        self.num_discretization_bins = _positive_int("FeatureSpace", "num_discretization_bins",
                                                     num_discretization_bins)
        if output_mode not in {"dict", "concat"}:
            raise ValueError("FeatureSpace: invalid value for argument `output_mode`. Expected one of "
                             f"{{'dict', 'concat'}}. Received: output_mode={output_mode!r}")
        self.output_mode = output_mode
        self.features = {n: self._standardize_feature(n, v) for n, v in features.items()}
        self.crosses = [self._standardize_cross(c) for c in (crosses or [])]
        self.crosses_by_name = {}
        for c in self.crosses:
            if c.name in self.crosses_by_name or c.name in self.features:
                raise ValueError(f"FeatureSpace: the cross {c.name!r} is given twice, or has the name of a feature; "
                                 "each cross (and feature) needs its own name")
            self.crosses_by_name[c.name] = c
        self.preprocessors = {n: f.preprocessor for n, f in self.features.items()}
        self.crossers = {c.name: HashedCrossing(c.crossing_dim, name=c.name) for c in self.crosses}
        for layer in list(self.preprocessors.values()) + list(self.crossers.values()):
            if layer not in self._layers:   # dicts of layers are not tracked by Layer.__setattr__
                self._layers.append(layer)
        self.inputs = None
        self.encoded_features = None
        self.one_hot_encoders = {}
        self.concat = None
        self._is_adapted = False
        self._sublayers_built = False

    # -- construction helpers --
    def _standardize_feature(self, name, feature):
        if isinstance(feature, Feature):
            return feature
        if _is_config(feature, "Feature"):
            return Feature.from_config(feature["config"])
        if isinstance(feature, str):
            if feature == "float":
                return self.float(name=name)
            if feature == "float_normalized":
                return self.float_normalized(name=name)
            if feature == "float_rescaled":
                return self.float_rescaled(name=name)
            if feature == "float_discretized":
                return self.float_discretized(name=name, num_bins=self.num_discretization_bins)
            if feature == "integer_categorical":
                return self.integer_categorical(name=name)
            if feature == "string_categorical":
                return self.string_categorical(name=name)
            if feature == "integer_hashed":
                return self.integer_hashed(self.hashing_dim, name=name)
            if feature == "string_hashed":
                return self.string_hashed(self.hashing_dim, name=name)
        raise ValueError(f"FeatureSpace: invalid feature type for feature {name!r}: {feature!r}. Expected one of "
                         f"{list(_FEATURE_TYPES)} or a FeatureSpace.<type>(...) / FeatureSpace.feature(...) object")

    def _standardize_cross(self, cross):
        if _is_config(cross, "Cross"):
            cross = Cross.from_config(cross["config"])
        if not isinstance(cross, Cross):
            if not self.crossing_dim:
                raise ValueError("When specifying `crosses`, the argument `crossing_dim` (dimensionality of the "
                                 "crossing space) should be specified as well; received crossing_dim=None")
            cross = Cross(cross, crossing_dim=self.crossing_dim)
        unknown = [n for n in cross.feature_names if n not in self.features]
        if unknown:
            raise ValueError("All features referenced in the `crosses` argument should be present in the `features` "
                             f"dict. Received unknown features {unknown} in the cross {list(cross.feature_names)}; "
                             f"the features are {list(self.features)}")
        return cross

    # -- adapt --
    def _list_adaptable_preprocessors(self):
        """The features whose preprocessor learns from data: it has `adapt`, and was not given its
        state (Normalization's mean/variance, a lookup's or TextVectorization's vocabulary,
        Discretization's bin_boundaries)."""
        names = []
        for name, layer in self.preprocessors.items():
            if isinstance(layer, Normalization) and layer.input_mean is not None:
                continue
            if getattr(layer, "_has_input_vocabulary", False):
                continue
            if isinstance(layer, Discretization) and layer.num_bins is None:
                continue
            if hasattr(layer, "adapt"):
                names.append(name)
        return names

    def adapt(self, dataset):
        """Adapts the preprocessors that learn from data (see `_list_adaptable_preprocessors`).

        `dataset`: a dict {feature name: array or list} (one column per feature, one row per
        example), a pandas DataFrame, or an iterable of such dicts, one per batch (a generator, a
        list of dicts, a `lamina.utils.PyDataset` yielding dicts). Each preprocessor sees what
        Keras's tf.data pipeline gives it: the examples of a dict of columns (as
        `Dataset.from_tensor_slices`) in batches of 32, as (batch, 1) columns; an iterable's
        batches as they come, a 1-D column as (batch, 1)."""
        names = self._list_adaptable_preprocessors()
        columns = self._adapt_columns(dataset, names)
        for name in names:
            layer = self.preprocessors[name]
            layer.adapt(iter(columns[name]))
        self._is_adapted = True
        self._build_graph(rebuild=True)

    def _adapt_columns(self, dataset, names):
        """{feature name: list of the batches its preprocessor adapts on}."""
        who = f"FeatureSpace '{self.name}'.adapt"
        if _is_pandas_frame(dataset):
            dataset = {str(c): dataset[c].to_numpy() for c in dataset.columns}
        if isinstance(dataset, dict):
            data = {k: self._column(k, v, who) for k, v in dataset.items()}
            sizes = {k: (v.shape[0] if v.ndim else None) for k, v in data.items()}
            if any(s is None for s in sizes.values()):
                raise ValueError(f"{who}: a dict of columns needs one array or list per feature, with one entry per "
                                 f"example; received scalars for {[k for k, s in sizes.items() if s is None]}. For a "
                                 "single example, wrap the values in lists")
            if len(set(sizes.values())) > 1:
                raise ValueError(f"{who}: every column must hold the same number of examples, received {sizes}")
            self._check_present(data, names, who)
            out = {}
            for name in names:
                col = data[name]
                if col.shape[0] == 0:
                    raise ValueError(f"{who}: the data holds no examples (column {name!r} is empty)")
                if col.ndim == 1:   # scalar examples: batched by 32, then given a last axis of 1
                    out[name] = [col[i:i + _ADAPT_BATCH].reshape(-1, 1) for i in range(0, len(col), _ADAPT_BATCH)]
                elif col.ndim == 2:   # examples of rank 1: each given a last axis of 1
                    out[name] = [row.reshape(-1, 1) for row in col]
                else:
                    out[name] = list(col)
            return out
        if isinstance(dataset, (str, bytes, np.ndarray, Tensor)) or not hasattr(dataset, "__iter__"):
            raise TypeError(f"{who}: expected a dict of arrays or lists (one column per feature), a pandas "
                            "DataFrame, or an iterable of such dicts, one per batch (a generator, a list of dicts, a "
                            f"lamina.utils.PyDataset); received {type(dataset).__name__}")
        batches = {name: [] for name in names}
        for i, batch in enumerate(dataset):
            if _is_pandas_frame(batch):
                batch = {str(c): batch[c].to_numpy() for c in batch.columns}
            if not isinstance(batch, dict):
                hint = (" (an (x, y) batch? adapt on the features only, e.g. (x for x, y in data))"
                        if isinstance(batch, tuple) else "")
                raise TypeError(f"{who}: every batch of an iterable must be a dict {{feature name: array}}; batch "
                                f"{i} is a {type(batch).__name__}{hint}")
            self._check_present(batch, names, who, f" (batch {i})")
            for name in names:
                batches[name].append(self._column(name, batch[name], who))
        if names and not batches[names[0]]:
            raise ValueError(f"{who}: the iterable holds no batches; pass at least one dict of columns")
        out = {}
        for name in names:
            cols = batches[name]
            ranks = {c.ndim for c in cols}
            if len(ranks) > 1:
                raise ValueError(f"{who}: the batches of feature {name!r} have different ranks {sorted(ranks)}; "
                                 "give every batch the same layout")
            rank = cols[0].ndim
            if rank == 0:   # single examples: batched by 32, as Keras does
                cols = [np.stack(cols[i:i + _ADAPT_BATCH]) for i in range(0, len(cols), _ADAPT_BATCH)]
            if rank in (0, 1):
                cols = [c.reshape(-1, 1) for c in cols]
            out[name] = cols
        return out

    @staticmethod
    def _check_present(data, names, who, where=""):
        missing = [n for n in names if n not in data]
        if missing:
            raise ValueError(f"{who}: the data{where} lacks the feature(s) {missing}, which need adapting; it has "
                             f"{sorted(map(str, data))}")

    def _column(self, name, value, who):
        """One feature's values as a numpy array of the feature's kind (str objects for strings)."""
        if isinstance(value, KerasTensor):
            raise TypeError(f"{who}: feature {name!r} is a symbolic tensor; a FeatureSpace is called on data. To "
                            "use it in a model, build the model on fs.get_inputs() and fs.get_encoded_features()")
        a = value.numpy() if isinstance(value, Tensor) else np.asarray(value)
        feature = self.features.get(name)
        if feature is None:
            return a
        kind = a.dtype.kind
        if feature.dtype == "string":
            if kind in "US":
                return a.astype(object) if kind == "S" else a
            if kind == "O" and all(isinstance(v, (str, bytes)) for v in a.reshape(-1)):
                return a
            raise TypeError(f"{who}: feature {name!r} takes strings (dtype 'string'), received values of dtype "
                            f"{a.dtype}; convert them, e.g. np.asarray(values).astype(str)")
        if kind not in "iufb":
            raise TypeError(f"{who}: feature {name!r} takes numbers (dtype {feature.dtype!r}), received values of "
                            f"dtype {a.dtype}")
        target = np.dtype(feature.dtype)
        if target.kind in "iu" and kind == "f":
            if not np.all(np.isfinite(a)) or not np.all(a == np.round(a)):
                raise TypeError(f"{who}: feature {name!r} takes integers (dtype {feature.dtype!r}), received "
                                f"non-integer floats of dtype {a.dtype}; round or cast them first")
            return a.astype(np.int64)
        if target.kind in "iu":
            return a.astype(np.int64)    # the lookups and hashes see int64 (what an int32 Input feeds the same)
        return a.astype(target)

    # -- building --
    def _check_if_adapted(self):
        if not self._is_adapted:
            if not self._list_adaptable_preprocessors():
                self._is_adapted = True
            else:
                raise ValueError("You need to call `.adapt(dataset)` on the FeatureSpace before you can start using "
                                 f"it: FeatureSpace '{self.name}' has preprocessors that learn from data (features "
                                 f"{self._list_adaptable_preprocessors()})")

    def _check_if_built(self):
        if not self._sublayers_built:
            self._check_if_adapted()
            self._build_graph()

    def _cardinality(self, name, layer):
        """The one-hot depth of a feature or cross with output_mode="one_hot"."""
        if isinstance(layer, (IntegerLookup, StringLookup)):
            return layer.vocabulary_size()
        if isinstance(layer, CategoryEncoding):
            return layer.num_tokens
        if isinstance(layer, Discretization):   # Keras's num_bins; with bin_boundaries, their bins
            return layer.num_bins if layer.num_bins is not None else len(layer.bin_boundaries) + 1
        if isinstance(layer, (Hashing, HashedCrossing)):
            return layer.num_bins
        raise ValueError(f"Feature '{name}' has `output_mode='one_hot'`. However it isn't a standard feature and the "
                         f"dimensionality of its output space is not known ({type(layer).__name__}), thus it cannot "
                         "be one-hot encoded. Try using `output_mode='int'`.")

    def _build_graph(self, rebuild=False):
        """The symbolic inputs, the one-hot encoders and the encoded output. After a new adapt()
        whose one-hot sizes differ from the graph's (a vocabulary of another size), the graph is
        made anew: the old one no longer fits the preprocessors."""
        names = sorted(self.features) + sorted(self.crosses_by_name)
        specs = {**self.features, **self.crosses_by_name}
        depths = {}
        for n in names:
            if specs[n].output_mode == "one_hot":
                depths[n] = self._cardinality(n, self.preprocessors.get(n) or self.crossers.get(n))
        if self._sublayers_built:
            same = depths == {n: e.num_tokens for n, e in self.one_hot_encoders.items()}
            if same or not rebuild:
                return
            old = set(map(id, list(self.one_hot_encoders.values()) + [self.concat]))
            self._layers[:] = [l for l in self._layers if id(l) not in old]
        self.one_hot_encoders = {n: CategoryEncoding(num_tokens=d, output_mode="multi_hot") for n, d in depths.items()}
        self.concat = Concatenate(axis=-1) if self.output_mode == "concat" and len(names) > 1 else None
        self.inputs = {n: Input(shape=(1,), dtype=f.dtype, name=n) for n, f in self.features.items()}
        self._layers.extend(self.one_hot_encoders.values())   # (`concat` is tracked by Layer.__setattr__)
        self._sublayers_built = True
        self.encoded_features = self._encode(self.inputs)
        self.built = True

    def get_inputs(self):
        """{feature name: lamina.Input(shape=(1,), dtype=the feature's dtype)}."""
        self._check_if_built()
        return dict(self.inputs)

    def get_encoded_features(self):
        """The encoded output of `get_inputs()`'s inputs: a (None, total) float32 symbolic tensor
        ("concat") or a dict of them ("dict"); `Model(fs.get_inputs(), head(fs.get_encoded_features()))`."""
        self._check_if_adapted()
        self._check_if_built()
        return self.encoded_features

    # -- encoding --
    def _encode(self, columns):
        preprocessed = {n: self.preprocessors[n](columns[n]) for n in self.features}
        crossed = {c.name: self.crossers[c.name]([preprocessed[f] for f in c.feature_names]) for c in self.crosses}
        names = sorted(preprocessed) + sorted(crossed)
        values = {**preprocessed, **crossed}
        out = {}
        for n in names:
            x = values[n]
            encoder = self.one_hot_encoders.get(n)
            if encoder is not None:
                dtype = str(x.dtype)
                if not dtype.startswith(("int", "uint")):
                    raise ValueError(f"Feature '{n}' has `output_mode='one_hot'`. Thus its preprocessor should "
                                     f"return an integer dtype. Instead it returns a {dtype} dtype.")
                x = encoder(x)
            out[n] = x
        if self.output_mode == "dict":
            return out
        for n in names:
            dtype = str(out[n].dtype)
            if not dtype.startswith(("float", "bfloat")):
                raise ValueError(f"Cannot concatenate features because feature '{n}' has not been encoded (it has "
                                 f"dtype {dtype}). Consider using `output_mode='dict'`, or output_mode='one_hot' / "
                                 "'float' for that feature.")
        parts = [out[n] for n in names]
        return self.concat(parts) if self.concat is not None else parts[0]

    def __call__(self, data):
        """Encodes `data`: a dict {feature name: values}, batched (arrays or lists, one row per
        example) or one example of scalars (then the output has no batch axis, as Keras's)."""
        self._check_if_built()
        who = f"FeatureSpace '{self.name}'"
        if not isinstance(data, dict):
            raise ValueError(f"A FeatureSpace can only be called with a dict {{feature name: values}}. Received: "
                             f"data of type {type(data).__name__}")
        missing = [n for n in self.features if n not in data]
        unknown = [k for k in data if k not in self.features]
        if missing or unknown:
            parts = []
            if missing:
                parts.append(f"lacks the feature(s) {missing}")
            if unknown:
                parts.append(f"has key(s) {unknown} that are not features (a label column? drop it before the call)")
            raise ValueError(f"{who}: the data {' and '.join(parts)}; the features are {list(self.features)}")
        columns, rebatched = {}, False
        for n in self.features:
            a = self._column(n, data[n], who)
            if a.ndim == 0:
                a, rebatched = a.reshape(1, 1), True
            elif a.ndim == 1:
                a = a.reshape(-1, 1)
            columns[n] = a
        sizes = {n: a.shape[0] for n, a in columns.items()}
        if len(set(sizes.values())) > 1:
            raise ValueError(f"{who}: every feature must hold the same number of examples, received {sizes}")
        columns = {n: (a if self.features[n].dtype == "string" else convert_to_tensor(a, dtype=str(a.dtype)))
                   for n, a in columns.items()}
        out = self._encode(columns)
        if rebatched:
            if self.output_mode == "concat":
                return ops.squeeze(out, axis=0)
            return {n: (ops.squeeze(x, axis=0) if len(x.shape) == 2 and x.shape[0] == 1 else x)
                    for n, x in out.items()}
        return out

    # -- config and saving --
    def get_config(self):
        from .saving import serialize_keras_object
        return {"features": serialize_keras_object(self.features), "output_mode": self.output_mode,
                "crosses": serialize_keras_object(self.crosses), "crossing_dim": self.crossing_dim,
                "hashing_dim": self.hashing_dim, "num_discretization_bins": self.num_discretization_bins,
                "name": self.name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def get_build_config(self):
        """Each preprocessor's build config (None before adapt: a loaded copy must not count as adapted)."""
        if not self._is_adapted:
            return None
        return {n: f.preprocessor.get_build_config() for n, f in self.features.items()}

    def build_from_config(self, config):
        """Builds the preprocessors as they were (so that a Normalization has its weights to load)
        and marks the FeatureSpace adapted: a loaded one carries its adapted state."""
        for n, c in (config or {}).items():
            if n in self.features:
                layer = self.features[n].preprocessor
                if not layer.built and c:
                    layer.build_from_config(c)
        self._is_adapted = True

    def save(self, filepath):
        """Writes the FeatureSpace, adapted state included, to a '.keras' file; reload it with
        `lamina.saving.load_model(filepath)`."""
        import os
        from .models.io import save_model
        if not os.fspath(filepath).endswith(".keras"):
            raise ValueError(f"FeatureSpace.save: the file name must end in '.keras', received {filepath!r}")
        self._check_if_built()
        save_model(self, filepath)

    def save_own_variables(self, store):
        return

    def load_own_variables(self, store):
        return


def _is_pandas_frame(x):
    return type(x).__module__.split(".")[0] == "pandas" and hasattr(x, "columns") and hasattr(x, "to_numpy")
