"""``python -m nas.kernels``: compile the native kernels for this machine, print the library."""

from __future__ import annotations

import sys

from nas.kernels import build


def main() -> int:
    try:
        print(build())
    except RuntimeError as e:
        print(f"native kernels not built ({e}); the XLA formulations will be used", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
