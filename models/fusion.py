"""Graph-level fusion for Functional models: an inference BatchNormalization and the ReLU that
follows it run as one kernel (backend.nn.batch_normalization_relu), the Conv-BN-ReLU pattern
of InceptionV3 and MobileNet: one pass over the activations instead of two, one layer call
instead of two.

`plan` finds the pairs once, when the model is built; `fused_call` decides at every call whether
a pair may run fused. Only in inference, with nothing to record for a gradient and no mask;
otherwise the two layers run one by one as usual.
"""
import math

from .. import activations as _activations
from ..backend import dtypes
from ..backend.autodiff import needs_grad
from ..backend.nn import batch_normalization_relu
from ..backend.tensor import Tensor
from ..layers.core import Activation, ReLU
from ..layers.layer import _ctx, check_input_spec
from ..layers.normalization import BatchNormalization


def relu_cap(layer):
    """The cap of an activation layer that computes min(max(x, 0), cap) (math.inf when
    uncapped), or None for any other layer."""
    if type(layer) is Activation:
        if layer.activation is _activations.relu:
            return math.inf
        if layer.activation is _activations.relu6:
            return 6.0
    elif type(layer) is ReLU and layer.negative_slope == 0 and layer.threshold == 0:
        return math.inf if layer.max_value is None else float(layer.max_value)
    return None


def _plain(layer):
    """Called the usual way: with no activity regularizer."""
    return layer.activity_regularizer is None


def plan(nodes, outputs):
    """{id(bn_node): (relu_node, cap)} for every BatchNormalization node of `nodes` whose output
    feeds one node only, a relu activation called on it alone, and is not one of `outputs`."""
    users = {}
    for node in nodes:
        for t in node.inputs:
            users.setdefault(id(t), []).append(node)
    output_ids = {id(t) for t in outputs}
    pairs = {}
    for node in nodes:
        (args, kwargs) = node.call_args
        if type(node.layer) is not BatchNormalization or len(args) != 1 or set(kwargs) - {"training"}:
            continue
        y = node.outputs[0]
        after = users.get(id(y), [])
        if len(node.outputs) != 1 or id(y) in output_ids or len(after) != 1:
            continue
        act = after[0]
        act_args, act_kwargs = act.call_args
        cap = relu_cap(act.layer)
        if cap is None or len(act_args) != 1 or act_args[0] is not y or act_kwargs:
            continue
        same_device = act.layer._device is None or act.layer._device is node.layer._device
        if _plain(node.layer) and _plain(act.layer) and same_device:
            pairs[id(node)] = (act, cap)
    return pairs


def fused_call(bn, act, x, training, cap):
    """act(bn(x, training=training)) as one kernel, or None where the layers must run one by one:
    batch statistics (training), a gradient to record, a mask, an input that is not a float32
    tensor. Checks both layers' input specs as their calls would."""
    if training is None:
        training = _ctx.training  # what Layer.__call__ passes on
    if training and bn.trainable:  # BatchNormalization.call uses the batch statistics
        return None
    if not isinstance(x, Tensor) or x.dtype != dtypes.FLOAT32 or getattr(x, "_keras_mask", None) is not None:
        return None
    if bn._device is not None and x.device is not bn._device:  # the layer call moves it first
        return None
    params = [p for p in (bn.moving_mean, bn.moving_variance, bn.beta, bn.gamma) if p is not None]
    if needs_grad(x, *params):
        return None
    for layer in (bn, act):
        specs = layer.input_spec if isinstance(layer.input_spec, (list, tuple)) else [layer.input_spec]
        for spec in specs[:1]:
            check_input_spec(layer, spec, x.shape)
    return batch_normalization_relu(x, bn.moving_mean, bn.moving_variance, bn._axis, offset=bn.beta,
                                    scale=bn.gamma, epsilon=bn.epsilon, max_value=cap)
