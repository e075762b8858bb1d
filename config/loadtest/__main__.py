import sys

from config.loadtest.runner import main

sys.exit(main())
