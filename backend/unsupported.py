"""keras.ops names whose results lamina cannot represent or compute: each raises a
NotImplementedError that says why and what to use instead, rather than leaving the name missing
(an AttributeError that explains nothing) or returning something else.

- `eig`, `polar`, `view_as_complex`: their results are complex; lamina tensors are real
  (float32, int32, int64, bool). (`view_as_real` of a real tensor is representable and lives in
  backend/numpy_more.py.)
- `jvp`: a forward-mode (Jacobian-vector) product; lamina's autodiff is reverse mode only, and its
  backward rules are not themselves recorded, so a JVP cannot be had by differentiating a VJP.
"""

__all__ = ["eig", "jvp", "polar", "view_as_complex"]

_REAL = "lamina tensors are real (float32, int32, int64, bool) and cannot hold complex values"


def eig(x):
    """keras.ops.eig: not available (eigenvalues and eigenvectors of a general real matrix are
    complex)."""
    raise NotImplementedError(
        f"eig: the eigen-decomposition of a general (non-symmetric) matrix has complex eigenvalues and eigenvectors; "
        f"{_REAL}. For a symmetric (Hermitian) matrix use ops.eigh, whose results are real; for singular values "
        "use ops.svd")


def polar(abs_, angle):
    """keras.ops.polar: not available (its result, abs_ * exp(i angle), is complex)."""
    raise NotImplementedError(
        f"polar: the result abs_ * (cos(angle) + i sin(angle)) is a complex tensor; {_REAL}. Compute the real and "
        "imaginary parts as two tensors instead: abs_ * ops.cos(angle), abs_ * ops.sin(angle)")


def view_as_complex(x):
    """keras.ops.view_as_complex: not available (its result is complex)."""
    raise NotImplementedError(
        f"view_as_complex: the result is a complex tensor; {_REAL}. Keep the (..., 2) real tensor and use x[..., 0] "
        "and x[..., 1] as the real and imaginary parts")


def jvp(fun, primals, tangents, has_aux=False):
    """keras.ops.jvp: not available (forward-mode differentiation)."""
    raise NotImplementedError(
        "jvp: a Jacobian-vector product needs forward-mode differentiation; lamina's autodiff is reverse mode only "
        "(GradientTape), and its backward rules are not recorded, so a JVP cannot be derived from a VJP either. "
        "Use lamina.GradientTape for gradients (vector-Jacobian products: tape.gradient(y, x, output_gradients=v)), "
        "or a finite difference (fun(x + h * v) - fun(x - h * v)) / (2 h) for a numerical directional derivative")
