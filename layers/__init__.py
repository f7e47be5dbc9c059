"""Layers, one file per family, with Keras's names, arguments and weight layouts."""
from .attention import AdditiveAttention, Attention  # noqa: F401
from .convolutional import (Conv1D, Conv2D, DepthwiseConv1D, DepthwiseConv2D, SeparableConv1D,  # noqa: F401
                            SeparableConv2D, ZeroPadding2D)
from .embedding import Embedding  # noqa: F401
from .core import Activation, ActivityRegularization, Dense, Dropout, Lambda, LeakyReLU, Masking, ReLU, Softmax  # noqa: F401
from .input_layer import Input, InputLayer, KerasTensor  # noqa: F401
from .layer import InputSpec, Layer  # noqa: F401
from .merging import (Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply, Subtract, add,  # noqa: F401
                      average, concatenate, dot, maximum, minimum, multiply, subtract)
from .normalization import BatchNormalization, LayerNormalization  # noqa: F401
from .pooling import (AveragePooling1D, AveragePooling2D, GlobalAveragePooling1D,  # noqa: F401
                      GlobalAveragePooling2D, GlobalMaxPooling1D, GlobalMaxPooling2D, MaxPooling1D, MaxPooling2D)
from .preprocessing import Rescaling  # noqa: F401
from .recurrent import GRU, GRUCell, LSTM, LSTMCell, SimpleRNN, SimpleRNNCell  # noqa: F401
from .reshaping import Flatten, Permute, RepeatVector, Reshape  # noqa: F401
from .serialization import deserialize, serialize  # noqa: F401
from .wrappers import Bidirectional, TimeDistributed  # noqa: F401

Convolution2D, Convolution1D = Conv2D, Conv1D
SeparableConvolution2D, SeparableConvolution1D = SeparableConv2D, SeparableConv1D
MaxPool2D, AvgPool2D, MaxPool1D, AvgPool1D = MaxPooling2D, AveragePooling2D, MaxPooling1D, AveragePooling1D
GlobalAvgPool2D, GlobalMaxPool2D = GlobalAveragePooling2D, GlobalMaxPooling2D
