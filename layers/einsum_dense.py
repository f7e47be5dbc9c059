"""EinsumDense: a dense layer whose product is an einsum equation, as Keras 3's
(keras/src/layers/core/einsum_dense.py).

`EinsumDense("abc,cde->abde", output_shape=(None, 4, 8), bias_axes="de")` maps (B, T, C) inputs
through a (C, 4, 8) kernel to (B, T, 4, 8). The equation has one of Keras's three forms:
`X,Y->Z`, `...X,Y->...Z` or `X...,Y->Z...` (X the input's labels, Y the kernel's, Z the
output's). The kernel's shape takes each kernel label's size from the output (`output_shape`,
which leaves out the batch dimension and the ellipsis dimensions) or else from the input; the
bias has the sizes of `bias_axes` and 1 for the other output labels after the first bias label,
so it broadcasts against the output. A VarianceScaling kernel initializer (glorot_uniform, ...)
counts its fans over the kernel's input and output labels, as Keras's does.

LoRA (`lora_rank=r`, or `enable_lora(r)` on a built layer) freezes the kernel and trains
(lora_alpha / r) * lora_kernel_a @ lora_kernel_b, with a of shape kernel.shape[:-1] + (r,) and
b of shape (r, kernel.shape[-1]); saving writes the merged kernel, as Keras does.

`quantize("int8")` (or Model.quantize) makes it an int8 inference layer, as Keras's: an int8
kernel of the same shape, kernel_scale shaped like the output with the reduced axes 1, inputs
quantized over their reduced axes at each call (layers/quantization.py).
"""
import re

import numpy as np

from .. import activations as _activations
from .. import constraints as _constraints
from .. import initializers as _initializers
from .. import ops
from .. import regularizers as _regularizers
from ..backend import validation
from ..backend.validation import positive_int as _positive_int
from .layer import InputSpec, Layer


def _quantization_config(layer):
    from .quantization import quantization_config
    return quantization_config(layer) if layer.quantization_mode is not None else None

# Keras's three equation forms, with "..." written as "0"
_FORMS = (("([a-zA-Z]+),([a-zA-Z]+)->([a-zA-Z]+)", False),
          ("0([a-zA-Z]+),([a-zA-Z]+)->0([a-zA-Z]+)", True),
          ("([a-zA-Z]{2,})0,([a-zA-Z]+)->([a-zA-Z]+)0", False))


def _split_equation(equation, who):
    """(input_spec, weight_spec, output_spec, left_elided, has_ellipsis) of a Keras EinsumDense
    equation; ValueError naming the layer for anything else."""
    if not isinstance(equation, str):
        raise TypeError(f"{who}: `equation` must be a string such as 'ab,bc->ac', received "
                        f"{type(equation).__name__} {equation!r}")
    eq = re.sub(r"\.\.\.", "0", equation)
    for pattern, left in _FORMS:
        match = re.fullmatch(pattern, eq)
        if match:
            return match.group(1), match.group(2), match.group(3), left, "0" in eq
    raise ValueError(f"{who}: invalid einsum equation {equation!r}. Equations must be in the form "
                     "[X],[Y]->[Z], ...[X],[Y]->...[Z], or [X]...,[Y]->[Z]... (X: the input's labels, Y: the "
                     "kernel's, Z: the output's), e.g. 'ab,bc->ac' or '...b,bc->...c'")


def _output_shape_arg(output_shape, who):
    if isinstance(output_shape, (int, np.integer)) and not isinstance(output_shape, bool):
        output_shape = (output_shape,)
    if isinstance(output_shape, (str, bytes)) or not hasattr(output_shape, "__iter__"):
        raise TypeError(f"{who}: `output_shape` must be an integer or a tuple of integers (None for dimensions "
                        f"taken from the input), received {output_shape!r}")
    out = tuple(output_shape)
    for d in out:
        if d is not None and (isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0):
            raise ValueError(f"{who}: `output_shape` entries must be non-negative integers or None, received "
                             f"output_shape={out!r}")
    return tuple(None if d is None else int(d) for d in out)


def analyze_equation(equation, bias_axes, input_shape, output_shape, who="EinsumDense"):
    """(kernel_shape, bias_shape or None, full_output_shape, kernel_input_axes, kernel_output_axes)
    for an input of `input_shape`, derived as Keras's `_analyze_einsum_string` derives them."""
    input_spec, weight_spec, output_spec, left_elided, has_ellipsis = _split_equation(equation, who)
    input_shape = tuple(input_shape)
    elided = len(input_shape) - len(input_spec)
    if elided < 0 or (elided and not has_ellipsis):
        want = f"at least {len(input_spec)}" if has_ellipsis else f"exactly {len(input_spec)}"
        raise ValueError(f"{who}: equation {equation!r} gives the input {len(input_spec)} label(s) "
                         f"({input_spec!r}{', plus the ellipsis' if has_ellipsis else ''}), so it expects inputs "
                         f"of rank {want}; received an input of shape {input_shape}")
    out = [input_shape[0]] + list(output_shape)
    if elided > 0 and left_elided:
        for i in range(1, elided):
            out.insert(1, input_shape[i])
    elif elided > 0:
        out.extend(input_shape[len(input_shape) - elided:])
    if len(out) != len(output_spec) + elided:
        expected = len(output_spec) + elided - (len(out) - len(output_shape))
        raise ValueError(f"{who}: output_shape={tuple(output_shape)} has {len(output_shape)} entries; for equation "
                         f"{equation!r} and an input of shape {input_shape} it needs {expected} (the output's "
                         "dimensions except the batch dimension and those the ellipsis stands for)")
    if left_elided:
        input_map = {c: i + elided - len(input_shape) for i, c in enumerate(input_spec)}
        output_map = {c: i + elided for i, c in enumerate(output_spec)}
    else:
        input_map = {c: i for i, c in enumerate(input_spec)}
        output_map = {c: i for i, c in enumerate(output_spec)}
    for c in input_spec:
        if c in output_map:
            d_in, d_out = input_shape[input_map[c]], out[output_map[c]]
            if d_out is not None and d_in is not None and d_out != d_in:
                raise ValueError(f"{who}: input shape and output shape do not match at shared dimension {c!r} of "
                                 f"equation {equation!r}: the input (shape {input_shape}) has {d_in}, output_shape "
                                 f"asks for {d_out}")
            if d_out is None:
                out[output_map[c]] = d_in
    for c in output_spec:
        if c not in input_spec and c not in weight_spec:
            raise ValueError(f"{who}: dimension {c!r} is in the output {output_spec!r} of equation {equation!r} but "
                             f"in neither the input spec {input_spec!r} nor the weight spec {weight_spec!r}")
    kernel_shape, in_axes, out_axes = [], [], []
    for i, c in enumerate(weight_spec):
        if c in output_map:
            kernel_shape.append(out[output_map[c]])
            out_axes.append(i)
        elif c in input_map:
            kernel_shape.append(input_shape[input_map[c]])
            in_axes.append(i)
        else:
            raise ValueError(f"{who}: weight dimension {c!r} of equation {equation!r} is in neither the input spec "
                             f"{input_spec!r} nor the output spec {output_spec!r}; the kernel must be fully "
                             "specified")
    if any(d is None for d in kernel_shape):
        raise ValueError(f"{who}: the kernel's shape {tuple(kernel_shape)} (labels {weight_spec!r}) is not fully "
                         f"known from the input shape {input_shape} and output_shape={tuple(output_shape)}; give "
                         "the sizes of the kernel's output labels in output_shape")
    bias_shape = None
    if bias_axes is not None:
        offset = elided if left_elided else 0
        first = min(output_spec.find(c) for c in bias_axes)
        bias_shape = [out[i + offset] if c in bias_axes else 1 for i, c in enumerate(output_spec) if i >= first]
        if not left_elided:
            bias_shape += [1] * elided
        if any(d is None for d in bias_shape):
            raise ValueError(f"{who}: the bias's shape {tuple(bias_shape)} (bias_axes={bias_axes!r}) is not fully "
                             f"known; give the sizes of those output labels in output_shape")
    return kernel_shape, bias_shape, out, in_axes, out_axes


class EinsumDense(Layer):
    """`output = activation(einsum(equation, inputs, kernel) + bias)` (see the module docstring)."""

    def __init__(self, equation, output_shape, activation=None, bias_axes=None, kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", kernel_regularizer=None, bias_regularizer=None, kernel_constraint=None,
                 bias_constraint=None, lora_rank=None, lora_alpha=None, gptq_unpacked_column_size=None,
                 quantization_config=None, **kwargs):
        super().__init__(**kwargs)
        who = f"EinsumDense '{self.name}'"
        from .quantization import check_quantization_config
        try:
            int8_config = gptq_unpacked_column_size is None and check_quantization_config(quantization_config, who)
        except ValueError:
            int8_config = None
        if int8_config:  # Keras's Int8 / Int4QuantizationConfig (a saved quantized layer's): quantized once built
            if not getattr(self, "_pending_quantization", None):
                self._pending_quantization = int8_config
        elif quantization_config is not None or gptq_unpacked_column_size is not None:
            raise ValueError(f"{who}: quantization (quantization_config={quantization_config!r}, "
                             f"gptq_unpacked_column_size={gptq_unpacked_column_size!r}) is not supported by lamina; "
                             "leave both None")
        _, _, output_spec, _, _ = _split_equation(equation, who)
        self.equation = equation
        self.partial_output_shape = _output_shape_arg(output_shape, who)
        if bias_axes is not None:
            if not isinstance(bias_axes, str) or not bias_axes:
                raise TypeError(f"{who}: `bias_axes` must be None or a non-empty string of output labels, received "
                                f"{bias_axes!r}")
            for c in bias_axes:
                if c not in output_spec:
                    raise ValueError(f"{who}: bias dimension {c!r} was requested, but is not part of the output spec "
                                     f"{output_spec!r} of equation {equation!r}")
        self.bias_axes = bias_axes
        self.activation = _activations.get(activation)
        self.kernel_initializer = _initializers.get(kernel_initializer)
        self.bias_initializer = _initializers.get(bias_initializer)
        self.kernel_regularizer = _regularizers.get(kernel_regularizer)
        self.bias_regularizer = _regularizers.get(bias_regularizer)
        self.kernel_constraint = _constraints.get(kernel_constraint)
        self.bias_constraint = _constraints.get(bias_constraint)
        self.lora_rank = _positive_int("EinsumDense", "lora_rank", lora_rank) if lora_rank is not None else None
        if lora_alpha is not None and (isinstance(lora_alpha, bool) or not isinstance(lora_alpha, (int, float))
                                       or lora_alpha <= 0):
            raise ValueError(f"{who}: `lora_alpha` must be a positive number, received lora_alpha={lora_alpha!r}")
        self.lora_alpha = lora_alpha if lora_alpha is not None else self.lora_rank
        self.lora_enabled = False
        self.bias = None

    def _kernel_init(self, in_axes, out_axes):
        """A VarianceScaling initializer without fan axes is cloned with the kernel's (Keras's
        `_update_kernel_initializer`), so fans count the kernel's input and output labels."""
        init = self.kernel_initializer
        if isinstance(init, _initializers.VarianceScaling) and (init.input_axes is None or init.output_axes is None):
            config = {**init.get_config(), "seed": init.seed, "input_axes": in_axes, "output_axes": out_axes}
            return type(init).from_config(config)
        return init

    def build(self, input_shape):
        who = f"EinsumDense '{self.name}'"
        kernel_shape, bias_shape, _, in_axes, out_axes = analyze_equation(
            self.equation, self.bias_axes, input_shape, self.partial_output_shape, who)
        self.input_spec = InputSpec(ndim=len(input_shape))
        validation.check_weight(self, "kernel", tuple(kernel_shape), self.dtype)
        self._kernel = self.add_weight(name="kernel", shape=tuple(kernel_shape),
                                       initializer=self._kernel_init(in_axes, out_axes),
                                       regularizer=self.kernel_regularizer, constraint=self.kernel_constraint)
        if bias_shape is not None:
            self.bias = self.add_weight(name="bias", shape=tuple(bias_shape), initializer=self.bias_initializer,
                                        regularizer=self.bias_regularizer, constraint=self.bias_constraint)
        self.built = True
        if self.lora_rank:
            self.enable_lora(self.lora_rank, lora_alpha=self.lora_alpha)

    @property
    def kernel(self):
        """The kernel the layer applies: with LoRA, kernel + (alpha / rank) * a @ b."""
        if not self.built:
            raise AttributeError(f"EinsumDense '{self.name}': the layer must be built before its `kernel` is read; "
                                 "call it on an input (or build it) first")
        if not self.lora_enabled:
            return self._kernel
        delta = ops.matmul(self.lora_kernel_a, self.lora_kernel_b)
        return ops.add(self._kernel, ops.multiply(delta, float(self.lora_alpha) / self.lora_rank))

    def enable_lora(self, rank, lora_alpha=None, a_initializer="he_uniform", b_initializer="zeros"):
        """Freezes the kernel and adds the trainable low-rank factors (Keras's `enable_lora`)."""
        from .core import enable_lora_on
        enable_lora_on(self, "_kernel", rank, lora_alpha, a_initializer, b_initializer)

    def save_own_variables(self, store):
        """As Keras: the (LoRA-merged) kernel, then the bias."""
        if not self.built:
            return
        if self.quantization_mode is not None:  # Keras's int8 order: kernel, bias, kernel_scale
            return Layer.save_own_variables(self, store)
        store["0"] = self.kernel.numpy()
        if self.bias is not None:
            store["1"] = self.bias.numpy()

    def load_own_variables(self, store):
        """As Keras: the kernel (and bias) are assigned; with LoRA the factors restart at zero. An
        int8 kernel in the file quantizes a float layer first: a projection that its parent
        (MultiHeadAttention) made from a float config, in a model quantized before it was saved."""
        if self.quantization_mode is None and self.built and not self.lora_enabled and len(store.keys()) \
                and np.asarray(store["0"]).dtype == np.int8:
            int4 = any(np.asarray(store[k]).dtype == np.int8 for k in store.keys() if k != "0")  # a kernel_zero
            self.quantize("int4" if int4 else "int8")
        if not self.lora_enabled:
            return Layer.load_own_variables(self, store)
        from .core import load_merged_lora
        load_merged_lora(self, store, self._kernel)

    def call(self, inputs):
        x = ops.einsum(self.equation, inputs, self.kernel)
        if self.bias is not None:
            x = ops.add(x, self.bias)
        return self.activation(x) if self.activation is not _activations.linear else x

    def compute_output_shape(self, input_shape):
        _, _, out, _, _ = analyze_equation(self.equation, self.bias_axes, input_shape, self.partial_output_shape,
                                           f"EinsumDense '{self.name}'")
        return tuple(out)

    def get_config(self):
        return {**super().get_config(), "output_shape": self.partial_output_shape, "equation": self.equation,
                "activation": _activations.serialize(self.activation), "bias_axes": self.bias_axes,
                "kernel_initializer": _initializers.serialize(self.kernel_initializer),
                "bias_initializer": _initializers.serialize(self.bias_initializer),
                "kernel_regularizer": _regularizers.serialize(self.kernel_regularizer),
                "bias_regularizer": _regularizers.serialize(self.bias_regularizer),
                "activity_regularizer": _regularizers.serialize(self.activity_regularizer),
                "kernel_constraint": _constraints.serialize(self.kernel_constraint),
                "bias_constraint": _constraints.serialize(self.bias_constraint),
                "quantization_config": _quantization_config(self),
                **({"lora_rank": self.lora_rank, "lora_alpha": self.lora_alpha} if self.lora_rank else {})}
