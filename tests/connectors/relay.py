"""Network stand-ins for the pinning tests: a relay whose target can be
switched (the same URL then answers from another vCenter), which can also
play man in the middle (its own certificate, recording the plaintext it is
sent), and a plain HTTP listener that records every request."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import select
import socket
import ssl
import tempfile
import threading
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def self_signed_certificate(directory: Path) -> tuple[Path, Path, bytes]:
    """A fresh certificate for 127.0.0.1: (cert file, key file, DER)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "relay.crt", directory / "relay.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path, cert.public_bytes(serialization.Encoding.DER)


def _shuttle(client: socket.socket, upstream: socket.socket, record: bytearray | None, lock: threading.Lock) -> None:
    """Copy bytes both ways in one thread (an SSL socket must not be read and
    written from two threads at once) until either side closes."""
    peer = {client: upstream, upstream: client}
    for sock in peer:
        sock.setblocking(False)
    try:
        while True:
            ready = [s for s in peer if isinstance(s, ssl.SSLSocket) and s.pending()]
            if not ready:
                ready, _, _ = select.select(list(peer), [], [], 60)
                if not ready:
                    return
            for sock in ready:
                try:
                    chunk = sock.recv(65536)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                    continue  # a TLS record without data (a session ticket, say)
                if not chunk:
                    return
                if record is not None and sock is client:
                    with lock:
                        record.extend(chunk)
                other = peer[sock]
                other.setblocking(True)
                other.sendall(chunk)
                other.setblocking(False)
    except OSError:
        return
    finally:
        for sock in peer:
            try:
                sock.close()
            except OSError:
                pass


class Relay:
    """Listens on a loopback port and relays each new connection to the
    current target. Connections already open keep their target, as they
    would behind a load balancer or a rerouted DNS name.

    In intercept mode the relay ends TLS itself with a certificate of its
    own, opens TLS to the target, and records the plaintext the client sent:
    whatever a man in the middle would read."""

    def __init__(self):
        self._dir = tempfile.TemporaryDirectory(prefix="twokey-relay-")
        cert, key, self.certificate_der = self_signed_certificate(Path(self._dir.name))
        self._server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._server_tls.load_cert_chain(cert, key)
        self._client_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self._client_tls.check_hostname = False
        self._client_tls.verify_mode = ssl.CERT_NONE  # the target is a lab with a throwaway certificate
        self.target: tuple[str, int] | None = None
        self.intercept = False
        self.plaintext = bytearray()  # what clients sent, in intercept mode
        self.connections = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/sdk"

    def point_at(self, lab, *, intercept: bool = False) -> None:
        with self._lock:
            self.target = ("127.0.0.1", lab.port)
            self.intercept = intercept

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            target, intercept = self.target, self.intercept
            self.connections += 1
        try:
            upstream = socket.create_connection(target, timeout=10)
            upstream.settimeout(None)
            if intercept:
                client = self._server_tls.wrap_socket(client, server_side=True)
                upstream = self._client_tls.wrap_socket(upstream)
        except (OSError, ssl.SSLError):
            client.close()
            return
        _shuttle(client, upstream, self.plaintext if intercept else None, self._lock)

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        self._dir.cleanup()


class RecordingHTTPServer:
    """A plain HTTP server that answers 404 to everything and keeps every
    request it saw (request line, headers, body) as bytes."""

    def __init__(self):
        self.requests: list[bytes] = []
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _record(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                server.requests.append(self.requestline.encode() + b"\n" + bytes(self.headers) + body)
                self.send_error(404)

            do_GET = do_POST = do_PUT = _record

            def log_message(self, *args):  # quiet
                pass

        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/sdk"

    @property
    def received(self) -> bytes:
        return b"\n".join(self.requests)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
