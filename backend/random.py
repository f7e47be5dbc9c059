"""Random tensors from seeded generators (C++)."""
