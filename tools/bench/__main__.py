"""`python -m tools.bench S|L`: see tools/bench/__init__.py."""

import sys

from tools.bench.harness import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
