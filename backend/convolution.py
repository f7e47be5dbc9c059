"""Convolution and pooling ops (channels-last), with gradients."""
__all__ = []
