"""Errors of the AMI layer, by blame and by layer.

``RemoteProtocolError`` blames the peer, ``LocalProtocolError`` blames us (an action we
were asked to build is illegal), and the connection errors blame the network or the
credentials.  Nothing here ever carries a secret in its text.
"""

from __future__ import annotations


class AmiError(Exception):
    """Base of every error raised by :mod:`bridge.ami`."""


class LocalProtocolError(AmiError):
    """We were asked to send something AMI cannot carry (CR or LF in a header, say)."""


class RemoteProtocolError(AmiError):
    """The peer sent something that is not AMI."""


class AmiConnectionError(AmiError):
    """The TCP or TLS connection failed, closed, or stopped answering."""


class LoginFailed(AmiError):
    """The server rejected our credentials.  Names the user and host, never the secret."""

    def __init__(self, user: str, host: str, message: str) -> None:
        super().__init__(f"AMI login as {user!r} on {host} failed: {message}")
        self.user = user
        self.host = host
        self.message = message


class ActionFailed(AmiError):
    """An action got ``Response: Error``."""


class ActionTimeout(AmiError):
    """No response to an action arrived before its deadline."""


#: Errors after which a session reconnects (with backoff) instead of giving up.
RETRYABLE: tuple[type[BaseException], ...] = (AmiConnectionError, RemoteProtocolError, OSError)
