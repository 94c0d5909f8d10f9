"""The taps type shared by :mod:`.dispatch`, :mod:`.autograd` and :mod:`.launch`.

It lives apart so that none of them imports another just for a type (they would import each
other in a circle).
"""

SymTaps = tuple[float, float, float]
"""Symmetric taps ``(W0, W1, W2)`` of the 5-tap kernel ``W0, W1, W2, W1, W0``."""
