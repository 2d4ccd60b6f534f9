"""``python3 -m filedock server …`` / ``python3 -m filedock client …``."""

import sys

from .cli.main import main

sys.exit(main())
