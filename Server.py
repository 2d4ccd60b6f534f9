"""Start the filedock server: ``python3 Server.py [options]`` (see --help)."""

import sys

from filedock.cli import server_main

if __name__ == "__main__":
    sys.exit(server_main())
