"""`python -m config.bench S|L`: see config/bench/__init__.py."""

import sys

from config.bench.harness import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
