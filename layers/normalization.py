"""Normalisation layers: BatchNormalization, LayerNormalization, GroupNormalization, RMSNormalization,
UnitNormalization and SpectralNormalization (Keras's weights and order)."""
import numbers
import warnings

from .. import constraints as _constraints
from .. import initializers as _initializers
from .. import ops
from .. import regularizers as _regularizers
from ..backend.autodiff import no_grad
from .layer import InputSpec, Layer
from .wrappers import Wrapper


def _is_int(v):
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v):
    return isinstance(v, numbers.Real) and not isinstance(v, bool) and v == v and abs(v) != float("inf")


def _axis_list(axis, ndim, layer):
    axes = [axis] if isinstance(axis, int) else list(axis)
    out = []
    for a in axes:
        if not -ndim <= a < ndim:
            raise ValueError(f"{layer}: axis {a} is out of range for inputs of rank {ndim}")
        out.append(a % ndim)
    return sorted(out)


class BatchNormalization(Layer):
    """Normalises with batch statistics in training and moving averages in inference.

    Weights: [gamma, beta, moving_mean, moving_variance]. A frozen layer (trainable=False) always
    runs in inference mode, as in Keras."""

    def __init__(self, axis=-1, momentum=0.99, epsilon=1e-3, center=True, scale=True, beta_initializer="zeros",
                 gamma_initializer="ones", moving_mean_initializer="zeros", moving_variance_initializer="ones",
                 beta_regularizer=None, gamma_regularizer=None, beta_constraint=None, gamma_constraint=None,
                 synchronized=False, renorm=False, renorm_clipping=None, renorm_momentum=0.99, **kwargs):
        super().__init__(**kwargs)
        if renorm or renorm_clipping is not None:
            raise ValueError(f"BatchNormalization: batch renormalization (renorm={renorm!r}, renorm_clipping="
                             f"{renorm_clipping!r}) is not supported by lamina; use renorm=False")
        self.synchronized = bool(synchronized)   # one replica per step here: the same statistics
        if not _is_int(axis):
            raise ValueError(f"BatchNormalization: axis must be an int, received {axis!r}")
        if not _is_real(momentum) or not 0.0 <= momentum <= 1.0:
            raise ValueError(f"BatchNormalization: momentum must be a number in [0, 1], received momentum={momentum!r}")
        if not _is_real(epsilon) or epsilon <= 0:
            raise ValueError(f"BatchNormalization: epsilon must be a positive number, received epsilon={epsilon!r}")
        axis = int(axis)
        self.axis, self.momentum, self.epsilon = axis, float(momentum), float(epsilon)
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = _initializers.get(beta_initializer)
        self.gamma_initializer = _initializers.get(gamma_initializer)
        self.moving_mean_initializer = _initializers.get(moving_mean_initializer)
        self.moving_variance_initializer = _initializers.get(moving_variance_initializer)
        self.beta_regularizer = _regularizers.get(beta_regularizer)
        self.gamma_regularizer = _regularizers.get(gamma_regularizer)
        self.beta_constraint = _constraints.get(beta_constraint)
        self.gamma_constraint = _constraints.get(gamma_constraint)
        self.supports_masking = True

    def build(self, input_shape):
        nd = len(input_shape)
        axis = self.axis % nd if -nd <= self.axis < nd else None
        if axis is None:
            raise ValueError(f"BatchNormalization '{self.name}': axis {self.axis} is out of range for inputs of shape "
                             f"{input_shape}")
        c = input_shape[axis]
        if c is None:
            raise ValueError(f"BatchNormalization '{self.name}': the normalised axis must have a known size, "
                             f"received shape {input_shape}")
        self._axis = axis
        self.gamma = self.add_weight(name="gamma", autocast=False, shape=(c,), initializer=self.gamma_initializer,
                                     regularizer=self.gamma_regularizer,
                                     constraint=self.gamma_constraint) if self.scale else None
        self.beta = self.add_weight(name="beta", autocast=False, shape=(c,), initializer=self.beta_initializer,
                                    regularizer=self.beta_regularizer,
                                    constraint=self.beta_constraint) if self.center else None
        self.moving_mean = self.add_weight(name="moving_mean", shape=(c,), initializer=self.moving_mean_initializer,
                                           trainable=False)
        self.moving_variance = self.add_weight(name="moving_variance", shape=(c,),
                                               initializer=self.moving_variance_initializer, trainable=False)
        self.input_spec = InputSpec(ndim=nd, axes={axis: c})

    def call(self, inputs, training=None, mask=None):
        if training and self.trainable:
            y, mean, var = ops.batch_norm_train(inputs, self.gamma, self.beta, axis=self._axis, epsilon=self.epsilon)
            with no_grad():
                m = self.momentum
                self.moving_mean.assign(self.moving_mean * m + mean * (1.0 - m))
                self.moving_variance.assign(self.moving_variance * m + var * (1.0 - m))
            return y
        return ops.batch_normalization(inputs, self.moving_mean, self.moving_variance, axis=self._axis,
                                       offset=self.beta, scale=self.gamma, epsilon=self.epsilon)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "momentum": self.momentum, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale,
                "beta_initializer": _initializers.serialize(self.beta_initializer),
                "gamma_initializer": _initializers.serialize(self.gamma_initializer),
                "moving_mean_initializer": _initializers.serialize(self.moving_mean_initializer),
                "moving_variance_initializer": _initializers.serialize(self.moving_variance_initializer),
                "beta_regularizer": _regularizers.serialize(self.beta_regularizer),
                "gamma_regularizer": _regularizers.serialize(self.gamma_regularizer),
                "beta_constraint": _constraints.serialize(self.beta_constraint),
                "gamma_constraint": _constraints.serialize(self.gamma_constraint),
                "synchronized": self.synchronized, "renorm": False, "renorm_clipping": None, "renorm_momentum": 0.99}


class LayerNormalization(Layer):
    """Normalises each sample over `axis` (default the last); weights gamma, beta. `axis` is kept
    as Keras keeps it: an int until build, a sorted list after (a list or tuple becomes a list).
    `rms_scaling=True` is Keras's deprecated variant (it warns there too): x / sqrt(var + epsilon)
    * gamma, no beta."""

    def __init__(self, axis=-1, epsilon=1e-3, center=True, scale=True, rms_scaling=False, beta_initializer="zeros",
                 gamma_initializer="ones", beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
                 gamma_constraint=None, **kwargs):
        super().__init__(**kwargs)
        if rms_scaling:
            warnings.warn("You passed `rms_scaling=True`, which is deprecated (as in Keras). This argument scales "
                          "the input by the variance, not the root mean square. To use RMS normalization, use "
                          "`keras.layers.RMSNormalization` instead.", stacklevel=2)
        if not _is_real(epsilon) or epsilon <= 0:
            raise ValueError(f"LayerNormalization: epsilon must be a positive number, received epsilon={epsilon!r}")
        if not (_is_int(axis) or (isinstance(axis, (list, tuple)) and axis and all(_is_int(a) for a in axis))):
            raise ValueError(f"LayerNormalization: axis must be an int or a list of ints, received axis={axis!r}")
        self.axis = int(axis) if _is_int(axis) else [int(a) for a in axis]
        self.epsilon, self.center, self.scale = float(epsilon), bool(center), bool(scale)
        self.rms_scaling = bool(rms_scaling)
        self.beta_initializer = _initializers.get(beta_initializer)
        self.gamma_initializer = _initializers.get(gamma_initializer)
        self.beta_regularizer = _regularizers.get(beta_regularizer)
        self.gamma_regularizer = _regularizers.get(gamma_regularizer)
        self.beta_constraint = _constraints.get(beta_constraint)
        self.gamma_constraint = _constraints.get(gamma_constraint)
        self.supports_masking = True

    def build(self, input_shape):
        axes = _axis_list(self.axis, len(input_shape), f"LayerNormalization '{self.name}'")
        shape = tuple(input_shape[a] for a in axes)
        if any(d is None for d in shape):
            raise ValueError(f"LayerNormalization '{self.name}': normalised axes must have known sizes, received "
                             f"{input_shape}")
        self._axes = tuple(axes)
        self.axis = sorted(self.axis) if isinstance(self.axis, list) else [self.axis]
        self.gamma = self.add_weight(name="gamma", autocast=False, shape=shape, initializer=self.gamma_initializer,
                                     regularizer=self.gamma_regularizer,
                                     constraint=self.gamma_constraint) if self.scale or self.rms_scaling else None
        self.beta = self.add_weight(name="beta", autocast=False, shape=shape, initializer=self.beta_initializer,
                                    regularizer=self.beta_regularizer,
                                    constraint=self.beta_constraint) if self.center and not self.rms_scaling else None

    def call(self, inputs):
        axis = self._axes[0] if len(self._axes) == 1 else self._axes
        if self.rms_scaling:
            return ops.layer_normalization(inputs, self.gamma, None, axis=list(self._axes), epsilon=self.epsilon,
                                           rms_scaling=True)
        return ops.layer_norm(inputs, self.gamma, self.beta, axis=axis, epsilon=self.epsilon)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon, "center": self.center,
                "scale": self.scale, "rms_scaling": self.rms_scaling, "beta_initializer": _initializers.serialize(self.beta_initializer),
                "gamma_initializer": _initializers.serialize(self.gamma_initializer),
                "beta_regularizer": _regularizers.serialize(self.beta_regularizer),
                "gamma_regularizer": _regularizers.serialize(self.gamma_regularizer),
                "beta_constraint": _constraints.serialize(self.beta_constraint),
                "gamma_constraint": _constraints.serialize(self.gamma_constraint)}


def _epsilon(who, epsilon):
    if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real) or not epsilon >= 0:
        raise ValueError(f"{who}: `epsilon` must be a number >= 0, received epsilon={epsilon!r}")
    return float(epsilon)


def _axis_arg(who, axis):
    """An int or a list of ints (Keras keeps a list), else a TypeError naming the layer."""
    if isinstance(axis, (list, tuple)) and axis and all(
            isinstance(a, numbers.Integral) and not isinstance(a, bool) for a in axis):
        return [int(a) for a in axis]
    if isinstance(axis, numbers.Integral) and not isinstance(axis, bool):
        return int(axis)
    raise TypeError(f"{who}: `axis` must be an int or a list/tuple of ints, received axis={axis!r}")


class UnitNormalization(Layer):
    """Scales each sample to unit L2 norm over `axis` (an int or a list of ints):
    x * min(rsqrt(sum(x^2)), 1e12), i.e. x / max(||x||, 1e-12), as Keras."""

    def __init__(self, axis=-1, **kwargs):
        super().__init__(**kwargs)
        self.axis = _axis_arg("UnitNormalization", axis)
        self.supports_masking = True

    def build(self, input_shape):
        self._axes = tuple(_axis_list(self.axis, len(input_shape), f"UnitNormalization '{self.name}'"))

    def call(self, inputs):
        if inputs.dtype != "float32":
            inputs = ops.cast(inputs, "float32")
        inv = ops.rsqrt(ops.sum(ops.square(inputs), axis=self._axes, keepdims=True))
        return ops.multiply(inputs, ops.minimum(inv, 1e12))

    def compute_output_shape(self, input_shape):
        _axis_list(self.axis, len(input_shape), f"UnitNormalization '{self.name}'")
        return input_shape

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


class RMSNormalization(Layer):
    """Root-mean-square normalisation over `axis`: x * rsqrt(mean(x^2) + epsilon) * scale, with one
    learned `scale` (ones at first) per position of the normalised axes."""

    def __init__(self, axis=-1, epsilon=1e-6, **kwargs):
        super().__init__(**kwargs)
        self.axis = _axis_arg("RMSNormalization", axis)
        self.epsilon = _epsilon("RMSNormalization", epsilon)

    def build(self, input_shape):
        axes = _axis_list(self.axis, len(input_shape), f"RMSNormalization '{self.name}'")
        shape = tuple(input_shape[a] for a in axes)
        if any(d is None for d in shape):
            raise ValueError(f"RMSNormalization '{self.name}': the normalised axes {self.axis} must have known "
                             f"sizes, received shape {tuple(input_shape)}")
        self._axes = tuple(axes)
        if not isinstance(self.axis, list):   # Keras keeps a list once built
            self.axis = [self.axis]
        self._bshape = tuple(input_shape[i] if i in axes else 1 for i in range(axes[0], len(input_shape)))
        self.scale = self.add_weight(name="scale", autocast=False, shape=shape, initializer="ones")
        self.input_spec = InputSpec(ndim=len(input_shape), axes={a: input_shape[a] for a in axes})

    def call(self, inputs):
        rrms = ops.rsqrt(ops.add(ops.mean(ops.square(inputs), axis=self._axes, keepdims=True), self.epsilon))
        return ops.multiply(ops.multiply(inputs, rrms), ops.reshape(self.scale, self._bshape))

    def compute_output_shape(self, input_shape):
        _axis_list(self.axis, len(input_shape), f"RMSNormalization '{self.name}'")
        return input_shape

    def get_config(self):
        return {**super().get_config(), "axis": self.axis, "epsilon": self.epsilon}


class GroupNormalization(Layer):
    """Normalises each sample over groups of channels: the `groups` groups of consecutive channels
    along `axis` each get the mean and variance of their channels and of every other non-batch
    axis. groups=-1 is instance normalisation (one group per channel), groups=1 layer
    normalisation over all non-batch axes. Weights: [gamma, beta], one per channel."""

    def __init__(self, groups=32, axis=-1, epsilon=1e-3, center=True, scale=True, beta_initializer="zeros",
                 gamma_initializer="ones", beta_regularizer=None, gamma_regularizer=None, beta_constraint=None,
                 gamma_constraint=None, **kwargs):
        if isinstance(groups, bool) or not isinstance(groups, numbers.Integral) or (groups <= 0 and groups != -1):
            raise ValueError(f"GroupNormalization: `groups` must be a positive integer (or -1 for instance "
                             f"normalization), received groups={groups!r}")
        super().__init__(**kwargs)
        if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
            raise ValueError(f"GroupNormalization: `axis` must be an int (the channel axis), received axis={axis!r}")
        self.groups, self.axis = int(groups), int(axis)
        self.epsilon = _epsilon("GroupNormalization", epsilon)
        self.center, self.scale = bool(center), bool(scale)
        self.beta_initializer = _initializers.get(beta_initializer)
        self.gamma_initializer = _initializers.get(gamma_initializer)
        self.beta_regularizer = _regularizers.get(beta_regularizer)
        self.gamma_regularizer = _regularizers.get(gamma_regularizer)
        self.beta_constraint = _constraints.get(beta_constraint)
        self.gamma_constraint = _constraints.get(gamma_constraint)
        self.supports_masking = True

    def build(self, input_shape):
        nd = len(input_shape)
        who = f"GroupNormalization '{self.name}'"
        if nd < 2:
            raise ValueError(f"{who}: expected inputs with a batch axis and a channel axis, received shape "
                             f"{tuple(input_shape)}")
        if not -nd <= self.axis < nd or self.axis % nd == 0:
            raise ValueError(f"{who}: axis {self.axis} is not a channel axis of inputs of shape {tuple(input_shape)}; "
                             f"expected an axis in 1..{nd - 1} (or -1..{-(nd - 1)})")
        axis = self.axis % nd
        dim = input_shape[axis]
        if dim is None:
            raise ValueError(f"{who}: axis {self.axis} of the input must have a known size, received shape "
                             f"{tuple(input_shape)}")
        if self.groups == -1:
            self.groups = dim
        if dim < self.groups:
            raise ValueError(f"{who}: the number of groups ({self.groups}) cannot be more than the number of "
                             f"channels ({dim}, axis {self.axis} of shape {tuple(input_shape)})")
        if dim % self.groups:
            raise ValueError(f"{who}: the number of channels ({dim}, axis {self.axis} of shape "
                             f"{tuple(input_shape)}) must be a multiple of the number of groups ({self.groups})")
        self._axis = axis
        self.input_spec = InputSpec(ndim=nd, axes={axis: dim})
        self.gamma = self.add_weight(name="gamma", autocast=False, shape=(dim,), initializer=self.gamma_initializer,
                                     regularizer=self.gamma_regularizer,
                                     constraint=self.gamma_constraint) if self.scale else None
        self.beta = self.add_weight(name="beta", autocast=False, shape=(dim,), initializer=self.beta_initializer,
                                    regularizer=self.beta_regularizer,
                                    constraint=self.beta_constraint) if self.center else None

    def call(self, inputs):
        a, g = self._axis, self.groups
        shape = inputs.shape
        per = shape[a] // g
        grouped = ops.reshape(inputs, shape[:a] + (g, per) + shape[a + 1:])   # groups on axis a
        axes = tuple(i for i in range(1, len(shape) + 1) if i != a)
        mean, var = ops.moments(grouped, axes=axes, keepdims=True)
        inv = ops.rsqrt(ops.add(var, self.epsilon))
        bshape = (1,) * a + (g, per) + (1,) * (len(shape) - a - 1)
        if self.gamma is not None:
            inv = ops.multiply(inv, ops.reshape(self.gamma, bshape))
        res = ops.multiply(ops.negative(mean), inv)
        if self.beta is not None:
            res = ops.add(res, ops.reshape(self.beta, bshape))
        return ops.reshape(ops.add(ops.multiply(grouped, inv), res), shape)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "groups": self.groups, "axis": self.axis, "epsilon": self.epsilon,
                "center": self.center, "scale": self.scale,
                "beta_initializer": _initializers.serialize(self.beta_initializer),
                "gamma_initializer": _initializers.serialize(self.gamma_initializer),
                "beta_regularizer": _regularizers.serialize(self.beta_regularizer),
                "gamma_regularizer": _regularizers.serialize(self.gamma_regularizer),
                "beta_constraint": _constraints.serialize(self.beta_constraint),
                "gamma_constraint": _constraints.serialize(self.gamma_constraint)}


class SpectralNormalization(Wrapper):
    """Spectral normalization (Miyato et al. 2018) of a wrapped layer's kernel, as Keras's: in
    training calls the kernel (or an Embedding's `embeddings`, as a (-1, last) matrix W) is
    replaced in place by W / sigma, sigma its largest singular value estimated by
    `power_iterations` steps of the power method from the stored `vector_u` (1, last)
    (non-trainable, TruncatedNormal(0.02)), which is updated too; an all-zero kernel is left as
    it is. Inference calls (and calls that do not say training=True, Keras's default here) use
    the kernel as it stands. Weights: the wrapped layer's kernel, vector_u, then its others."""

    def __init__(self, layer, power_iterations=1, **kwargs):
        super().__init__(layer, **kwargs)
        if isinstance(power_iterations, bool) or not isinstance(power_iterations, numbers.Integral) \
                or power_iterations <= 0:
            raise ValueError(f"SpectralNormalization: `power_iterations` must be an integer > 0, received "
                             f"power_iterations={power_iterations!r}")
        self.power_iterations = int(power_iterations)

    def build(self, input_shape):
        super().build(input_shape)
        self.input_spec = InputSpec(min_ndim=1, axes={-1: input_shape[-1]})
        kernel = getattr(self.layer, "kernel", None)
        if kernel is None:
            kernel = getattr(self.layer, "embeddings", None)
        if kernel is None:
            raise ValueError(f"SpectralNormalization '{self.name}': the wrapped {type(self.layer).__name__} "
                             f"'{self.layer.name}' has no attribute 'kernel' nor 'embeddings' to normalize; wrap a "
                             "layer with a kernel (Dense, Conv2D, ...) or an Embedding")
        self.kernel = kernel
        self.kernel_shape = kernel.shape
        self.vector_u = self.add_weight(name="vector_u", shape=(1, self.kernel_shape[-1]),
                                        initializer=_initializers.TruncatedNormal(stddev=0.02), trainable=False)

    def call(self, inputs, training=False):
        if training:
            with no_grad():
                new_u, new_kernel = self.normalized_weights()
                zero = ops.all(ops.equal(self.kernel, 0.0))
                self.vector_u.assign(ops.where(zero, self.vector_u, new_u))
                self.kernel.assign(ops.where(zero, self.kernel, new_kernel))
        return self.layer(inputs)

    def normalized_weights(self):
        """(the new vector_u, the kernel divided by its estimated spectral norm)."""
        w = ops.reshape(self.kernel, (-1, self.kernel_shape[-1]))
        u = ops.convert_to_tensor(self.vector_u)
        v = None
        for _ in range(self.power_iterations):
            v = _l2_normalize(ops.matmul(u, ops.transpose(w)))
            u = _l2_normalize(ops.matmul(v, w))
        u, v = ops.stop_gradient(u), ops.stop_gradient(v)
        sigma = ops.matmul(ops.matmul(v, w), ops.transpose(u))
        return u, ops.reshape(ops.divide(self.kernel, sigma), self.kernel_shape)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        return {**super().get_config(), "power_iterations": self.power_iterations}


def _l2_normalize(x):
    """x / max(||x||, 1e-7) over all of x (keras.ops.normalize with axis=None)."""
    return ops.multiply(x, ops.minimum(ops.rsqrt(ops.sum(ops.square(x))), 1e7))
