"""Process-wide defaults that Keras keeps in `keras.config` (and `keras.backend`): the fuzz factor
`epsilon`, the default float type `floatx`, the default `image_data_format`, the debugging caps
`max_epochs` / `max_steps_per_epoch` and the flash-attention switch. Read where they apply, at call
time: the losses' and metrics' clipping and divisions (epsilon), the layers and ops whose
`data_format` is None (image_data_format), fit / evaluate / predict (the caps), attention layers
as they are made (flash attention)."""
import os

_state = {"epsilon": 1e-7, "image_data_format": "channels_last", "max_epochs": None, "max_steps_per_epoch": None,
          "flash_attention": None}
_FORMATS = ("channels_last", "channels_first")


def backend():
    """The name of the backend: 'lamina' (Keras answers 'jax', 'tensorflow', 'torch' or 'numpy')."""
    return "lamina"


def epsilon():
    """The fuzz factor of numeric expressions (Keras's default: 1e-7): probabilities are clipped to
    [epsilon, 1 - epsilon] before a log, denominators kept at least epsilon."""
    return _state["epsilon"]


def set_epsilon(value):
    """Sets the fuzz factor `epsilon()` returns (a float >= 0)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
        raise ValueError(f"set_epsilon: expected a finite number >= 0, received {value!r}")
    _state["epsilon"] = float(value)


def floatx():
    """The default float type, as a string: 'float32' (lamina's float; see set_floatx)."""
    return "float32"


def set_floatx(value):
    """Sets the default float type. lamina computes in float32 by default and knows no float16 or
    float64; bfloat16 is a dtype policy (`set_dtype_policy('bfloat16')` or 'mixed_bfloat16'),
    so 'float32' is the one value taken here, and any other raises a ValueError that says so."""
    if not isinstance(value, str):
        raise ValueError(f"set_floatx: expected a dtype name such as 'float32', received {value!r}")
    if value != "float32":
        hint = ("use lamina.config.set_dtype_policy('bfloat16') (bfloat16 weights and compute) or 'mixed_bfloat16' "
                "(float32 weights, bfloat16 compute)" if value == "bfloat16" else
                "lamina has no float16 or float64 type; its 16-bit float is bfloat16 (set_dtype_policy('bfloat16'))"
                if value in ("float16", "float64", "half", "double") else "the default float type is 'float32'")
        raise ValueError(f"set_floatx: lamina's default float type is 'float32', received {value!r}; {hint}")


def image_data_format():
    """The layout that image layers and ops use when their `data_format` is None: 'channels_last'
    ((batch, height, width, channels), Keras's default) or 'channels_first'."""
    return _state["image_data_format"]


def set_image_data_format(data_format):
    """Sets the layout of `image_data_format()`: 'channels_last' or 'channels_first'."""
    f = data_format.lower() if isinstance(data_format, str) else data_format
    if f not in _FORMATS:
        raise ValueError(f"set_image_data_format: expected 'channels_last' or 'channels_first', received "
                         f"{data_format!r}")
    _state["image_data_format"] = f


def enable_flash_attention():
    """Attention layers made from now on (MultiHeadAttention, GroupedQueryAttention) whose
    `flash_attention` is None use the fused attention kernel where they can (the default)."""
    _state["flash_attention"] = None


def disable_flash_attention():
    """Attention layers made from now on whose `flash_attention` is None compose the attention from
    einsum and softmax instead of the fused kernel (an explicit flash_attention=True still wins)."""
    _state["flash_attention"] = False


def is_flash_attention_enabled():
    """None while flash attention is enabled (the layers choose), False once disabled (as Keras)."""
    return _state["flash_attention"]


def _limit(value, who):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{who}: expected a whole number >= 1, or None for no limit, received {value!r}")
    return int(value)


def max_epochs():
    """The cap on the epochs of any `fit` (None: no cap), from set_max_epochs or KERAS_MAX_EPOCHS."""
    return _state["max_epochs"]


def set_max_epochs(max_epochs):
    """Caps the epochs of every `fit` (a debugging aid, as Keras's: run a script quickly without
    editing it); None removes the cap."""
    _state["max_epochs"] = _limit(max_epochs, "set_max_epochs")


def max_steps_per_epoch():
    """The cap on the steps of one epoch of `fit`, `evaluate` or `predict` (None: no cap), from
    set_max_steps_per_epoch or KERAS_MAX_STEPS_PER_EPOCH."""
    return _state["max_steps_per_epoch"]


def set_max_steps_per_epoch(max_steps_per_epoch):
    """Caps the steps of each epoch of `fit`, and of `evaluate` and `predict` (a debugging aid);
    None removes the cap."""
    _state["max_steps_per_epoch"] = _limit(max_steps_per_epoch, "set_max_steps_per_epoch")


def _from_env(var, setter):
    value = os.environ.get(var)
    if value:
        try:
            setter(int(value))
        except ValueError:
            raise ValueError(f"{var}={value!r}: expected a whole number >= 1") from None


_from_env("KERAS_MAX_EPOCHS", set_max_epochs)
_from_env("KERAS_MAX_STEPS_PER_EPOCH", set_max_steps_per_epoch)


def standardize_data_format(data_format, who):
    """A `data_format` argument: None means `image_data_format()`; otherwise 'channels_last' or
    'channels_first' in any case, else a ValueError naming `who`."""
    if data_format is None:
        return _state["image_data_format"]
    f = data_format.lower() if isinstance(data_format, str) else data_format
    if f not in _FORMATS:
        raise ValueError(f"{who}: `data_format` must be 'channels_last', 'channels_first' or None, received "
                         f"data_format={data_format!r}")
    return f
