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
from pyrtok.viz import (
    LEVEL_COLOURS,
    allocation_figure,
    check_image_path,
    fit,
    pyramid_montage,
    save_image,
    shrink,
    titled,
)

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
    splits = round((geometry.full_budget / 4 - geometry.min_budget) / 3)
    return geometry.min_budget + 3 * min(max(splits, 0), geometry.max_splits)


FIGURE_MAX_SIDE = 2048
"""Longest side, in px, of the figures the commands write; larger ones are shown scaled."""

DEMO_MAX_SIDE = 2048
"""``pyrtok demo`` first shrinks images with a longer side than this to it (bounded memory)."""

OUT_HELP = (
    "The format follows the extension: .png, .jpg/.jpeg or .webp. "
    f"Figures are at most {FIGURE_MAX_SIDE} px on their longer side: larger ones are drawn "
    "scaled, the scale in the title"
)


def _allocation_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}_allocation{out.suffix}")


def _short(source: str) -> str:
    """A figure title's name for an :func:`open_image` source: the file name, not its path."""
    return source if source.endswith("(embedded sample)") else Path(source).name


def _shown(scale: float) -> str:
    return f" (shown at {scale:.0%})" if scale < 1 else ""


def _save_figure(draw: Callable[[float], Tensor], size: tuple[int, int], path: Path) -> str:
    """Draw the figure whose content is ``size`` at scale 1 so that it fits
    :data:`FIGURE_MAX_SIDE`, save it, and describe where it went and at what scale."""
    figure, scale = fit(draw, FIGURE_MAX_SIDE, min(1.0, FIGURE_MAX_SIDE / max(size)))
    note = f" (drawn at {scale:.0%} to fit {FIGURE_MAX_SIDE} px)" if scale < 1 else ""
    return f"{save_image(figure, path).resolve()}{note}"


def _print_allocation(image: Tensor, allocation: Allocation) -> float:
    """Print tokens per pyramid level (with the overlay colours) and the reconstruction PSNR.

    Returns:
        The PSNR in dB.
    """
    geometry = allocation.geometry
    counts = allocation.level_counts()[0].tolist()
    boxes, levels = allocation.boxes[0], allocation.leaf_level[0]
    # Leaves on the bottom/right edge may reach past the image: count their part inside.
    inside = (boxes[:, :2] + boxes[:, 2:]).clamp(max=boxes.new_tensor(image.shape[-2:]))
    areas = (inside - boxes[:, :2]).prod(dim=1)
    print(f"{'level':>5}  {'size':>6}  {'tokens':>6}  {'area %':>6}  colour")
    for k, count in enumerate(counts):
        size = geometry.min_patch << k
        area = 100 * int(areas[levels == k].sum()) / (geometry.height * geometry.width)
        colour = LEVEL_COLOURS[k % len(LEVEL_COLOURS)][0]
        print(f"{k:>5}  {size:>3} px  {count:>6}  {area:>6.1f}  {colour}")
    recon = detokenize(tokenize(image[None], allocation).tokens, allocation)
    mse = float((recon - image[None]).square().mean())
    psnr = 10 * math.log10(1 / mse) if mse > 0 else math.inf
    print(f"token reconstruction PSNR: {psnr:.2f} dB")
    return psnr


def _allocation_figure(image: Tensor, allocation: Allocation, title: str, path: Path) -> str:
    """Save the labelled allocation figure of ``image`` with ``title`` (and its scale)."""

    def draw(scale: float) -> Tensor:
        figure = allocation_figure(image, allocation, labels=True, scale=scale)
        return titled(figure, f"{title}{_shown(scale)}")

    return _save_figure(draw, (image.shape[-2], 3 * image.shape[-1] + 8), path)


def run_demo(args: argparse.Namespace) -> int:
    """``pyrtok demo``: pyramid table, reconstruction error, montage, allocation figure."""
    montage_path = check_image_path(args.out)
    figure_path = check_image_path(_allocation_path(montage_path))
    image, source = open_image(args.image)
    name = _short(source)
    height, width = image.shape[-2:]
    image = shrink(image, min(1.0, DEMO_MAX_SIDE / max(height, width)))
    size = f"{height}x{width}"
    if image.shape[-2:] != (height, width):
        height, width = image.shape[-2:]
        size += f", shrunk to {height}x{width} (the demo's limit: {DEMO_MAX_SIDE} px)"
    pyramid = laplacian_pyramid(image, levels=args.levels)
    energy = band_energy(pyramid, patch_size=max(height, width)).flatten()
    share = 100 * energy / energy.sum()
    error = float((reconstruct(pyramid) - image).abs().max())

    print(f"image: {source}, {size}, {len(pyramid)} levels")
    print(f"{'level':>5}  {'kind':<8}  {'shape':>9}  {'energy %':>8}")
    for k, level in enumerate(pyramid):
        kind = "residual" if k == len(pyramid) - 1 else "band"
        shape = f"{level.shape[-2]}x{level.shape[-1]}"
        print(f"{k:>5}  {kind:<8}  {shape:>9}  {float(share[k]):>8.3f}")
    print(f"reconstruction max error: {error:.2e}")

    def montage(scale: float) -> Tensor:
        title = f"Laplacian pyramid of {name}, {size}: {len(pyramid)} levels{_shown(scale)}"
        return titled(pyramid_montage(pyramid, labels=True, scale=scale), title)

    column = pyramid[1].shape[-1] if len(pyramid) > 1 else 0
    print(f"montage: {_save_figure(montage, (height, width + column), montage_path)}")
    if min(height, width) < DEMO_MAX_PATCH:
        print(f"allocation: skipped, the image is smaller than {DEMO_MAX_PATCH} px")
        return 0
    geometry = QuadtreeGeometry.create(height, width, DEMO_MIN_PATCH, DEMO_MAX_PATCH)
    budget = demo_budget(geometry)
    allocation = allocate(image[None], budget, DEMO_MIN_PATCH, DEMO_MAX_PATCH)
    print(f"\nallocation: {budget} tokens (about a quarter of full detail), greedy + laplacian")
    psnr = _print_allocation(image, allocation)
    title = f"{name}, {size}: {budget} tokens, greedy + laplacian, PSNR {psnr:.2f} dB"
    figure = _allocation_figure(image, allocation, title, figure_path)
    print(f"allocation figure (original | leaves by level | reconstruction): {figure}")
    return 0


def add_demo_command(subparsers: Subparsers[argparse.ArgumentParser]) -> None:
    """Register ``pyrtok demo [IMAGE] [--levels N] [--out PATH]``."""
    parser = subparsers.add_parser(
        "demo",
        help="Laplacian pyramid of an image: energy per level and a montage image",
        description=(
            "Build the Laplacian pyramid of an image, print each level's share of the energy "
            "and the reconstruction error, and write a labelled montage of the levels. Then "
            "allocate about a quarter of full-detail tokens (16..64 px leaves), print the "
            "tokens per level and write the allocation figure with its colour key. Images "
            f"larger than {DEMO_MAX_SIDE} px on the longer side are first shrunk to "
            f"{DEMO_MAX_SIDE} px, which bounds the memory used (pyrtok allocate works at full "
            "size)."
        ),
    )
    parser.add_argument(
        "image",
        nargs="?",
        default="astronaut",
        metavar="IMAGE",
        help=f"image file (PNG, JPEG, GIF, WebP) or sample name: {', '.join(list_samples())} "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--levels",
        type=_levels,
        default=4,
        metavar="N",
        help="pyramid levels, bands + residual, or 'auto' (default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("pyrtok_demo.png"),
        metavar="PATH",
        help="montage to write (default: %(default)s); the allocation figure goes next to it "
        "as NAME_allocation.EXT. " + OUT_HELP,
    )
    parser.set_defaults(run=run_demo)


def run_allocate(args: argparse.Namespace) -> int:
    """``pyrtok allocate``: per-level token table and the allocation figure."""
    path = check_image_path(args.out)
    image, source = open_image(args.image)
    name = _short(source)
    height, width = image.shape[-2:]
    allocation = allocate(
        image[None], args.budget, args.min_patch, args.max_patch, args.strategy, args.scorer
    )
    geometry = allocation.geometry
    print(f"image: {source}, {height}x{width}")
    print(
        f"allocation: {args.budget} tokens, {args.strategy} + {args.scorer}, min_patch "
        f"{args.min_patch}, max_patch {args.max_patch} ({geometry.min_budget} root tokens; "
        f"feasible budgets {geometry.min_budget} + 3*s up to {geometry.full_budget})"
    )
    psnr = _print_allocation(image, allocation)
    title = (
        f"{name}, {height}x{width}: {args.budget} tokens, {args.strategy} + {args.scorer}, "
        f"PSNR {psnr:.2f} dB"
    )
    figure = _allocation_figure(image, allocation, title, path)
    print(f"figure (original | leaves by level | reconstruction): {figure}")
    return 0


def add_allocate_command(subparsers: Subparsers[argparse.ArgumentParser]) -> None:
    """Register ``pyrtok allocate IMAGE --budget N [--strategy S] [--scorer S] [--out PATH]``."""
    parser = subparsers.add_parser(
        "allocate",
        help="frequency-aware token allocation of an image: tokens per level and an overlay PNG",
        description=(
            "Give an image exactly --budget quadtree tokens, print how many land on each "
            "pyramid level, and write the original, the leaves coloured by level and the token "
            "reconstruction side by side, with a colour key. Works at the image's full size: "
            "memory grows with it (about 2.7 GB for 5000x5000)."
        ),
    )
    parser.add_argument(
        "image",
        metavar="IMAGE",
        help=f"image file (PNG, JPEG, GIF, WebP) or sample name: {', '.join(list_samples())}",
    )
    parser.add_argument("--budget", type=int, required=True, metavar="N", help="tokens (required)")
    parser.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="greedy",
        help="how the tokens are shared out (default: %(default)s)",
    )
    parser.add_argument(
        "--scorer",
        choices=list(SCORERS),
        default="laplacian",
        help="how a region's detail is measured (default: %(default)s)",
    )
    parser.add_argument(
        "--min-patch",
        type=int,
        default=16,
        metavar="P",
        help="smallest leaf side in px (default: %(default)s)",
    )
    parser.add_argument(
        "--max-patch",
        type=int,
        default=64,
        metavar="P",
        help="cell side in px, min-patch * 2**k (default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("pyrtok_allocation.png"),
        metavar="PATH",
        help="figure to write (default: %(default)s). " + OUT_HELP,
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
