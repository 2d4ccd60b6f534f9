"""The filedock wire protocol, pure: no socket, no asyncio, no ``os``.

:mod:`.codes` spells the error codes; :mod:`.framing` splits a byte stream
into lines and holds the limits; :mod:`.messages` the requests, replies,
records and the command table, with their encoders and parsers. Both sides
import from here.
"""

from .codes import CLOSING_CODES as CLOSING_CODES
from .codes import ErrorCode as ErrorCode
from .framing import *  # noqa: F403
from .messages import *  # noqa: F403
