"""Whether a certificate chain someone else received was the name's: offline, at its time.

RIPE Atlas `sslcert` results carry the chain a probe was sent, not a verified
handshake, so netprobe verifies it here: against the trust store (the system's,
or --ca-bundle), for the name that was asked (SNI), at the moment of the
measurement.  cryptography's verifier decides first.  It refuses what today's
browsers refuse, which old results fail for reasons that say nothing about
interception (SHA-1 signatures before 2017), so a chain it refuses is walked
again by hand: the name, each certificate's validity then, each signature by
the next one's key, up to a root in the store.  What that walk finds is the
verdict's evidence: `name_mismatch`, `expired`, `bad_signature`, `self_signed`
and `unknown_issuer` (the chain leads to no CA in the store: a private CA — TLS
interception — or a public one since removed from the store).
"""

from __future__ import annotations

import functools
import ipaddress
import ssl
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Sequence

MAX_CHAIN = 10  # certificates looked at; a hostile result may send hundreds
MAX_PEM_CHARS = 32 * 1024  # one certificate's PEM text
# Certificates issued before this were still signed with SHA-1 by public CAs (CA/Browser
# Forum Baseline Requirements: no SHA-1 issuance from 2016-01-01, browsers distrusted it in 2017).
SHA1_ERA_END = datetime(2017, 1, 1, tzinfo=timezone.utc)


@dataclass
class ChainCheck:
    """The outcome; `error` is None when the chain is the name's."""

    verified: bool
    error: str | None = None          # name_mismatch | expired | bad_signature | self_signed | unknown_issuer | unreadable
    detail: str = ""                  # one line for people
    method: str | None = None         # "verifier" | "chain walk" (how a verified chain was accepted)
    certificates: list[dict[str, Any]] = field(default_factory=list)


@functools.lru_cache(maxsize=4)
def load_store(ca_bundle: str | None):
    """The trust store's certificates: --ca-bundle, else the system's default file, else certifi's."""
    from cryptography import x509

    path = ca_bundle or ssl.get_default_verify_paths().cafile
    if not path:
        import certifi  # installed with ripe.atlas.cousteau
        path = certifi.where()
    with open(path, "rb") as f, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a store may hold old roots that trip deprecation warnings
        return tuple(x509.load_pem_x509_certificates(f.read()))


def _printable(text: str, limit: int = 200) -> str:
    text = "".join(ch if ch.isprintable() else f"\\x{ord(ch):02x}" for ch in text)
    return text[:limit]


def describe(cert) -> dict[str, Any]:
    """The evidence of one certificate: names, issuer, validity, fingerprint (capped text)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    evidence: dict[str, Any] = {
        "subject": _printable(cert.subject.rfc4514_string()),
        "issuer": _printable(cert.issuer.rfc4514_string()),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "sha256": cert.fingerprint(hashes.SHA256()).hex(),
    }
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        evidence["subject_alt_names"] = [_printable(str(n), 100) for n in names.get_values_for_type(x509.DNSName)[:16]]
    except (x509.ExtensionNotFound, ValueError):
        pass
    return evidence


def _dns_names(cert) -> list[str]:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return [str(n).lower() for n in san.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        # RFC 6125 6.4.4: the common name only when there is no subjectAltName.
        return [str(a.value).lower() for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    except ValueError:
        return []


def name_matches(cert, name: str) -> bool:
    """RFC 6125: an exact name, or a wildcard standing for exactly the leftmost label."""
    name = name.lower().rstrip(".")
    try:
        ipaddress.ip_address(name)
        return False  # netprobe only asks for names
    except ValueError:
        pass
    for pattern in _dns_names(cert):
        pattern = pattern.rstrip(".")
        if pattern == name:
            return True
        if pattern.startswith("*.") and "." in name:
            if name.split(".", 1)[1] == pattern[2:] and pattern.count(".") >= 2:
                return True
    return False


def _signed_by(cert, issuer) -> bool:
    """`issuer` signed `cert`: cryptography's check, and for the SHA-1 signatures it no longer
    accepts there, the same check through the issuer's public key."""
    from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    if cert.issuer != issuer.subject:
        return False
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except InvalidSignature:
        return False
    except (ValueError, TypeError, UnsupportedAlgorithm):
        pass
    try:
        key, algorithm = issuer.public_key(), cert.signature_hash_algorithm
        if algorithm is None:
            return False
        if isinstance(key, rsa.RSAPublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), algorithm)
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algorithm))
        else:
            return False
        return True
    except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
        return False


def _is_ca(cert) -> bool:
    """Only a CA certificate may sign another (basicConstraints): a leaf signing a leaf is forgery."""
    from cryptography import x509
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except (x509.ExtensionNotFound, ValueError):
        return False


def _valid_at(cert, when: datetime) -> bool:
    return cert.not_valid_before_utc <= when <= cert.not_valid_after_utc


def check_chain(pems: Sequence[str], name: str, when: datetime, store: Sequence) -> ChainCheck:
    """Was this chain (leaf first, as the server sent it) the name's certificate at `when`?"""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    chain = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # old certificates trip cryptography's deprecation warnings
        for pem in list(pems)[:MAX_CHAIN]:
            if not isinstance(pem, str) or len(pem) > MAX_PEM_CHARS:
                continue
            try:
                chain.append(x509.load_pem_x509_certificate(pem.encode("ascii", "replace")))
            except ValueError:
                continue
    if not chain:
        return ChainCheck(False, "unreadable", "no readable certificate in the result")
    described = []
    for cert in chain:
        try:
            described.append(describe(cert))
        except Exception:  # a certificate that parses but cannot be described: still evidence of a chain
            described.append({"unreadable": True})
    result = ChainCheck(False, certificates=described)
    leaf = chain[0]
    strict_error = ""
    try:
        from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
        verifier = PolicyBuilder().store(Store(list(store))).time(when).build_server_verifier(x509.DNSName(name))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            verifier.verify(leaf, chain[1:])
        result.verified, result.method = True, "verifier"
        return result
    except VerificationError as exc:
        strict_error = _printable(str(exc).split(" (encountered", 1)[0], 160)
    except Exception as exc:  # a malformed name or certificate: the walk below says what is wrong
        strict_error = _printable(f"{type(exc).__name__}: {exc}", 160)
    if not name_matches(leaf, name):
        result.error, result.detail = "name_mismatch", f"the certificate is not for {name}"
        return result
    trusted = {c.fingerprint(hashes.SHA256()): c for c in store}
    current, path = leaf, [leaf]
    for _ in range(MAX_CHAIN):
        if not _valid_at(current, when):
            result.error = "expired"
            result.detail = f"{_printable(current.subject.rfc4514_string(), 80)} was not valid at {when.isoformat()}"
            return result
        if current.fingerprint(hashes.SHA256()) in trusted:
            break
        root = next((r for r in store if _signed_by(current, r)), None)
        if root is not None:
            if not _valid_at(root, when):
                result.error, result.detail = "expired", "the root was not valid then"
                return result
            break
        issuer = next((c for c in chain if c is not current and c not in path and _is_ca(c)
                       and _signed_by(current, c)), None)
        if issuer is None:
            if current.issuer == current.subject:
                result.error = "self_signed" if _signed_by(current, current) else "bad_signature"
                result.detail = "a self-signed certificate that is not in the trust store"
            elif any(c.subject == current.issuer for c in (*chain, *store)):
                result.error, result.detail = "bad_signature", "a signature in the chain does not verify"
            else:
                result.error = "unknown_issuer"
                result.detail = (f"the chain ends at {_printable(current.issuer.rfc4514_string(), 100)}, "
                                 "which is not in the trust store")
            return result
        current = issuer
        path.append(issuer)
    else:
        result.error, result.detail = "unknown_issuer", "the chain is longer than netprobe follows"
        return result
    if leaf.not_valid_before_utc < SHA1_ERA_END:
        result.verified, result.method = True, "chain walk"
        result.detail = f"accepted by a chain walk for a certificate issued before 2017 (verifier: {strict_error})"
        return result
    result.error = "unknown_issuer" if "exhausted" in strict_error else "bad_signature"
    result.detail = f"the verifier refused the chain: {strict_error}"
    return result
