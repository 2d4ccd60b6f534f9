"""Text from an untrusted peer, made safe to print on a terminal.

A server chooses names, paths, reasons and error texts; printed as they are,
control characters in them would drive the terminal (``ESC ]0;…`` retitles
it, ``ESC [2J`` clears it, the 8-bit ``CSI`` U+009B does the same on many
terminals) and bidirectional controls would reorder what a person reads
(``invoice<U+202E>fdp.exe`` shows as ``invoiceexe.pdf``). :func:`printable`
shows each of them as an escape instead. TAB is kept: it only moves the
cursor right, and the tables use it.
"""

from __future__ import annotations

# C0 controls but TAB, DEL, and the C1 controls (CSI, OSC, NEL, …).
_CONTROLS = (*range(0x00, 0x09), *range(0x0A, 0x20), *range(0x7F, 0xA0))
# Characters that change the order or direction text is shown in, and the
# Unicode line and paragraph separators, which some terminals take as a new line.
_LAYOUT = (
    0x061C,  # ARABIC LETTER MARK
    0x200E,  # LEFT-TO-RIGHT MARK
    0x200F,  # RIGHT-TO-LEFT MARK
    *range(0x202A, 0x202F),  # LRE, RLE, PDF, LRO, RLO
    *range(0x2066, 0x206A),  # LRI, RLI, FSI, PDI
    0x2028,  # LINE SEPARATOR
    0x2029,  # PARAGRAPH SEPARATOR
)


def _escape(code: int) -> str:
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


_ESCAPES = {code: _escape(code) for code in (*_CONTROLS, *_LAYOUT)}


def printable(text: str) -> str:
    """``text`` with control and bidirectional characters shown as escapes.

    >>> printable("a\\x1b[2Jb\\u202efdp.exe")
    'a\\\\x1b[2Jb\\\\u202efdp.exe'
    """
    return text.translate(_ESCAPES)


def is_inert(text: str) -> bool:
    """Whether printing ``text`` as it is cannot drive the terminal or reorder it."""
    return printable(text) == text
