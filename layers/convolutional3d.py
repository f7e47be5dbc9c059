"""3-D convolutions over (batch, depth, height, width, channels) or channels_first: Conv3D (alias
Convolution3D) and Conv3DTranspose (alias Convolution3DTranspose).

Conv3D is `ops.conv` on rank-5 inputs (backend/convolution3d.py: the depth slices folded into the
channels of one 2-D convolution). Conv3DTranspose is built from the 2-D transposed convolution:
a transposed convolution is separable into its depth taps, so every depth slice goes through one
`ops.conv_transpose` whose output channels are the kd kernel taps side by side (kernel
(kh, kw, kd * filters, in)); tap j of input slice o then lands on output depth o * stride +
j * dilation - pad_before (the geometry of backend/convolution_transpose.py, Keras's rule), which
is one matmul with a constant (depth * kd, out_depth) 0/1 matrix. Weights, in Keras's order:
`kernel` ((kd, kh, kw, in, filters) for Conv3D, (kd, kh, kw, filters, in) for Conv3DTranspose),
then `bias` (filters,)."""
import numpy as np

from .. import ops
from ..backend import validation
from ..backend.convolution_transpose import transpose_geometry
from .convolutional import _conv_len
from .convolutional_transpose import _ConvLayer, _ConvTranspose


class Conv3D(_ConvLayer):
    """3-D convolution (Keras's Conv3D). With `groups` > 1, group g's filters see their own slice
    of the input channels (kernel (kd, kh, kw, in / groups, filters)), as Keras's."""
    rank = 3

    def __init__(self, filters, kernel_size, strides=(1, 1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1, 1), groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
                 **kwargs):
        super().__init__(filters, kernel_size, strides=strides, padding=padding, data_format=data_format,
                         dilation_rate=dilation_rate, activation=activation, use_bias=use_bias,
                         kernel_initializer=kernel_initializer, bias_initializer=bias_initializer,
                         kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
                         activity_regularizer=activity_regularizer, kernel_constraint=kernel_constraint,
                         bias_constraint=bias_constraint, **kwargs)
        cls = type(self).__name__
        self.groups = validation.positive_int(cls, "groups", groups)
        if self.filters % self.groups:
            raise ValueError(f"{cls}: the number of filters must be evenly divisible by the number of groups; "
                             f"received filters={filters}, groups={groups}")

    def _kernel_shape(self, channels):
        if channels % self.groups:
            raise ValueError(f"{type(self).__name__} '{self.name}': the number of input channels must be evenly "
                             f"divisible by the number of groups; received groups={self.groups} and "
                             f"{channels} input channels")
        return self.kernel_size + (channels // self.groups, self.filters)

    def _convolve(self, inputs):
        kw = dict(strides=self.strides, padding=self.padding, data_format=self.data_format,
                  dilation_rate=self.dilation_rate)
        g = self.groups
        if g == 1:
            return ops.conv(inputs, self.kernel, **kw)
        axis = self._channel_axis()   # one convolution per group, over its slice of the channels
        xs = ops.split(inputs, g, axis=axis)
        ks = ops.split(self.kernel, g, axis=-1)
        return ops.concatenate([ops.conv(xi, ki, **kw) for xi, ki in zip(xs, ks)], axis=axis)

    def _spatial_out(self, spatial):
        return tuple(_conv_len(spatial[i], self.kernel_size[i], self.strides[i], self.dilation_rate[i],
                               self.padding) for i in range(self.rank))

    def get_config(self):
        return {**super().get_config(), "groups": self.groups}


def _depth_scatter(depth, kd, stride, dilation, before, out_depth):
    """(depth * kd, out_depth) 0/1: row o * kd + j adds into output depth o * stride + j * dilation - before."""
    s = np.zeros((depth * kd, out_depth), np.float32)
    for o in range(depth):
        for j in range(kd):
            t = o * stride + j * dilation - before
            if 0 <= t < out_depth:
                s[o * kd + j, t] = 1.0
    return s


class Conv3DTranspose(_ConvTranspose):
    """Transposed 3-D convolution (Keras's Conv3DTranspose) over (batch, depth, height, width,
    channels) (or channels_first); kernel (kd, kh, kw, filters, in_channels). Output lengths as
    Conv2DTranspose's, per spatial dimension (see the module docstring for how it is computed)."""
    rank = 3

    def __init__(self, filters, kernel_size, strides=(1, 1, 1), padding="valid", data_format=None,
                 output_padding=None, dilation_rate=(1, 1, 1), activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
                 **kwargs):
        super().__init__(filters, kernel_size, strides=strides, padding=padding, output_padding=output_padding,
                         data_format=data_format, dilation_rate=dilation_rate, activation=activation,
                         use_bias=use_bias, kernel_initializer=kernel_initializer, bias_initializer=bias_initializer,
                         kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
                         activity_regularizer=activity_regularizer, kernel_constraint=kernel_constraint,
                         bias_constraint=bias_constraint, **kwargs)

    def _convolve(self, inputs):
        x = inputs if self.data_format == "channels_last" else ops.transpose(inputs, (0, 2, 3, 4, 1))
        b, d, h, w, c = x.shape
        kd, kh, kw = self.kernel_size
        f = self.filters
        op = self.output_padding or (None,) * 3
        if 0 in (d, h, w):
            raise ValueError(f"Conv3DTranspose '{self.name}': every spatial dimension of the input must be at least "
                             f"1, received input shape {inputs.shape} ({self.data_format})")
        taps = ops.reshape(ops.transpose(self.kernel, (1, 2, 0, 3, 4)), (kh, kw, kd * f, c))
        y = ops.conv_transpose(ops.reshape(x, (b * d, h, w, c)), taps, strides=self.strides[1:], padding=self.padding,
                               output_padding=None if self.output_padding is None else op[1:],
                               dilation_rate=self.dilation_rate[1:], data_format="channels_last")
        oh, ow = y.shape[1], y.shape[2]
        out_d, before, _ = transpose_geometry(d, kd, self.strides[0], self.dilation_rate[0], self.padding, op[0])
        scatter = _depth_scatter(d, kd, self.strides[0], self.dilation_rate[0], before, out_d)
        y = ops.transpose(ops.reshape(y, (b, d, oh, ow, kd, f)), (0, 2, 3, 5, 1, 4))   # (b, oh, ow, f, d, kd)
        y = ops.matmul(ops.reshape(y, (b * oh * ow * f, d * kd)), scatter)
        y = ops.reshape(y, (b, oh, ow, f, out_d))
        return ops.transpose(y, (0, 4, 1, 2, 3) if self.data_format == "channels_last" else (0, 3, 4, 1, 2))
