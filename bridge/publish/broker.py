"""Reaching the broker: TLS settings, the ways connecting fails, and URLs fit for logs.

Approach
--------
Failures come in two kinds a caller can tell apart: :class:`BrokerRefused` (the broker
answered and refused the user, the virtual host or a permission; :class:`BrokerAuthError`
for the login) and :class:`BrokerUnavailable` (the broker cannot be reached, or the
connection is gone), both a :class:`BrokerError`.  The AMQP password never reaches a
log line or an error text: :func:`mask_url` replaces it with ``***`` wherever a URL is
shown, and :func:`scrub` removes it from any text a library produced.

TLS
---
An ``amqps://`` URL connects over TLS with :class:`TlsOptions`: the system's CAs plus
``ca_file`` (``amqp_ca_file``), the certificate chain and the URL's host name verified
unless ``verify`` is off (``amqp_tls_verify``), and an optional client certificate
(``cert_file``, ``key_file``) for brokers that ask for one.  A handshake that fails is a
:class:`BrokerUnavailable`, retried with backoff like any outage, and says why::

    broker amqps://bridge:***@rabbitmq:5671/ unavailable: TLS handshake failed:
      certificate verification failed: unable to get local issuer certificate
      (CERTIFICATE_VERIFY_FAILED); the CA that signed the server's certificate is not
      trusted: configure its CA bundle
    ... certificate verification failed: Hostname mismatch, certificate is not valid for
      'rabbitmq' (CERTIFICATE_VERIFY_FAILED); the server's certificate does not list
      this host: connect by a name it lists

A CA, certificate or key file that cannot be read is not an outage: building the
context raises :class:`OSError` (or :class:`ssl.SSLError`) naming the file.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from urllib.parse import quote

import yarl

from bridge.tls import maybe_tls_failure, tls_client_context

__all__ = [
    "BrokerAuthError",
    "BrokerError",
    "BrokerRefused",
    "BrokerUnavailable",
    "TlsOptions",
    "describe_failure",
    "mask_url",
    "scrub",
]


class BrokerError(Exception):
    """The broker could not be used."""


class BrokerRefused(BrokerError):
    """The broker answered and said no: a permission, the virtual host, the credentials.

    Retrying does not help until an operator changes something; at start the bridge exits
    with code 2 (``amqp_on_auth_failure=exit``), later it retries with backoff.
    """


class BrokerAuthError(BrokerRefused):
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


def scrub(text: str, url: str) -> str:
    """``text`` with the password of ``url`` replaced by ``***``, as typed or URL-encoded."""
    parsed = yarl.URL(url)
    forms = {parsed.password, parsed.raw_password, quote(parsed.password or "", safe="")}
    for form in sorted(filter(None, forms), key=len, reverse=True):
        text = text.replace(form, "***")
    return text


def describe_failure(error: BaseException, url: str) -> str:
    """Why using the broker at ``url`` failed, in one line, without its password."""
    tls_failure = maybe_tls_failure(error)
    if tls_failure is not None:
        return f"TLS handshake failed: {tls_failure}"
    return scrub(str(error) or type(error).__name__, url)


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
            OSError: a CA, certificate or key file cannot be read; the text names it.
            ssl.SSLError: a file is not a valid certificate or key; the text names it.
        """
        return tls_client_context(
            self.ca_file,
            cert_file=self.cert_file or None,
            key_file=self.key_file or None,
            verify=self.verify,
        )
