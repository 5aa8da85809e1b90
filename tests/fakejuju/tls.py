"""Per-run CA and server certificate for the fake controller's TLS listener."""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import os
import ssl
import tempfile

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclasses.dataclass(frozen=True)
class TlsMaterial:
    """PEM-encoded CA certificate plus a server certificate and key signed by it."""

    ca_cert: str
    server_cert: str
    server_key: str

    def server_context(self) -> ssl.SSLContext:
        """Return an SSL context serving the server certificate."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        # load_cert_chain only reads files: write them to a private temporary directory.
        with tempfile.TemporaryDirectory(prefix="fakejuju-tls-") as tmp:
            cert_path = os.path.join(tmp, "server.pem")
            key_path = os.path.join(tmp, "server.key")
            with open(cert_path, "w", encoding="ascii") as cert_file:
                cert_file.write(self.server_cert + self.ca_cert)
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as key_file:
                key_file.write(self.server_key)
            context.load_cert_chain(cert_path, key_path)
        return context


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Juju"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


CONTROLLER_NAMES = ("localhost", "juju-apiserver")


def generate(
    hostname: str = "127.0.0.1", names: tuple[str, ...] = CONTROLLER_NAMES
) -> TlsMaterial:
    """Generate a fresh CA and a server certificate for hostname, like a bootstrap does.

    Juju's controller certificates carry the DNS name `juju-apiserver`; `names` replaces the
    DNS names (a test can make a certificate for another host, signed by the same CA).
    """
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name('juju-generated CA for model "juju-ca"')
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("*"))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    *(x509.DNSName(name) for name in names),
                    x509.IPAddress(ipaddress.ip_address(hostname)),
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return TlsMaterial(
        ca_cert=ca_cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        server_cert=server_cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        server_key=server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii"),
    )
