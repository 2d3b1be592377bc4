"""Certificates for TLS tests: a throwaway CA, server certificates it signs, and their files.

Everything comes from ``trustme`` and lives in memory or in the test's own directory, so
no test depends on a certificate that expires or on the machine's trust store.  A second
:class:`TestCa` is the "wrong CA" a client must refuse; a certificate issued for
``pbx.example`` is the "wrong host name" one.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

__all__ = ["LOOPBACK_NAMES", "ServerCert", "TestCa"]

#: The names a loopback server's certificate carries unless told otherwise.
LOOPBACK_NAMES = ("127.0.0.1", "localhost")


@dataclass(frozen=True, slots=True)
class ServerCert:
    """A server certificate on disk: the chain (leaf first) and its private key."""

    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        """A server-side context that presents this certificate."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


class TestCa:
    """A certificate authority of its own, with its certificate written to ``ca_file``."""

    __test__ = False  # a helper class, not a pytest test class

    def __init__(self, directory: Path, name: str = "ca") -> None:
        self._ca = trustme.CA()
        self._directory = directory
        self._name = name
        self.ca_file = directory / f"{name}.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_file))

    def issue(self, *hosts: str) -> ServerCert:
        """A server certificate for ``hosts`` (default: 127.0.0.1 and localhost), on disk."""
        names = hosts or LOOPBACK_NAMES
        leaf = self._ca.issue_cert(*names)
        stem = f"{self._name}-{'-'.join(names)}"
        cert_file = self._directory / f"{stem}.crt"
        key_file = self._directory / f"{stem}.key"
        cert_file.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(key_file))
        return ServerCert(cert_file, key_file)

    def server_context(self, *hosts: str) -> ssl.SSLContext:
        """A server-side context presenting a fresh certificate for ``hosts``."""
        return self.issue(*hosts).server_context()
