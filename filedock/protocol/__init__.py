"""The filedock wire protocol, pure: no socket, no asyncio, no ``os``.

:mod:`.codes` spells the error codes; :mod:`.messages` the requests, replies,
records and the command table, with their encoders and parsers. Both sides
import from here.
"""

from .codes import CLOSING_CODES as CLOSING_CODES
from .codes import ErrorCode as ErrorCode
from .messages import *  # noqa: F403
