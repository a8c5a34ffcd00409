"""``python -m gatewayd``: run the daemon."""

import sys

from gatewayd.daemon import main

sys.exit(main())
