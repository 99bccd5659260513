"""How a connection's requests reach its destination: the ``network:`` block of a connection.

Any connection, of any plugin, may say through which proxy its requests go, which CAs and
client certificate its TLS uses, how long an attempt may take and how long retries may go
on. :class:`NetworkSettings` is that block resolved (``${env:…}``/``${file:…}`` references
read, files loaded), as :class:`segship.destination.ConnectionContext` hands it to
:class:`segship.http.HttpClient`; every field has a default, so a connection without the
block, or a plugin's own client, gets the same behaviour as one that writes it out.

Resolution happens when a run needs the connection (as for its settings): an unreadable
CA file or a key that doesn't match its certificate is then an error naming the setting
and its place, never the key.
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from segship.secrets import SecretResolutionError, has_reference, redactor, resolve

DEFAULT_CONNECT_SECONDS = 10.0
DEFAULT_READ_SECONDS = 60.0
DEFAULT_MAX_ATTEMPTS = 8
DEFAULT_MAX_SECONDS = 300.0
#: ``segship connections test`` (the "Connect" button) must answer within 10 s, naming the cause,
#: whatever the network does: its requests get at most these (a connection's smaller values
#: stay), so a refused connection or a storm of 5xx is tried 3 times within 3 s, and a server
#: that never answers is given up on after 4 s, not retried.
CONNECTION_TEST_CONNECT_SECONDS = 3.0
CONNECTION_TEST_READ_SECONDS = 4.0
CONNECTION_TEST_MAX_ATTEMPTS = 3
CONNECTION_TEST_MAX_SECONDS = 3.0


@dataclass(frozen=True)
class Proxy:
    """A forward proxy: its URL without credentials, and the ``Proxy-Authorization`` they make."""

    url: str                                                # scheme://host:port
    authorization: str | None = field(default=None, repr=False)

    @property
    def shown(self) -> str:
        """How errors name it: host and port, never a credential."""
        return self.url.split("://", 1)[1]

    @classmethod
    def parse(cls, url: str) -> Proxy:
        """An ``http://`` or ``https://`` proxy URL, ``user:password@`` optional (percent-encoded).

        The password and the header it makes are registered for redaction. Raises
        ValueError with a message that never quotes the URL (it may hold the password).
        """
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https"):
            raise ValueError("a proxy URL must start with http:// or https://")
        try:
            host, port = parts.hostname, parts.port
        except ValueError:
            host, port = None, None
        if not host:
            raise ValueError("a proxy URL must name a host, as in http://proxy.example.com:3128")
        if port is None:
            port = 443 if parts.scheme == "https" else 80
        shown_host = f"[{host}]" if ":" in host else host
        authorization = None
        if parts.username is not None or parts.password is not None:
            password = unquote(parts.password or "")
            credentials = base64.b64encode(f"{unquote(parts.username or '')}:{password}".encode()).decode()
            redactor.add(password)
            redactor.add(credentials)
            authorization = f"Basic {credentials}"
        return cls(f"{parts.scheme}://{shown_host}:{port}", authorization)


@dataclass(frozen=True)
class NetworkSettings:
    """A connection's ``network:`` block, resolved; the defaults are what a connection without it gets."""

    #: None: ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` from the environment decide
    proxy: Proxy | None = None
    #: None: the system's CAs (``SSL_CERT_FILE``/``SSL_CERT_DIR`` honoured), no client certificate
    tls: ssl.SSLContext | None = field(default=None, repr=False)
    connect_timeout: float = DEFAULT_CONNECT_SECONDS   # TCP, the proxy's CONNECT and the TLS handshake
    read_timeout: float = DEFAULT_READ_SECONDS         # from the request sent to the answer's last byte
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    max_seconds: float = DEFAULT_MAX_SECONDS           # no retry starts later than this after the first try

    def for_connection_test(self) -> NetworkSettings:
        """These settings within the budget of ``segship connections test`` (``CONNECTION_TEST_*``)."""
        return replace(self, connect_timeout=min(self.connect_timeout, CONNECTION_TEST_CONNECT_SECONDS),
                       read_timeout=min(self.read_timeout, CONNECTION_TEST_READ_SECONDS),
                       max_attempts=min(self.max_attempts, CONNECTION_TEST_MAX_ATTEMPTS),
                       max_seconds=min(self.max_seconds, CONNECTION_TEST_MAX_SECONDS))


def resolve_network(network: Mapping[str, Any], base_dir: Path, locations: Mapping[tuple[str, ...], str],
                    where: str) -> NetworkSettings:
    """A connection's validated ``network:`` block, references resolved and files loaded.

    ``locations`` maps a key's path (``("tls", "ca_file")``) to its file:line:col; ``where`` is
    the block's dotted path (``connections.braze-prod.network``). Raises SecretResolutionError.
    """

    def value(path: tuple[str, ...], raw: Any, *, secret: bool = False) -> str:
        text = str(raw)
        if has_reference(text):
            text = resolve(text, base_dir, where=locations.get(path, where), secret=secret)
        return text

    def problem(path: tuple[str, ...], message: str) -> SecretResolutionError:
        return SecretResolutionError(f"{locations.get(path, where)}: {where}.{'.'.join(path)}: {message}")

    proxy = None
    if network.get("proxy") is not None:
        try:
            proxy = Proxy.parse(value(("proxy",), network["proxy"]))
        except ValueError as exc:
            raise problem(("proxy",), str(exc)) from None
    tls = network.get("tls") or {}
    context = None
    if tls:
        paths = {key: _path(value(("tls", key), tls[key]), base_dir) for key in ("ca_file", "client_cert")
                 if tls.get(key) is not None}
        key_pem = value(("tls", "client_key"), tls["client_key"], secret=True) if tls.get("client_key") else None
        try:
            context = ssl.create_default_context(cafile=paths.get("ca_file"))
        except (OSError, ssl.SSLError) as exc:
            raise problem(("tls", "ca_file"), f"can't load CA certificates from {paths['ca_file']}: "
                                              f"{_reason(exc)}") from None
        if "client_cert" in paths:
            try:
                _load_client_certificate(context, paths["client_cert"], key_pem)
            except (OSError, ssl.SSLError) as exc:
                culprit = "client_key" if key_pem and not isinstance(exc, FileNotFoundError) else "client_cert"
                raise problem(("tls", culprit), f"can't load the client certificate {paths['client_cert']}"
                                                f"{' with this key' if key_pem else ''}: {_reason(exc)}") from None
    timeouts = network.get("timeouts") or {}
    retries = network.get("retries") or {}
    return NetworkSettings(
        proxy=proxy, tls=context,
        connect_timeout=float(timeouts.get("connect", DEFAULT_CONNECT_SECONDS)),
        read_timeout=float(timeouts.get("read", DEFAULT_READ_SECONDS)),
        max_attempts=int(retries.get("max_attempts", DEFAULT_MAX_ATTEMPTS)),
        max_seconds=float(retries.get("max_seconds", DEFAULT_MAX_SECONDS)))


def _path(text: str, base_dir: Path) -> str:
    path = Path(os.path.expanduser(text))
    return str(path if path.is_absolute() else base_dir / path)


def _reason(exc: BaseException) -> str:
    """OpenSSL's reason or the OS's words: never a file's content."""
    if isinstance(exc, ssl.SSLError):
        return exc.reason or type(exc).__name__
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return type(exc).__name__


def _load_client_certificate(context: ssl.SSLContext, certificate: str, key_pem: str | None) -> None:
    """The client certificate (with its key in the same file, or ``key_pem``, the key itself)."""
    if key_pem is None:
        context.load_cert_chain(certificate)
        return
    with _private_key_file(key_pem) as key_path:
        context.load_cert_chain(certificate, key_path)


@contextmanager
def _private_key_file(pem: str) -> Iterator[str]:
    """The key as a file only this process can open, for as long as OpenSSL reads it.

    OpenSSL (and so Python's ssl) loads a key from a file only. Where the system has
    ``memfd_create`` (Linux) the file is anonymous memory, never on a disk, gone when closed;
    elsewhere it is a 0600 file in a 0700 temporary directory, removed at once.
    """
    data = pem.encode() + b"\n"  # the reference's value was stripped of its last newline
    if hasattr(os, "memfd_create"):
        descriptor = os.memfd_create("segship-client-key", os.MFD_CLOEXEC)
        try:
            with open(descriptor, "wb", closefd=False) as file:
                file.write(data)
            yield f"/proc/self/fd/{descriptor}"
        finally:
            os.close(descriptor)
        return
    with tempfile.TemporaryDirectory(prefix="segship-") as folder:
        path = Path(folder) / "client.key"
        with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as file:
            file.write(data)
        yield str(path)
