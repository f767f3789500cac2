"""CPU kernels: the plain-NumPy reference oracle (:mod:`moetheory.kernels.reference`) and,
optionally, fast paths that are tested against it."""
