"""Dtype policies (Keras's `keras.dtype_policies`): the dtype a layer computes in and the dtype of
its weights.

    lamina.mixed_precision.set_global_policy("mixed_bfloat16")

makes every layer created afterwards keep float32 weights and compute in bfloat16: a layer casts
its float inputs to bfloat16, reads its weights as bfloat16 copies inside `call` (the gradients
reach the float32 weights through those casts), and gives bfloat16 outputs. Losses and metrics
compute in float32 (they cast their predictions), so the optimizer sees float32 gradients and
float32 weights, as in Keras. Normalization layers and Embedding keep their weights in float32
and compute their statistics in float32, casting their outputs to bfloat16.

Policies: "float32" (the default), "mixed_bfloat16", "bfloat16" (weights in bfloat16 too), and
the integer / bool dtypes (layers that hold ids). float16 and float64 are not lamina dtypes:
"mixed_float16", "float16" and "float64" are refused with an error that names what to use.
What bfloat16 computes on: the kernels' float32 paths on bfloat16 data (backend/device.py,
WideningTable): bfloat16 storage, float32 arithmetic and accumulation, one rounding per op.
"""
from .backend import dtypes

_QUANTIZED_PREFIXES = ("int8_from_", "int4_from_", "int4/", "float8_from_", "gptq/", "awq/")


def _parse(name, who="DTypePolicy"):
    """(compute dtype, variable dtype) of a policy name, or a ValueError saying what to use."""
    if not isinstance(name, str):
        raise TypeError(f"{who}: expected a policy name such as 'float32' or 'mixed_bfloat16', received "
                        f"{type(name).__name__} {name!r}")
    if name == "mixed_bfloat16":
        return dtypes.BFLOAT16, dtypes.FLOAT32
    if name in ("mixed_float16", "float16", "half"):
        raise ValueError(f"{who}: policy {name!r} is not supported: lamina has no float16 dtype. Its 16-bit float "
                         "is bfloat16 (float32's range, so no loss scaling is needed): use 'mixed_bfloat16'"
                         + (" for mixed precision" if name == "mixed_float16" else " or 'bfloat16'"))
    if name == "string":  # lamina.Input(dtype="string"): text, turned into numbers by preprocessing layers
        return name, name
    if name.startswith("mixed_"):
        raise ValueError(f"{who}: unknown mixed precision policy {name!r}; the one lamina has is 'mixed_bfloat16'")
    try:
        dt = dtypes.standardize(name)
    except TypeError as e:
        raise ValueError(f"{who}: unrecognized dtype {name!r} for a dtype policy: {e}. Policies are 'float32', "
                         "'mixed_bfloat16', 'bfloat16', or an integer / bool dtype") from None
    return dt, dt


class DTypePolicy:
    """Keras's DTypePolicy: `name`, `compute_dtype`, `variable_dtype`. `DTypePolicy()` (no name)
    is the global policy's."""

    def __init__(self, name=None):
        if name is None:
            name = global_policy().name
        self._compute_dtype, self._variable_dtype = _parse(name)
        self._name = name
        if self._compute_dtype == dtypes.BFLOAT16:
            from .backend.device import enable_bfloat16
            enable_bfloat16()  # before any step is recorded: the devices take bfloat16 from now on

    @property
    def name(self):
        return self._name

    @property
    def compute_dtype(self):
        return self._compute_dtype

    @property
    def variable_dtype(self):
        return self._variable_dtype

    @property
    def quantization_mode(self):
        return None

    @property
    def is_mixed(self):
        """Whether weights and computation differ in dtype (the layer then autocasts)."""
        return self._compute_dtype != self._variable_dtype

    def convert_input(self, x, autocast, dtype):
        """x cast to `dtype` when autocasting and x is a float tensor of another dtype."""
        from .backend.tensor import Tensor
        if autocast and isinstance(x, Tensor) and x.dtype != dtype and x.dtype in dtypes.FLOATS:
            from .backend.math import cast
            return cast(x, dtype)
        return x

    def get_config(self):
        return {"name": self._name}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def __eq__(self, other):
        return isinstance(other, DTypePolicy) and other.name == self.name

    def __hash__(self):
        return hash(self._name)

    def __repr__(self):
        return f'<DTypePolicy "{self._name}">'


class QuantizedDTypePolicy(DTypePolicy):
    """Keras's QuantizedDTypePolicy: the policy of a layer quantized by `quantize(mode)`, named
    "<mode>_from_<source policy name>" ("int8_from_float32", "int8_from_mixed_bfloat16"). Its
    compute and variable dtypes are the source policy's (a quantized layer's float weights, its
    scales and bias, keep them); `quantization_mode` is the mode. lamina quantizes to int8 and int4
    ("int4_from_..." is Keras's legacy per-channel int4 policy; Keras 3.15 names int4 layers with
    Int4DTypePolicy, "int4/<block size>_from_...")."""

    def __init__(self, mode, source_name=None):
        if source_name is None:
            source_name = global_policy().name
        if isinstance(source_name, DTypePolicy):
            source_name = source_name.name
        if mode not in ("int8", "int4") and not (type(self) is not QuantizedDTypePolicy and _int4_block(mode)):
            raise ValueError(f"{type(self).__name__}: quantization mode {mode!r} is not supported; lamina quantizes "
                             "to int8 and int4 only (mode='int8', 'int4' or 'int4/<block size>')")
        if isinstance(source_name, str) and source_name.startswith(_QUANTIZED_PREFIXES):
            raise ValueError(f"QuantizedDTypePolicy: the source policy {source_name!r} is already quantized")
        super().__init__(source_name)
        self._source_name = source_name
        self._quantization_mode = mode
        self._name = f"{mode}_from_{source_name}"

    @property
    def source_name(self):
        return self._source_name

    @property
    def quantization_mode(self):
        return self._quantization_mode

    def get_config(self):
        return {"mode": self._quantization_mode, "source_name": self._source_name}

    def __eq__(self, other):
        return isinstance(other, QuantizedDTypePolicy) and other.name == self.name

    def __hash__(self):
        return hash(self._name)

    def __repr__(self):
        return f'<{type(self).__name__} "{self._name}">'


def _int4_block(mode):
    """The block size of an int4 mode "int4/<n>" (n > 0 or -1), else None."""
    if isinstance(mode, str) and mode.startswith("int4/"):
        try:
            n = int(mode[5:])
        except ValueError:
            return None
        return n if n == -1 or n > 0 else None
    return None


class Int4DTypePolicy(QuantizedDTypePolicy):
    """Keras 3.15's Int4DTypePolicy: the policy of an int4 layer, named
    "int4/<block size>_from_<source>" ("int4/128_from_float32"; -1: per-channel); its
    quantization_mode is "int4", `block_size` the block size."""

    def __init__(self, mode, source_name=None, block_size=None):
        if mode == "int4":
            mode = f"int4/{block_size if block_size is not None else 128}"
        if _int4_block(mode) is None:
            raise ValueError(f"Int4DTypePolicy: expected mode 'int4/<block size>' (a positive block size, or -1), "
                             f"received {mode!r}")
        super().__init__(mode, source_name)
        self._block_size = _int4_block(mode)
        self._mode_name = mode
        self._quantization_mode = "int4"

    @property
    def block_size(self):
        return self._block_size

    def get_config(self):
        return {"mode": self._mode_name, "source_name": self._source_name}


def quantized_policy(mode, source_name=None):
    """The quantized policy of a mode ("int8", "int4" (legacy per-channel), "int4/<n>")."""
    if _int4_block(mode) is not None:
        return Int4DTypePolicy(mode, source_name)
    return QuantizedDTypePolicy(mode, source_name)


def _quantized(name, who):
    """The quantized policy of a name "int8_from_<source>", "int4/<block>_from_<source>" or
    "int4_from_<source>", or a ValueError for Keras's other modes (float8, GPTQ, AWQ), which
    lamina does not have."""
    if "_from_" not in name:
        raise ValueError(f"{who}: {name!r} is not a quantized policy lamina has; lamina quantizes to int8 and int4 "
                         "only")
    mode, source = name.split("_from_", 1)
    if mode not in ("int8", "int4") and _int4_block(mode) is None:
        raise ValueError(f"{who}: {name!r} is a {mode} quantized policy; lamina quantizes to int8 and int4 only "
                         "(model.quantize('int8') or model.quantize('int4') on a built model)")
    return quantized_policy(mode, source)


Policy = DTypePolicy  # tf.keras.mixed_precision.Policy
FloatDTypePolicy = DTypePolicy  # Keras 3.0-3.3's name

_global = None


def set_dtype_policy(policy):
    """Sets the policy of the layers created from now on (a name, a DTypePolicy or its config)."""
    global _global
    _global = get(policy)


def dtype_policy():
    """The global policy (float32 unless set_dtype_policy / set_global_policy changed it)."""
    return _global if _global is not None else DTypePolicy("float32")


set_global_policy = set_dtype_policy
global_policy = dtype_policy


def get(identifier, who="DTypePolicy"):
    """A DTypePolicy from a name, a DTypePolicy, a policy-like object (`.name`) or its serialized
    form ({"class_name": "DTypePolicy", "config": {"name": ...}}); None: the global policy."""
    if identifier is None:
        return dtype_policy()
    if isinstance(identifier, DTypePolicy):
        return identifier
    name = identifier
    if isinstance(identifier, dict):
        cfg = identifier.get("config", {}) or {}
        if "mode" in cfg and "name" not in cfg:  # a serialized QuantizedDTypePolicy
            return _quantized(f"{cfg['mode']}_from_{cfg.get('source_name') or dtype_policy().name}", who)
        name = cfg.get("name", identifier.get("name"))
    elif not isinstance(identifier, str) and hasattr(identifier, "name"):
        name = identifier.name  # a numpy dtype, another library's policy
    if isinstance(name, str):
        if name.startswith(_QUANTIZED_PREFIXES):
            return _quantized(name, who)
        return DTypePolicy(name)
    raise TypeError(f"{who}: expected a dtype policy (a name such as 'float32' or 'mixed_bfloat16', a DTypePolicy "
                    f"or its config), received {type(identifier).__name__} {identifier!r}")


def serialize(policy):
    if isinstance(policy, QuantizedDTypePolicy):
        return {"module": "keras.dtype_policies", "class_name": type(policy).__name__,
                "config": policy.get_config(), "registered_name": None}
    return {"module": "keras", "class_name": "DTypePolicy", "config": {"name": policy.name}, "registered_name": None}


def deserialize(config):
    return get(config)
