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

Judged as of the measurement: a root Mozilla's store held then but has dropped since
(netprobe/data/retired_roots.pem, with when each was there) is trusted for a chain measured
while it was in the store, so an old chain that was valid when measured verifies.  What then
still leads to no CA splits in two: a chain the server sent up to a CA that no store netprobe
knows ever held (today's, certifi's, or Mozilla's since 2011) is `untrusted_root` (a private
CA: a corporate TLS proxy's) — a failure; a chain that stops at an issuer the server did not
send (an intermediate left out, or a root this store lacks) is `unknown_issuer`: it cannot be
checked, and says nothing either way.
"""

from __future__ import annotations

import functools
import ipaddress
import re
import ssl
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

MAX_CHAIN = 10  # certificates looked at; a hostile result may send hundreds
MAX_PEM_CHARS = 32 * 1024  # one certificate's PEM text
# Certificates issued before this were still signed with SHA-1 by public CAs (CA/Browser
# Forum Baseline Requirements: no SHA-1 issuance from 2016-01-01, browsers distrusted it in 2017).
SHA1_ERA_END = datetime(2017, 1, 1, tzinfo=timezone.utc)
RETIRED_ROOTS = Path(__file__).parent / "data" / "retired_roots.pem"
# The first version of certifi's store in its history: a root already there was in the store
# "at least since then", so it is trusted for any earlier measurement too.
CERTIFI_HISTORY_START = "2011-12-28"
_RETIRED_ENTRY = re.compile(r"# in-store-from (\S+)[^\n]*\n# removed (\S+)[^\n]*\n(?:#[^\n]*\n)*"
                            r"(-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----)", re.S)


@dataclass
class ChainCheck:
    """The outcome; `error` is None when the chain is the name's."""

    verified: bool
    # name_mismatch | expired | bad_signature | self_signed | untrusted_root | unknown_issuer | unreadable
    error: str | None = None
    detail: str = ""                  # one line for people
    method: str | None = None         # "verifier" | "chain walk" (how a verified chain was accepted)
    certificates: list[dict[str, Any]] = field(default_factory=list)
    root_removed: str | None = None   # verified through a root Mozilla's store dropped on this date
    root: Any = field(default=None, repr=False)  # the trust anchor a verified chain reached
    top: Any = field(default=None, repr=False)   # the last certificate an unverified walk reached


@dataclass(frozen=True)
class RetiredRoot:
    cert: Any
    since: datetime | None  # None: in the store since before certifi's history starts
    removed: datetime

    def trusted_at(self, when: datetime) -> bool:
        return (self.since is None or self.since <= when) and when < self.removed


@functools.lru_cache(maxsize=1)
def retired_roots() -> tuple[RetiredRoot, ...]:
    """The roots Mozilla's store dropped, with when each was in it (netprobe/data/retired_roots.pem)."""
    from cryptography import x509

    def day(text: str) -> datetime:
        return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)

    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for since, removed, pem in _RETIRED_ENTRY.findall(RETIRED_ROOTS.read_text(encoding="utf-8")):
            out.append(RetiredRoot(x509.load_pem_x509_certificate(pem.encode("ascii")),
                                   None if since == CERTIFI_HISTORY_START else day(since), day(removed)))
    return tuple(out)


@functools.lru_cache(maxsize=4)
def _public_ca_names(store: tuple) -> frozenset:
    """Every CA name a public store netprobe knows held: the store, certifi's, the retired roots."""
    names = {c.subject for c in store} | {r.cert.subject for r in retired_roots()}
    try:
        import certifi
        names |= {c.subject for c in load_store(certifi.where())}
    except (ImportError, OSError, ValueError):
        pass
    return frozenset(names)


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
    """Was this chain (leaf first, as the server sent it) the name's certificate at `when`,
    by the store of `when` (today's, plus the roots dropped since that were in it then)?"""
    from cryptography import x509

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
    store = tuple(store)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # old roots' names trip cryptography's warnings when compared
        return _check_then(chain, described, name, when, store)


def _check_then(chain: list, described: list, name: str, when: datetime, store: tuple) -> ChainCheck:
    """The check against today's store; an unknown issuer again with the roots of `when`."""
    from cryptography.hazmat.primitives import hashes

    result = _check(chain, name, when, store)
    if result.error == "unknown_issuer":
        have = {c.fingerprint(hashes.SHA256()) for c in store}
        then = {r.cert.fingerprint(hashes.SHA256()): r for r in retired_roots() if r.trusted_at(when)}
        then = {fp: r for fp, r in then.items() if fp not in have}
        if then:
            again = _check(chain, name, when, store + tuple(r.cert for r in then.values()))
            if again.verified and again.root is not None:
                retired = then.get(again.root.fingerprint(hashes.SHA256()))
                if retired is not None:
                    again.root_removed = retired.removed.date().isoformat()
                    again.detail = (f"verified through {_printable(again.root.subject.rfc4514_string(), 100)}, a root "
                                    f"in Mozilla's store then, dropped on {again.root_removed}")
            result = again
    if result.error == "unknown_issuer" and result.top is not None and result.top is not chain[0] \
            and result.top.issuer not in _public_ca_names(store):
        result.error = "untrusted_root"
        result.detail = (f"the chain the server sent leads to {_printable(result.top.issuer.rfc4514_string(), 100)}, "
                         "a CA no public trust store held (today's, or Mozilla's since 2011): a private CA, such "
                         "as a TLS-intercepting proxy's")
    result.certificates = described
    return result


def _check(chain: list, name: str, when: datetime, store: tuple) -> ChainCheck:
    """The verifier, then the walk, against one store."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    result = ChainCheck(False)
    leaf = chain[0]
    strict_error = ""
    try:
        from cryptography.x509.verification import PolicyBuilder, Store, VerificationError
        verifier = PolicyBuilder().store(Store(list(store))).time(when).build_server_verifier(x509.DNSName(name))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            built = verifier.verify(leaf, chain[1:])
        result.verified, result.method = True, "verifier"
        result.root = built[-1] if built else None
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
            result.root = current
            break
        root = next((r for r in store if _signed_by(current, r)), None)
        if root is not None:
            if not _valid_at(root, when):
                result.error, result.detail = "expired", "the root was not valid then"
                return result
            result.root = root
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
                result.error, result.top = "unknown_issuer", current
                result.detail = (f"the chain ends at {_printable(current.issuer.rfc4514_string(), 100)}, which "
                                 "is not in the trust store (an intermediate the server left out, or a root this "
                                 "store lacks): it cannot be checked")
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
    result.root = None
    result.error = "unknown_issuer" if "exhausted" in strict_error else "bad_signature"
    result.detail = f"the verifier refused the chain: {strict_error}"
    return result
