"""The ``pyrtok`` command line.

Each subcommand is one ``add_<name>_command(subparsers)`` function that registers its parser and
sets ``run`` to a function ``(args) -> exit code``; :data:`COMMANDS` lists them. Errors that come
from the user's input (``ValueError``, ``TypeError``, ``OSError``) print one line
``pyrtok: error: <message>`` to stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor

from pyrtok import __version__, band_energy, laplacian_pyramid, reconstruct
from pyrtok.allocation import (
    SCORERS,
    STRATEGIES,
    Allocation,
    QuadtreeGeometry,
    allocate,
    detokenize,
    tokenize,
)
from pyrtok.data import list_samples, load_image, load_sample
from pyrtok.pyramid.functional import Levels
from pyrtok.viz import LEVEL_COLOURS, allocation_figure, pyramid_montage, save_png

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


DEMO_MIN_PATCH, DEMO_MAX_PATCH = 16, 64
"""Quadtree patch sizes of the allocation ``pyrtok demo`` shows."""


def demo_budget(geometry: QuadtreeGeometry) -> int:
    """The feasible budget nearest to a quarter of full detail."""
    splits = round((geometry.full_budget / 4 - geometry.num_cells) / 3)
    return geometry.num_cells + 3 * min(max(splits, 0), geometry.max_splits)


def _allocation_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}_allocation.png")


def _print_allocation(image: Tensor, allocation: Allocation) -> None:
    """Tokens per pyramid level (with the overlay colours) and the reconstruction PSNR."""
    geometry = allocation.geometry
    counts = allocation.level_counts()[0].tolist()
    height, width = geometry.padded_size
    print(f"{'level':>5}  {'size':>6}  {'tokens':>6}  {'area %':>6}  colour")
    for k, count in enumerate(counts):
        size = geometry.min_patch << k
        area = 100 * count * size * size / (height * width)
        colour = LEVEL_COLOURS[k % len(LEVEL_COLOURS)][0]
        print(f"{k:>5}  {size:>3} px  {count:>6}  {area:>6.1f}  {colour}")
    recon = detokenize(tokenize(image[None], allocation).tokens, allocation)
    mse = float((recon - image[None]).square().mean())
    psnr = 10 * math.log10(1 / mse) if mse > 0 else math.inf
    print(f"token reconstruction PSNR: {psnr:.2f} dB")


def run_demo(args: argparse.Namespace) -> int:
    """``pyrtok demo``: pyramid table, reconstruction error, montage PNG, allocation figure."""
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
    if min(height, width) < DEMO_MAX_PATCH:
        print(f"allocation: skipped, the image is smaller than {DEMO_MAX_PATCH} px")
        return 0
    geometry = QuadtreeGeometry.create(height, width, DEMO_MIN_PATCH, DEMO_MAX_PATCH)
    budget = demo_budget(geometry)
    allocation = allocate(image[None], budget, DEMO_MIN_PATCH, DEMO_MAX_PATCH)
    print(f"\nallocation: {budget} tokens (about a quarter of full detail), greedy + laplacian")
    _print_allocation(image, allocation)
    figure = save_png(allocation_figure(image, allocation), _allocation_path(args.out))
    print(f"allocation figure (original | leaves by level | reconstruction): {figure.resolve()}")
    return 0


def add_demo_command(subparsers: Subparsers[argparse.ArgumentParser]) -> None:
    """Register ``pyrtok demo [IMAGE] [--levels N] [--out PATH]``."""
    parser = subparsers.add_parser(
        "demo",
        help="Laplacian pyramid of an image: energy per level and a montage PNG",
        description=(
            "Build the Laplacian pyramid of an image, print each level's share of the energy "
            "and the reconstruction error, and write a montage of the levels as a PNG. Then "
            "allocate about a quarter of full-detail tokens (16..64 px leaves), print the "
            "tokens per level and write the allocation figure."
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
        help="montage PNG to write (default: ./pyrtok_demo.png); the allocation figure goes "
        "next to it as NAME_allocation.png",
    )
    parser.set_defaults(run=run_demo)


def run_allocate(args: argparse.Namespace) -> int:
    """``pyrtok allocate``: per-level token table and the allocation figure PNG."""
    image, source = open_image(args.image)
    height, width = image.shape[-2:]
    allocation = allocate(
        image[None], args.budget, args.min_patch, args.max_patch, args.strategy, args.scorer
    )
    geometry = allocation.geometry
    print(f"image: {source}, {height}x{width}")
    print(
        f"allocation: {args.budget} tokens, {args.strategy} + {args.scorer}, min_patch "
        f"{args.min_patch}, max_patch {args.max_patch} ({geometry.num_cells} cells; feasible "
        f"budgets {geometry.num_cells} + 3*s up to {geometry.full_budget})"
    )
    _print_allocation(image, allocation)
    path = save_png(allocation_figure(image, allocation), args.out)
    print(f"figure (original | leaves by level | reconstruction): {path.resolve()}")
    return 0


def add_allocate_command(subparsers: Subparsers[argparse.ArgumentParser]) -> None:
    """Register ``pyrtok allocate IMAGE --budget N [--strategy S] [--scorer S] [--out PATH]``."""
    parser = subparsers.add_parser(
        "allocate",
        help="frequency-aware token allocation of an image: tokens per level and an overlay PNG",
        description=(
            "Give an image exactly --budget quadtree tokens, print how many land on each "
            "pyramid level, and write the original, the leaves coloured by level and the token "
            "reconstruction side by side as a PNG."
        ),
    )
    parser.add_argument(
        "image",
        metavar="IMAGE",
        help=f"image file (PNG, JPEG, GIF, WebP) or sample name: {', '.join(list_samples())}",
    )
    parser.add_argument("--budget", type=int, required=True, metavar="N", help="tokens")
    parser.add_argument("--strategy", choices=STRATEGIES, default="greedy")
    parser.add_argument("--scorer", choices=list(SCORERS), default="laplacian")
    parser.add_argument("--min-patch", type=int, default=16, metavar="P")
    parser.add_argument("--max-patch", type=int, default=64, metavar="P")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("pyrtok_allocation.png"),
        metavar="PATH",
        help="figure PNG to write (default: ./pyrtok_allocation.png)",
    )
    parser.set_defaults(run=run_allocate)


COMMANDS: tuple[Callable[[Subparsers[argparse.ArgumentParser]], None], ...] = (
    add_demo_command,
    add_allocate_command,
)
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
