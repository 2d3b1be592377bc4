"""Reaching the broker: TLS settings, the ways connecting fails, and URLs fit for logs.

Approach
--------
Failures come in two kinds a caller can tell apart: :class:`BrokerAuthError` (the
broker refused the user) and :class:`BrokerUnavailable` (the broker cannot be reached, or
the connection is gone), both a :class:`BrokerError`.  The AMQP password never reaches a
log line or an error text: :func:`mask_url` replaces it with ``***`` wherever a URL is
shown.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import yarl

__all__ = ["BrokerAuthError", "BrokerError", "BrokerUnavailable", "TlsOptions", "mask_url"]


class BrokerError(Exception):
    """The broker could not be used."""


class BrokerAuthError(BrokerError):
    """The broker refused the user name and password at connect."""

    def __init__(self, host: str, user: str, reason: str) -> None:
        super().__init__(f"broker {host} refused the login of user {user!r}: {reason}")
        self.host = host
        self.user = user


class BrokerUnavailable(BrokerError):
    """The broker cannot be reached, or the connection to it is gone."""


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***``, fit for logs and errors."""
    parsed = yarl.URL(url)
    return str(parsed.with_password("***")) if parsed.password else str(parsed)


@dataclass(frozen=True, slots=True)
class TlsOptions:
    """TLS settings for ``amqps://`` URLs.  Verification is on unless ``verify`` is False."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True

    def context(self) -> ssl.SSLContext:
        """Build the client context.

        Raises:
            OSError: a CA, certificate or key file cannot be read.
            ssl.SSLError: a file is not a valid certificate or key.
        """
        context = ssl.create_default_context(cafile=self.ca_file)
        if self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file)
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context
