"""Random tensors from seeded generators (C++)."""
__all__ = []
