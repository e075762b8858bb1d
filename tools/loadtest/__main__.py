import sys

from tools.loadtest.runner import main

sys.exit(main())
