"""The version of filedock, and how the server names itself."""

__version__ = "1.0.0"

SERVER_NAME = "filedock"


def server_banner() -> str:
    """``filedock 1.0.0``: what WELCOME and ABOUT carry, and the server prints at start."""
    return f"{SERVER_NAME} {__version__}"
