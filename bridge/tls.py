"""TLS for both sides of the bridge: the client context, and why a handshake failed.

An ``amis://`` target is reached over TLS with the certificate chain *and* the host name
always verified: :func:`tls_client_context` trusts the system's CAs plus an optional CA
bundle (``ami_ca_file``, or ``ca_file`` per server).  The URL's host is the name checked,
so connect by a name (or IP address) the server's certificate lists.  A failed
handshake is an :class:`~bridge.ami.errors.AmiConnectionError`, so the session retries
it with backoff; its text, from :func:`maybe_tls_failure`, names the target and why::

    TLS handshake with amis://bridge@pbx:5039 failed: certificate verification failed:
      unable to get local issuer certificate (CERTIFICATE_VERIFY_FAILED); the CA that
      signed the server's certificate is not trusted: configure its CA bundle
    ... certificate verification failed: Hostname mismatch, certificate is not valid
      for 'pbx' (CERTIFICATE_VERIFY_FAILED); the server's certificate does not list this
      host: connect by a name it lists
    ... WRONG_VERSION_NUMBER; the server does not speak TLS on this port

A CA, certificate or key file that cannot be read fails before any connection, with an
error that names the file.

The same context and wording serve ``amqps://`` brokers (:mod:`bridge.publish.broker`).
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["PathLike", "maybe_tls_failure", "tls_client_context"]

#: Why a certificate is refused, by OpenSSL verify code, in the operator's terms.
_VERIFY_HINTS = dict.fromkeys(
    # UNABLE_TO_GET_ISSUER_CERT, DEPTH_ZERO_SELF_SIGNED_CERT, SELF_SIGNED_CERT_IN_CHAIN,
    # UNABLE_TO_GET_ISSUER_CERT_LOCALLY, UNABLE_TO_VERIFY_LEAF_SIGNATURE
    (2, 18, 19, 20, 21),
    "the CA that signed the server's certificate is not trusted: configure its CA bundle",
) | dict.fromkeys(
    (62, 64),  # HOSTNAME_MISMATCH, IP_ADDRESS_MISMATCH
    "the server's certificate does not list this host: connect by a name it lists",
)
#: Handshake failures that are not about the certificate, by OpenSSL reason.
_REASON_HINTS = {
    "WRONG_VERSION_NUMBER": "the server does not speak TLS on this port",
    "UNSUPPORTED_PROTOCOL": "the server only offers a TLS version this client refuses",
}
PathLike = str | os.PathLike[str]


def tls_client_context(
    ca_file: PathLike | None = None,
    *,
    cert_file: PathLike | None = None,
    key_file: PathLike | None = None,
    verify: bool = True,
) -> ssl.SSLContext:
    """A client TLS context: the system's CAs plus ``ca_file``, host names checked.

    ``cert_file`` (and ``key_file``, when the key is not in it) is a client certificate;
    ``verify=False`` turns all checking off.

    Raises:
        OSError: a file cannot be read; the text names the file.
        ssl.SSLError: a file holds no usable certificate or key; the text names it.
    """
    with _naming(ca_file):
        context = ssl.create_default_context(cafile=ca_file)
    if cert_file is not None:
        with _naming(cert_file):
            context.load_cert_chain(cert_file, key_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


@contextmanager
def _naming(path: PathLike | None) -> Iterator[None]:
    """Re-raise a file error with the file's name: OpenSSL's own text leaves it out."""
    try:
        yield
    except ssl.SSLError as exc:
        detail = exc.reason or exc.strerror or str(exc)
        raise ssl.SSLError(exc.errno, f"no usable certificate or key in {path}: {detail}") from None
    except OSError as exc:
        raise type(exc)(f"cannot read {path}: {exc.strerror or exc}") from None


def maybe_tls_failure(error: BaseException) -> str | None:
    """Why a TLS handshake failed, in one line, if ``error`` or its cause is a TLS error.

    A library that wraps the :class:`ssl.SSLError` (``raise ... from exc``) is seen
    through.  ``None`` when no TLS error is involved.
    """
    cause = _ssl_cause(error)
    if cause is None:
        return None
    reason = cause.reason or type(cause).__name__
    if isinstance(cause, ssl.SSLCertVerificationError):
        why = (cause.verify_message or "").rstrip(".") or "unknown reason"
        text = f"certificate verification failed: {why} ({reason})"
        hint = _VERIFY_HINTS.get(cause.verify_code)
    else:
        text = cause.reason or cause.strerror or str(cause) or reason
        hint = _REASON_HINTS.get(reason)
    return f"{text}; {hint}" if hint else text


def _ssl_cause(error: BaseException) -> ssl.SSLError | None:
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return cause
        cause = cause.__cause__
    return None
