"""The websocket close codes the server sends, shared with the page (static/js/close-codes.json).

A code in FINAL tells the page that reconnecting cannot help, so it stops retrying.
"""

import json
from pathlib import Path

_CODES = json.loads((Path(__file__).resolve().parent.parent / "static" / "js" / "close-codes.json").read_text())

UNAUTHORIZED = _CODES["UNAUTHORIZED"]  # no credential, or another session's
FORBIDDEN = _CODES["FORBIDDEN"]  # a foreign origin, or not staff
UNKNOWN_SESSION = _CODES["UNKNOWN_SESSION"]  # no such session (for example deleted over the API)
FLOODING = _CODES["FLOODING"]  # kept flooding after rate_limited answers
FINAL = frozenset(_CODES["FINAL"])
