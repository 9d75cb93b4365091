"""Probing: Fourier modes and plane-wave directions, Jacobian-vector products, which steps get probed."""
