"""Needle v2 (issue #16): a needle task that needs full resolution, a frozen local reader whose
per-node outputs are cached once per scene, and every allocator on the same paired scenes.

Modules: :mod:`scenes` (the task, its fixed parameters), :mod:`reader` (the local token reader
and its cache), :mod:`controls` (oracle / anti-oracle scorers, hit rates), :mod:`arms` (the
allocators compared, one list entry each), :mod:`stats` (paired tests), :mod:`run` (the one
command), :mod:`report` (tables and figures). Import as ``needle_v2.<module>`` with
``benchmarks/`` on ``sys.path`` (``run.py`` does this itself).
"""
