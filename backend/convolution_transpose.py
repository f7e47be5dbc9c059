"""Transposed convolution (1-D and 2-D, channels-last), with gradients, like `keras.ops.conv_transpose`.

A transposed convolution is the input gradient of a forward convolution, so it runs on the
conv2d kernels (csrc/cpu/conv.cpp) with no kernel of its own. For each spatial dimension with
input length H, kernel k, stride s, dilation d (dk = (k - 1) * d + 1):

- the output length OH and the JAX-style pads (left, right) come from Keras's rules
  (keras/src/backend/common/backend_utils.py: `_get_output_shape_given_tf_padding` and
  `_convert_conv_transpose_padding_args_from_keras_to_jax`);
- the forward convolution whose input gradient this is has input length OH, the same kernel
  (Keras's transposed kernel (kh, kw, out, in) is, as it stands, the kernel of a forward
  convolution from `out` to `in` channels: no flip, no swap), stride s, dilation d,
  pad before = dk - 1 - left, and the pad
  after chosen so that this forward convolution has exactly H outputs:
  pad_after = max((H - 1) * s + dk - OH - pad_before, 0) (H outputs whenever output_padding < s).

So, with the forward convolution conv_f(y) = conv2d(y, w, s, d, pads) (OH -> H):
  forward          out      = conv_f^T(x)             conv2d_backward's dx with dout = x
  input gradient   d inputs = conv_f(g)               conv2d_forward of the output gradient
  kernel gradient  d kernel = conv2d_backward's dw with forward input g and dout = x.
conv2d_backward reads its input buffer only for dw: for dx alone the output buffer stands in.
1-D runs as 2-D with height 1, as `conv` does.
"""
import numbers

from .autodiff import needs_grad, record
from .convolution import _data_format, _float_input, _int_tuple, _move_channels, _padding, _view
from .math import check_same_device
from .tensor import empty

__all__ = ["conv_transpose"]


def _output_padding(value, n, strides, op):
    """None, or a tuple of n non-negative ints each below the stride of its dimension."""
    if value is None:
        return None
    def ok(v):
        return isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 0
    if ok(value):
        pads = (int(value),) * n
    elif isinstance(value, (tuple, list)) and len(value) == n and all(ok(v) for v in value):
        pads = tuple(int(v) for v in value)
    else:
        raise ValueError(f"{op}: expected `output_padding` to be None, a non-negative int or a tuple of {n} "
                         f"non-negative ints (one per spatial dimension), received {value!r}")
    for i, (p, s) in enumerate(zip(pads, strides)):
        if p >= s:
            raise ValueError(f"{op}: `output_padding` must be strictly less than `strides` in every dimension; at "
                             f"dimension {i} output_padding is {p} but strides is {s} (received "
                             f"output_padding={value!r}, strides={strides}). Lower output_padding or raise strides")
    return pads


def transpose_geometry(size, k, stride, dilation, padding, output_padding):
    """(output length, pad_before, pad_after) of one spatial dimension of a transposed
    convolution: the output length by Keras's rule, and the pads of the forward convolution
    (output length -> `size`) whose input gradient the transposed convolution is."""
    dk = (k - 1) * dilation + 1
    if padding == "valid":
        op = max(dk, stride) - dk if output_padding is None else output_padding
        out = (size - 1) * stride + dk + op
        left = dk - 1
    else:
        if output_padding is None:
            out = size * stride
            pad_len = stride + dk - 2
        else:
            out = (size - 1) * stride + dk % 2 + output_padding
            pad_len = dk + dk % 2 - 2 + output_padding
        left = min(pad_len // 2 + pad_len % 2, dk - 1)
    before = dk - 1 - left
    # the forward convolution has floor((out + before + after - dk) / stride) + 1 = size outputs
    # for `after` in [exact, exact + stride - 1]; the smallest one >= 0 (rows that no window
    # reaches stay zero, as the transposed convolution leaves them)
    after = max((size - 1) * stride + dk - out - before, 0)
    return out, before, after


def output_length(size, k, stride, dilation, padding, output_padding):
    """Keras's `compute_conv_transpose_output_shape` for one dimension (None stays None)."""
    if size is None:
        return None
    return transpose_geometry(size, k, stride, dilation, padding, output_padding)[0]


def conv_transpose(inputs, kernel, strides=1, padding="valid", output_padding=None, data_format=None,
                   dilation_rate=1):
    """Transposed convolution (N = 1 or 2 spatial dimensions) like `keras.ops.conv_transpose`.

    inputs: (batch, width, in) or (batch, height, width, in) (channels_last), or channels-first
    with data_format="channels_first". kernel: (kw, out, in) or (kh, kw, out, in), Keras's
    layout. strides / dilation_rate: an int or one per spatial dimension. padding: "valid" or
    "same". output_padding: None (inferred) or an int or one per dimension, each below its
    stride. Output lengths follow Keras: "valid": (size - 1) * stride + dk + output_padding
    (output_padding None: max(dk, stride) - dk); "same": size * stride when output_padding is
    None, else (size - 1) * stride + dk % 2 + output_padding, with dk = (k - 1) * dilation + 1.
    Returns (batch, out_width, out) or (batch, out_height, out_width, out). No bias.
    """
    op = "conv_transpose"
    x = _float_input(inputs, op, "input")
    w = _float_input(kernel, op, "kernel")
    check_same_device(op, x, w)
    fmt = _data_format(data_format, op)
    if x.ndim not in (3, 4):
        raise ValueError(f"{op}: expected inputs of rank 3 (batch, width, channels) or rank 4 (batch, height, "
                         f"width, channels), received shape {x.shape} (rank {x.ndim})"
                         + ("; 3-D (rank 5) transposed convolution is not supported" if x.ndim == 5 else ""))
    nsp = x.ndim - 2
    if w.ndim != nsp + 2:
        names = "(kw, out_channels, in_channels)" if nsp == 1 else "(kh, kw, out_channels, in_channels)"
        raise ValueError(f"{op}: a {nsp}-D transposed convolution of inputs with shape {x.shape} needs a kernel of "
                         f"rank {nsp + 2} {names}, received kernel shape {w.shape}")
    strides = _int_tuple(strides, nsp, "strides", op)
    dilation = _int_tuple(dilation_rate, nsp, "dilation_rate", op)
    padding = _padding(padding, op)
    out_pad = _output_padding(output_padding, nsp, strides, op)
    first = fmt == "channels_first"
    channels, spatial = (x.shape[1], x.shape[2:]) if first else (x.shape[-1], x.shape[1:-1])
    if w.shape[-1] != channels:
        raise ValueError(f"{op}: the input has {channels} channels (input shape {x.shape}, {fmt}) but the kernel "
                         f"expects {w.shape[-1]} input channels (kernel shape {w.shape}); a transposed "
                         f"convolution's kernel is (*kernel_size, out_channels, in_channels): its last dimension "
                         f"must equal the input's channels")
    if any(d == 0 for d in w.shape[:-2]):
        raise ValueError(f"{op}: the kernel window must be at least 1 in every spatial dimension, received kernel "
                         f"shape {w.shape}")
    if any(d == 0 for d in spatial):
        raise ValueError(f"{op}: every spatial dimension of the input must be at least 1, received input shape "
                         f"{x.shape} ({fmt})")
    if first:
        return _move_channels(_conv_transpose(_move_channels(x, True), w, strides, dilation, padding, out_pad), False)
    return _conv_transpose(x, w, strides, dilation, padding, out_pad)


def _conv_transpose(x, w, strides, dilation, padding, out_pad):
    """conv_transpose of checked channels-last x and w (strides, dilation, out_pad: per dimension)."""
    nsp = x.ndim - 2
    x4, w4 = x, w
    if nsp == 1:
        x4 = _view(x, (x.shape[0], 1) + x.shape[1:])
        w4 = _view(w, (1,) + w.shape)
        strides, dilation = (1,) + strides, (1,) + dilation
        out_pad = None if out_pad is None else (0,) + out_pad
    n, h, wd, _ = x4.shape
    oh, pt, pb = transpose_geometry(h, w4.shape[0], strides[0], dilation[0], padding,
                                    None if out_pad is None else out_pad[0])
    ow, pl, pr = transpose_geometry(wd, w4.shape[1], strides[1], dilation[1], padding,
                                    None if out_pad is None else out_pad[1])
    pads = (pt, pb, pl, pr)
    out4 = (n, oh, ow, w4.shape[2])
    out = empty(out4, x.dtype, x.device)
    kern = x.device.kernels
    # out = dx of the forward conv out4 -> x4.shape; its input buffer is read only for dw, so
    # the output buffer stands in for it
    kern.conv2d_backward(out._buf, out4, w4._buf, w4.shape, x4._buf, x4.shape, out._buf, None,
                         strides, dilation, pads)
    if nsp == 1:
        out = _view(out, (n, ow, out4[3]))
    if needs_grad(x, w):
        def backward(g, need):
            dx = dw = None
            if need[0]:  # the forward convolution of the output gradient
                dx = empty(x.shape, x.dtype, x.device)
                kern.conv2d_forward(g._buf, out4, w4._buf, w4.shape, dx._buf, x4.shape, strides, dilation, pads)
            if need[1]:  # its kernel gradient with forward input g and output gradient x
                dw = empty(w.shape, w.dtype, w.device)
                kern.conv2d_backward(g._buf, out4, w4._buf, w4.shape, x4._buf, x4.shape, None, dw._buf,
                                     strides, dilation, pads)
            return dx, dw
        record(out, (x, w), backward)
    return out
