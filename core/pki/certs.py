"""Make and check EC P-256 certificates (the ``cryptography`` package; no openssl binary).

A leaf is good when it is signed by the CA given, valid for at least :data:`RENEW_BEFORE` more, and
carries exactly the IP SANs wanted. etcd needs serverAuth and clientAuth on its server certificate
(its gRPC gateway dials itself with it) and on its peer certificate (peers are both ends).
"""
from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
LEAF_DAYS = 825
RENEW_BEFORE = dt.timedelta(days=30)
SERVER_AUTH, CLIENT_AUTH = ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH


@dataclass(frozen=True)
class Pair:
    """A certificate and its private key, both PEM."""

    cert: bytes
    key: bytes


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "overlay-tui"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str, days: int = CA_DAYS) -> Pair:
    """A self-signed CA (path length 0: it signs leaves only)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .sign(key, hashes.SHA256()))
    return Pair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def issue(ca: Pair, cn: str, ips: list[str], usages: list[x509.ObjectIdentifier], dns: list[str] | None = None,
          days: int = LEAF_DAYS) -> Pair:
    """A leaf signed by ``ca`` for ``cn`` with IP SANs ``ips`` (and DNS SANs ``dns``) and extended ``usages``."""
    ca_cert = x509.load_pem_x509_certificate(ca.cert)
    ca_key = serialization.load_pem_private_key(ca.key, password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the CA key is not an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    sans += [x509.DNSName(d) for d in dns or []]
    b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_cert.subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, key_agreement=True,
                                      content_commitment=False, data_encipherment=False, key_cert_sign=False,
                                      crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
         .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False))
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = b.sign(ca_key, hashes.SHA256())
    return Pair(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def ip_sans(cert_pem: bytes) -> set[str]:
    """The IP addresses a certificate is valid for."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return set()
    return {str(ip) for ip in ext.value.get_values_for_type(x509.IPAddress)}


def usages(cert_pem: bytes) -> set[x509.ObjectIdentifier]:
    cert = x509.load_pem_x509_certificate(cert_pem)
    try:
        return set(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return set()


def why_renew(pair: Pair | None, ca_cert_pem: bytes, ips: list[str]) -> str | None:
    """Why this leaf must be issued again (None: it is still good)."""
    if pair is None:
        return "missing"
    try:
        cert = x509.load_pem_x509_certificate(pair.cert)
        key = serialization.load_pem_private_key(pair.key, password=None)
        ca = x509.load_pem_x509_certificate(ca_cert_pem)
    except ValueError as e:
        return f"unreadable ({e})"
    if cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo) \
            != key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo):
        return "its key does not match it"
    if cert.issuer != ca.subject:
        return "issued by another CA"
    ca_pub = ca.public_key()
    if not isinstance(ca_pub, ec.EllipticCurvePublicKey):
        return "the CA key is not an EC key"
    try:
        ca_pub.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return "issued by another CA"
    if cert.not_valid_after_utc - _now() < RENEW_BEFORE:
        return f"expires {cert.not_valid_after_utc:%Y-%m-%d}"
    have, want = ip_sans(pair.cert), {str(ipaddress.ip_address(i)) for i in ips}
    if have != want:
        return f"names {', '.join(sorted(have)) or 'no address'}, not {', '.join(sorted(want))}"
    return None


def ca_why_renew(pair: Pair | None) -> str | None:
    """Why the CA must be made again (None: still good)."""
    if pair is None:
        return "missing"
    try:
        cert = x509.load_pem_x509_certificate(pair.cert)
        serialization.load_pem_private_key(pair.key, password=None)
    except ValueError as e:
        return f"unreadable ({e})"
    if cert.not_valid_after_utc - _now() < RENEW_BEFORE:
        return f"expires {cert.not_valid_after_utc:%Y-%m-%d}"
    return None
