"""The command line: the server's and the client's ``main``, the shell, the
one-shot commands and what they print."""

from .entry import client_main, main, server_main

__all__ = ["client_main", "main", "server_main"]
