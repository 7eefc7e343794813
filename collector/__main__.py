import sys

from collector.daemon import main

sys.exit(main())
