"""Recurrent ops: whole-sequence fused LSTM / GRU / simple RNN, with gradients."""
__all__ = []
