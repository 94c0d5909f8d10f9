"""The ``pyrtok`` command line.

Each subcommand is one ``add_<name>_command(subparsers)`` function that registers its parser and
sets ``run`` to a function ``(args) -> exit code``; :data:`COMMANDS` lists them. Errors that come
from the user's input (``ValueError``, ``TypeError``, ``OSError``) print one line
``pyrtok: error: <message>`` to stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from pyrtok import __version__, band_energy, laplacian_pyramid, reconstruct
from pyrtok.data import list_samples, load_image, load_sample
from pyrtok.pyramid.functional import Levels
from pyrtok.viz import pyramid_montage, save_png

Subparsers = argparse._SubParsersAction  # the object add_subparsers() returns


def _levels(text: str) -> Levels:
    """``--levels`` value: an int or ``auto`` (range checks are the pyramid's job)."""
    if text == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'auto', got {text!r}") from None


def open_image(spec: str) -> tuple[Tensor, str]:
    """Load ``spec``: an image file, or else an embedded sample name.

    Returns:
        ``(3, H, W)`` float32 image in ``[0, 1]`` and a description of where it came from.
    """
    if spec in list_samples() and not Path(spec).exists():
        return load_sample(spec), f"{spec} (embedded sample)"
    try:
        return load_image(spec), spec
    except FileNotFoundError:
        raise FileNotFoundError(
            f"IMAGE: no such file or sample: '{spec}' (samples: {', '.join(list_samples())})"
        ) from None


def run_demo(args: argparse.Namespace) -> int:
    """``pyrtok demo``: pyramid table, reconstruction error and a montage PNG."""
    image, source = open_image(args.image)
    pyramid = laplacian_pyramid(image, levels=args.levels)
    height, width = image.shape[-2:]
    energy = band_energy(pyramid, patch_size=max(height, width)).flatten()
    share = 100 * energy / energy.sum()
    error = float((reconstruct(pyramid) - image).abs().max())

    print(f"image: {source}, {height}x{width}, {len(pyramid)} levels")
    print(f"{'level':>5}  {'kind':<8}  {'shape':>9}  {'energy %':>8}")
    for k, level in enumerate(pyramid):
        kind = "residual" if k == len(pyramid) - 1 else "band"
        shape = f"{level.shape[-2]}x{level.shape[-1]}"
        print(f"{k:>5}  {kind:<8}  {shape:>9}  {float(share[k]):>8.3f}")
    print(f"reconstruction max error: {error:.2e}")
    path = save_png(pyramid_montage(pyramid), args.out)
    print(f"montage: {path.resolve()}")
    return 0


def add_demo_command(subparsers: Subparsers[argparse.ArgumentParser]) -> None:
    """Register ``pyrtok demo [IMAGE] [--levels N] [--out PATH]``."""
    parser = subparsers.add_parser(
        "demo",
        help="Laplacian pyramid of an image: energy per level and a montage PNG",
        description=(
            "Build the Laplacian pyramid of an image, print each level's share of the energy "
            "and the reconstruction error, and write a montage of the levels as a PNG."
        ),
    )
    parser.add_argument(
        "image",
        nargs="?",
        default="astronaut",
        metavar="IMAGE",
        help=f"image file (PNG, JPEG, GIF, WebP) or sample name: {', '.join(list_samples())} "
        "(default: astronaut)",
    )
    parser.add_argument(
        "--levels",
        type=_levels,
        default=4,
        metavar="N",
        help="pyramid levels, bands + residual, or 'auto' (default: 4)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("pyrtok_demo.png"),
        metavar="PATH",
        help="montage PNG to write (default: ./pyrtok_demo.png)",
    )
    parser.set_defaults(run=run_demo)


COMMANDS: tuple[Callable[[Subparsers[argparse.ArgumentParser]], None], ...] = (add_demo_command,)
"""Subcommand registrars, in ``--help`` order; add new subcommands here."""


def build_parser() -> argparse.ArgumentParser:
    """The ``pyrtok`` argument parser with every subcommand in :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(
        prog="pyrtok", description="Pyramid-based visual-token allocation for VLMs."
    )
    parser.add_argument("--version", action="version", version=f"pyrtok {__version__}")
    subparsers = parser.add_subparsers(metavar="COMMAND", required=True)
    for add_command in COMMANDS:
        add_command(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``pyrtok`` command with ``argv`` (default: ``sys.argv[1:]``).

    Returns:
        The exit status: 0 on success, 2 for bad usage or bad input.

    Examples:
        >>> main(["--version"])
        pyrtok 0.1.0
        0
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and usage errors
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        with torch.inference_mode():
            status: int = args.run(args)
    except (ValueError, TypeError, OSError) as error:
        print(f"pyrtok: error: {error}", file=sys.stderr)
        return 2
    return status
