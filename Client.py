"""Start the filedock client: ``python3 Client.py [options]`` (see --help)."""

import sys

from filedock.cli import client_main

if __name__ == "__main__":
    sys.exit(client_main())
