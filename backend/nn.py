"""Neural-network ops (activations, softmax, losses, conv, pooling, normalisation, dropout,
embedding), with gradients."""
