"""3-D convolution: Conv3D (alias Convolution3D) over (batch, depth, height, width, channels) or
channels_first. The maths is `ops.conv` on rank-5 inputs (backend/convolution3d.py: the depth
slices folded into the channels of one 2-D convolution). Weights, in Keras's order: `kernel`
(kd, kh, kw, in_channels, filters), then `bias` (filters,)."""
from .. import ops
from .convolutional import _conv_len
from .convolutional_transpose import _ConvLayer


class Conv3D(_ConvLayer):
    """3-D convolution (Keras's Conv3D). `groups` must be 1: grouped 3-D convolution is not
    implemented."""
    rank = 3

    def __init__(self, filters, kernel_size, strides=(1, 1, 1), padding="valid", data_format=None,
                 dilation_rate=(1, 1, 1), groups=1, activation=None, use_bias=True,
                 kernel_initializer="glorot_uniform", bias_initializer="zeros", kernel_regularizer=None,
                 bias_regularizer=None, activity_regularizer=None, kernel_constraint=None, bias_constraint=None,
                 **kwargs):
        if groups != 1 or isinstance(groups, bool):
            raise ValueError(f"{type(self).__name__}: groups={groups!r} is not supported (grouped 3-D convolution is "
                             "not implemented); use groups=1")
        super().__init__(filters, kernel_size, strides=strides, padding=padding, data_format=data_format,
                         dilation_rate=dilation_rate, activation=activation, use_bias=use_bias,
                         kernel_initializer=kernel_initializer, bias_initializer=bias_initializer,
                         kernel_regularizer=kernel_regularizer, bias_regularizer=bias_regularizer,
                         activity_regularizer=activity_regularizer, kernel_constraint=kernel_constraint,
                         bias_constraint=bias_constraint, **kwargs)
        self.groups = 1

    def _kernel_shape(self, channels):
        return self.kernel_size + (channels, self.filters)

    def _convolve(self, inputs):
        return ops.conv(inputs, self.kernel, strides=self.strides, padding=self.padding,
                        data_format=self.data_format, dilation_rate=self.dilation_rate)

    def _spatial_out(self, spatial):
        return tuple(_conv_len(spatial[i], self.kernel_size[i], self.strides[i], self.dilation_rate[i],
                               self.padding) for i in range(self.rank))

    def get_config(self):
        return {**super().get_config(), "groups": self.groups}

