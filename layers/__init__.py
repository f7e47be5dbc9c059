"""Layers, one file per family, with Keras's names, arguments and weight layouts."""
from .attention import AdditiveAttention, Attention  # noqa: F401
from .convolutional import (Conv1D, Conv2D, DepthwiseConv1D, DepthwiseConv2D, SeparableConv1D,  # noqa: F401
                            SeparableConv2D, ZeroPadding2D)
from .convolutional3d import Conv3D, Conv3DTranspose  # noqa: F401
from .convolutional_transpose import Conv1DTranspose, Conv2DTranspose  # noqa: F401
from .einsum_dense import EinsumDense  # noqa: F401
from .embedding import Embedding, ReversibleEmbedding  # noqa: F401
from .core import (ELU, Activation, ActivityRegularization, Dense, Dropout, Identity, Lambda, LeakyReLU,  # noqa: F401
                   Masking, PReLU, ReLU, Softmax)
from .grouped_query_attention import GroupedQueryAttention, GroupQueryAttention  # noqa: F401
from .input_layer import Input, InputLayer, KerasTensor  # noqa: F401
from .layer import InputSpec, Layer  # noqa: F401
from .multi_head_attention import MultiHeadAttention  # noqa: F401
from .merging import (Add, Average, Concatenate, Dot, Maximum, Minimum, Multiply, Subtract, add,  # noqa: F401
                      average, concatenate, dot, maximum, minimum, multiply, subtract)
from .noise import (AlphaDropout, GaussianDropout, GaussianNoise, SpatialDropout1D, SpatialDropout2D,  # noqa: F401
                    SpatialDropout3D)
from .normalization import (BatchNormalization, GroupNormalization, LayerNormalization,  # noqa: F401
                            RMSNormalization, SpectralNormalization, UnitNormalization)
from .pooling import (AveragePooling1D, AveragePooling2D, GlobalAveragePooling1D,  # noqa: F401
                      GlobalAveragePooling2D, GlobalMaxPooling1D, GlobalMaxPooling2D, MaxPooling1D, MaxPooling2D)
from .pipeline import Pipeline  # noqa: F401
from .pooling_adaptive import (AdaptiveAveragePooling1D, AdaptiveAveragePooling2D,  # noqa: F401
                               AdaptiveAveragePooling3D, AdaptiveMaxPooling1D, AdaptiveMaxPooling2D,
                               AdaptiveMaxPooling3D)
from .pooling3d import (AveragePooling3D, GlobalAveragePooling3D, GlobalMaxPooling3D,  # noqa: F401
                        MaxPooling3D)
from .preprocessing import CategoryEncoding, Discretization, Normalization, Rescaling  # noqa: F401
from .preprocessing_image import (CenterCrop, RandomContrast, RandomCrop, RandomFlip, RandomRotation,  # noqa: F401
                                  RandomTranslation, RandomZoom, Resizing)
from .preprocessing_color import (AutoContrast, ContrastLimitedAdaptiveHistogramEqualization,  # noqa: F401
                                  Equalization, RandomBrightness, RandomColorDegeneration, RandomColorJitter,
                                  RandomGrayscale, RandomHue, RandomInvert, RandomPosterization, RandomSaturation,
                                  Solarization)
from .preprocessing_mix import AugMix, CutMix, MixUp, RandAugment  # noqa: F401
from .preprocessing_spatial import (MaxNumBoundingBoxes, RandomElasticTransform, RandomErasing,  # noqa: F401
                                    RandomGaussianBlur, RandomPerspective, RandomSharpness, RandomShear)
from .preprocessing_text import HashedCrossing, Hashing, IntegerLookup, StringLookup, TextVectorization  # noqa: F401
from .recurrent import (GRU, GRUCell, LSTM, LSTMCell, RNN, SimpleRNN, SimpleRNNCell,  # noqa: F401
                        StackedRNNCells)
from .conv_lstm import ConvLSTM1D, ConvLSTM2D, ConvLSTM3D  # noqa: F401
from .preprocessing_audio import MelSpectrogram, STFTSpectrogram  # noqa: F401
from .reshaping import (Cropping1D, Cropping2D, Cropping3D, Flatten, Permute, RepeatVector, Reshape,  # noqa: F401
                        UpSampling1D, UpSampling2D, UpSampling3D, ZeroPadding1D, ZeroPadding3D)
from .serialization import deserialize, serialize  # noqa: F401
from .wrappers import Bidirectional, TimeDistributed, Wrapper  # noqa: F401

Convolution2D, Convolution1D = Conv2D, Conv1D
SeparableConvolution2D, SeparableConvolution1D = SeparableConv2D, SeparableConv1D
MaxPool2D, AvgPool2D, MaxPool1D, AvgPool1D = MaxPooling2D, AveragePooling2D, MaxPooling1D, AveragePooling1D
GlobalAvgPool2D, GlobalMaxPool2D = GlobalAveragePooling2D, GlobalMaxPooling2D
GlobalAvgPool1D, GlobalMaxPool1D = GlobalAveragePooling1D, GlobalMaxPooling1D
Convolution3D, Convolution1DTranspose, Convolution2DTranspose = Conv3D, Conv1DTranspose, Conv2DTranspose
Convolution3DTranspose = Conv3DTranspose
MaxPool3D, AvgPool3D, GlobalAvgPool3D, GlobalMaxPool3D = (MaxPooling3D, AveragePooling3D, GlobalAveragePooling3D,
                                                           GlobalMaxPooling3D)
