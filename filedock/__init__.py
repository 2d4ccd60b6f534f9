"""filedock: a multi-client TCP file server and its client.

Use the client library from Python::

    import filedock

    with filedock.Client("127.0.0.1", 50000) as client:
        print(client.name, client.ping())
        for info in client.list():
            print(info.path, info.size)
        saved = client.get("sample.txt", "downloads")  # resumed, or skipped if there
        summary = client.mirror("docs", "docs-copy")   # fetch what is missing or different
        client.upload("notes.txt", "inbox/notes.txt")  # checked by the server, then placed

The README's "Use it from Python" has a longer example, and every method of
:class:`Client` shows one in its docstring.
"""

from .client.client import Client
from .client.pins import CertificateChanged, KnownServersError
from .client.remote_stat import FileStat
from .client.results import (
    Change,
    DownloadResult,
    Outcome,
    ProgressCallback,
    TransferProgress,
    TreeSummary,
    UploadOutcome,
    UploadResult,
    UploadSummary,
)
from .client.streaming import RemoteFile
from .client.upload import UnreadableFile
from .errors import (
    BadRange,
    BadRequest,
    Changed,
    ConnectionLost,
    Exists,
    FiledockError,
    Forbidden,
    IntegrityError,
    NoSpace,
    NotFound,
    ProtocolError,
    RequestError,
    SaveError,
    ServerClosing,
    ServerFull,
    TimedOut,
    TooLarge,
    UploadCorrupted,
    UploadTooLarge,
)
from .protocol import ClientRecord, FileDigest, FileInfo
from .version import __version__

__all__ = [
    "BadRange",
    "BadRequest",
    "CertificateChanged",
    "Change",
    "Changed",
    "Client",
    "ClientRecord",
    "ConnectionLost",
    "DownloadResult",
    "Exists",
    "FileDigest",
    "FileInfo",
    "FileStat",
    "FiledockError",
    "Forbidden",
    "IntegrityError",
    "KnownServersError",
    "NoSpace",
    "NotFound",
    "Outcome",
    "ProgressCallback",
    "ProtocolError",
    "RemoteFile",
    "RequestError",
    "SaveError",
    "ServerClosing",
    "ServerFull",
    "TimedOut",
    "TooLarge",
    "TransferProgress",
    "TreeSummary",
    "UnreadableFile",
    "UploadCorrupted",
    "UploadOutcome",
    "UploadResult",
    "UploadSummary",
    "UploadTooLarge",
    "__version__",
]
