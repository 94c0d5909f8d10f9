"""Fused Triton kernels for the pyramid ops, behind the functional API.

Callers never use this package directly: :func:`~pyrtok.pyr_down`, :func:`~pyrtok.pyr_up`,
:func:`~pyrtok.laplacian_pyramid`, :func:`~pyrtok.reconstruct` and
:func:`~pyrtok.pyramid.energy.laplacian_energy` dispatch here (see :mod:`.dispatch`) and fall
back to the pure-torch path, which stays the reference. ``PYRTOK_DISABLE_TRITON=1`` forces the
torch path.
"""
