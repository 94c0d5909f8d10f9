"""``python -m pyrtok``: the same as the ``pyrtok`` command."""

from pyrtok.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
