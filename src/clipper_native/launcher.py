"""Console entry point ``clipper-frontend``: replaces this process with the native binary."""

import os
import sys

from clipper_native import frontend_binary


def main() -> None:
    binary = str(frontend_binary())
    if not os.access(binary, os.X_OK):
        sys.exit(f"clipper-frontend: the native binary is missing at {binary}; reinstall the package")
    os.execv(binary, [binary, *sys.argv[1:]])


if __name__ == "__main__":
    main()
