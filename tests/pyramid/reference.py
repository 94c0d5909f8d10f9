"""Slow, obviously-correct NumPy references for REDUCE and EXPAND (one axis at a time)."""

import numpy as np

NUMPY_MODES = {
    "reflect": "reflect",
    "replicate": "edge",
    "circular": "wrap",
    "constant": "constant",
}


def _filter(padded: np.ndarray, taps: np.ndarray, count: int, step: int) -> np.ndarray:
    """``out[i] = sum_k taps[k] * padded[step * i + k]`` along the last axis."""
    out = np.zeros((*padded.shape[:-1], count))
    for i in range(count):
        out[..., i] = padded[..., step * i : step * i + len(taps)] @ taps
    return out


def reduce_last_axis(x: np.ndarray, taps: np.ndarray, border: str) -> np.ndarray:
    radius = len(taps) // 2
    widths = [(0, 0)] * (x.ndim - 1) + [(radius, radius)]
    padded = np.pad(x, widths, mode=NUMPY_MODES[border])
    return _filter(padded, taps, (x.shape[-1] + 1) // 2, 2)


def expand_last_axis(x: np.ndarray, size: int, taps: np.ndarray, border: str) -> np.ndarray:
    """Zero insertion + 2x taps. Beyond the edge: reflect-101 of the zero-inserted fine signal
    (OpenCV's pyrUp), the coarse samples' edge/wrap for replicate/circular, zeros for constant."""
    radius = len(taps) // 2
    if border == "reflect":
        # A 1-sample grid reflects onto itself: keep the zero-insertion pattern x0, 0, x0, ...
        stuffed = np.zeros((*x.shape[:-1], max(size, 2)))
        stuffed[..., ::2] = x
        widths = [(0, 0)] * (x.ndim - 1) + [(radius, radius)]
        padded = np.pad(stuffed, widths, mode="reflect" if size > 1 else "wrap")
        return _filter(padded, 2 * taps, size, 1)
    extra = radius // 2 + 1
    widths = [(0, 0)] * (x.ndim - 1) + [(extra, extra)]
    coarse = np.pad(x, widths, mode=NUMPY_MODES[border])
    stuffed = np.zeros((*x.shape[:-1], 2 * coarse.shape[-1]))
    stuffed[..., ::2] = coarse
    start = 2 * extra - radius
    return _filter(stuffed[..., start:], 2 * taps, size, 1)


def pyr_down_reference(x: np.ndarray, taps: np.ndarray, border: str) -> np.ndarray:
    rows = reduce_last_axis(np.swapaxes(x, -1, -2), taps, border)
    return reduce_last_axis(np.swapaxes(rows, -1, -2), taps, border)


def pyr_up_reference(
    x: np.ndarray, size: tuple[int, int], taps: np.ndarray, border: str
) -> np.ndarray:
    rows = expand_last_axis(np.swapaxes(x, -1, -2), size[0], taps, border)
    return expand_last_axis(np.swapaxes(rows, -1, -2), size[1], taps, border)
