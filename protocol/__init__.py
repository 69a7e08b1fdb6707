"""syncd's wire protocol, sans-IO.

Bytes in, events out; messages in, bytes out. Nothing here touches files, sockets or
event loops, and nothing here imports `syncd`. SPEC.md in this directory is normative;
vectors/ holds golden encodings that the tests replay byte for byte.
"""

from protocol.errors import ErrorCode, ProtocolError
from protocol.limits import DEFAULT_LIMITS, Limits

__all__ = ["DEFAULT_LIMITS", "ErrorCode", "Limits", "ProtocolError"]
