"""``python3 -m filedock server …`` / ``python3 -m filedock client …``."""

import sys

from .cli import main

sys.exit(main())
