"""Where the bridge connects: ``ami://user@host:5038`` or ``amis://user@host:5039``.

Approach: the URL names the user, host, port and whether TLS is on, and nothing else.
The AMI secret never travels in the URL, because URLs end up in logs, process lists and
metrics labels; a URL with a password is refused, and the error text leaves it out.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

__all__ = ["DEFAULT_PORT", "DEFAULT_TLS_PORT", "AmiTarget", "parse_ami_url"]

#: Asterisk's ``DEFAULT_MANAGER_PORT`` and ``DEFAULT_MANAGER_TLS_PORT``.
DEFAULT_PORT = 5038
DEFAULT_TLS_PORT = 5039

_SCHEMES = {"ami": False, "amis": True}


@dataclass(frozen=True, slots=True)
class AmiTarget:
    """One AMI endpoint and the user to log in as.  Holds no secret."""

    user: str
    host: str
    port: int
    tls: bool = False

    def __str__(self) -> str:
        scheme = "amis" if self.tls else "ami"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{self.user}@{host}:{self.port}"


def parse_ami_url(url: str) -> AmiTarget:
    """Parse ``ami://user@host[:port]`` (plain TCP) or ``amis://user@host[:port]`` (TLS).

    The port defaults to 5038 for ``ami`` and 5039 for ``amis``.

    Raises:
        ValueError: the scheme is not ``ami``/``amis``, the user or host is missing, the
            port is invalid, the URL has a path, query or fragment, or it holds a
            password (the secret belongs in the secret setting; the message never
            repeats it).
    """
    parts = urlsplit(url.strip())
    # Checked first: every later message may quote parts of the URL.
    if parts.password is not None:
        raise ValueError(
            "the AMI URL must not contain a password: remove it from the URL and give the "
            "secret through the AMI secret setting instead"
        )
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ValueError(f"AMI URL scheme must be 'ami' or 'amis', got {parts.scheme!r}")
    tls = _SCHEMES[scheme]
    if not parts.username:
        raise ValueError("the AMI URL must name the user: ami://user@host:5038")
    if not parts.hostname:
        raise ValueError("the AMI URL must name the host: ami://user@host:5038")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("the AMI URL must not have a path, query or fragment")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid port in AMI URL: {exc}") from None
    if port == 0:
        raise ValueError("invalid port in AMI URL: 0")
    return AmiTarget(
        user=unquote(parts.username),
        host=parts.hostname,
        port=port if port is not None else (DEFAULT_TLS_PORT if tls else DEFAULT_PORT),
        tls=tls,
    )
