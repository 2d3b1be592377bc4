"""Logging in to AMI: the MD5 challenge (or a plain secret), then ``Login`` with the event mask.

Approach
--------
With ``md5`` the secret never crosses the wire: ``Challenge`` returns a token and
``Login`` carries ``md5(token + secret)`` as its ``Key``.  With ``plain`` the secret is
sent as ``Secret``, which only a TLS connection keeps private.  ``Login`` also carries
``Events``, the event mask for the session.  Any refusal (of the challenge or of the
credentials) becomes :class:`~bridge.ami.errors.LoginFailed` with the server's message.

The secret is read from its source at each login (a callable source is asked again on
every reconnect) and is never logged, stored in a repr, or put in an error.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Literal

from pydantic import SecretStr

from bridge.ami.actions import ActionResult
from bridge.ami.client import AmiConnection
from bridge.ami.errors import LocalProtocolError, LoginFailed

__all__ = ["AuthMethod", "SecretSource", "log_in", "reveal_secret"]

AuthMethod = Literal["md5", "plain"]
#: The AMI secret: a pydantic ``SecretStr`` or a callable asked at each login.
SecretSource = SecretStr | Callable[[], str]


def reveal_secret(source: SecretSource) -> str:
    """The secret's current value, read from ``source`` now."""
    return source.get_secret_value() if isinstance(source, SecretStr) else source()


async def log_in(
    conn: AmiConnection,
    secret: SecretSource,
    *,
    auth: AuthMethod,
    events: str,
    timeout: float,  # noqa: ASYNC109 - the deadline of each action, part of its result
) -> None:
    """Authenticate on ``conn`` as ``conn.target.user`` and set the event mask ``events``.

    Each action (``Challenge``, ``Login``) may take up to ``timeout`` seconds.

    Raises:
        LoginFailed: the server refused the challenge or the credentials, or the
            secret cannot be sent.
        AmiConnectionError, ActionTimeout: the connection failed meanwhile.
    """
    target = conn.target
    # host:port, as two PBXs may share a host.
    user, host = target.user, str(target).partition("@")[2]
    password = reveal_secret(secret)
    headers: list[tuple[str, str]]
    if auth == "md5":
        challenge = await conn.send_action("Challenge", [("AuthType", "MD5")], timeout=timeout)
        token = challenge.response.get("Challenge")
        if not challenge.ok or not token:
            raise LoginFailed(user, host, f"MD5 challenge refused: {_message(challenge)}")
        digest = hashlib.md5((token + password).encode(), usedforsecurity=False)
        headers = [("AuthType", "MD5"), ("Username", user), ("Key", digest.hexdigest())]
    else:
        headers = [("Username", user), ("Secret", password)]
    headers.append(("Events", events))
    try:
        result = await conn.send_action("Login", headers, timeout=timeout)
    except LocalProtocolError:
        raise LoginFailed(user, host, "a login header holds CR or LF") from None
    if result.response.status.lower() != "success":
        raise LoginFailed(user, host, _message(result))


def _message(result: ActionResult) -> str:
    return result.response.get("Message") or f"Response: {result.response.status}"
