"""Whether a certificate chain someone else received was the name's: offline, at its time.

RIPE Atlas `sslcert` results carry the chain a probe was sent, not a verified
handshake, so netprobe verifies it here: against the trust store (the system's,
or --ca-bundle), for the name that was asked (SNI), at the moment of the
measurement.  The verdict's evidence is one of `name_mismatch`, `expired`,
`bad_signature` (a signature that does not verify, or one made with a hash the
measurement's time no longer allowed), `invalid_chain` (a CA rule broken: a
certificate that is no CA signing, a path too long, a name outside a CA's
constraints, a leaf not for TLS servers), `self_signed`, `unreadable`, and for
a chain that leads to no CA in the store `untrusted_root` or `unknown_issuer`
(below).

The validator is pyhanko-certvalidator, not a path builder of netprobe's own.  It
was chosen over pyOpenSSL (`X509Store.set_time` + `X509StoreContext`, OpenSSL's
own path builder) because judging an old result needs what only it gives:
- a moment: `ValidationContext(moment=...)` validates at the measurement's time,
  fetching nothing (OpenSSL's `set_time` does that too);
- SHA-1 allowed explicitly, and only for the era that used it: its algorithm
  policy names the hashes and the RSA sizes to refuse.  A bare OpenSSL store
  runs at no security level and accepts SHA-1 for every chain (the 2014
  torproject.org chain verifies with no setting), and pyOpenSSL exposes no way
  to set one, so the era rule would be ours again;
- typed failures (ExpiredError, PathBuildingError, DisallowedAlgorithmError...)
  instead of OpenSSL error numbers to map by hand.
It does RFC 5280 path validation in full (basicConstraints, keyUsage, path
length, name constraints): a leaf placed as a CA is refused by the validator,
not by a check of ours.  0.33 matches no names (it has no validate_tls); the
name is matched by asn1crypto, which it is built on (`is_valid_domain_ip`: RFC
6125 wildcards, the common name only without a subjectAltName).  pyOpenSSL has
no name matcher at all, and each release pins cryptography to a narrow range
(26.4: >=49,<51).  The cost, measured on the five real Atlas chains of
tests/data/atlas against a store of 144 roots: 1-25 ms a chain (a private CA's,
validated three times, is the slowest), as cryptography's verifier with the
hand walk took (1-19 ms); about 0.07 s of import, paid only by the atlas
commands (interop/atlas.py and commands/atlas.py import this module inside the
functions that judge a chain or load a store); and ten more installed packages
(asn1crypto, oscrypto, uritools, and aiohttp with its own, for fetching
revocation data, which netprobe never asks for).

Certificates issued before 2017 were still signed with SHA-1 (and keys of 1024
bits were allowed until 2014) by public CAs: for a chain whose leaf was issued
then, SHA-1 and RSA keys from 1024 bits are accepted; for later ones, neither.

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

import asyncio
import functools
import re
import ssl
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import (DisallowedAlgorithmError, ExpiredError, InvalidCertificateError,
                                          NotYetValidError, PathBuildingError, ValidationError)
from pyhanko_certvalidator.policy_decl import DisallowWeakAlgorithmsPolicy

from netprobe.text import printable

MAX_CHAIN = 10  # certificates looked at; a hostile result may send hundreds
MAX_PEM_CHARS = 32 * 1024  # one certificate's PEM text
# Certificates issued before this were still signed with SHA-1 by public CAs (CA/Browser
# Forum Baseline Requirements: no SHA-1 issuance from 2016-01-01, browsers distrusted it in 2017).
SHA1_ERA_END = datetime(2017, 1, 1, tzinfo=timezone.utc)
# What the SHA-1 era still allowed: SHA-1 (not MD5), RSA keys from 1024 bits (the Baseline
# Requirements' 2048-bit minimum applied from 2014; Mozilla removed its 1024-bit roots in 2014-2015).
SHA1_ERA_POLICY = DisallowWeakAlgorithmsPolicy(weak_hash_algos=frozenset({"md2", "md5"}), rsa_key_size_threshold=1024)
# After it: the validator's defaults (MD2, MD5 and SHA-1 refused, RSA from 2048 bits).
POLICY = DisallowWeakAlgorithmsPolicy()
VALIDATOR = "pyhanko-certvalidator"
RETIRED_ROOTS = Path(__file__).parent.parent / "data" / "retired_roots.pem"
# The first version of certifi's store in its history: a root already there was in the store
# "at least since then", so it is trusted for any earlier measurement too.
CERTIFI_HISTORY_START = "2011-12-28"
_RETIRED_ENTRY = re.compile(r"# in-store-from (\S+)[^\n]*\n# removed (\S+)[^\n]*\n(?:#[^\n]*\n)*"
                            r"(-----BEGIN CERTIFICATE-----.*?-----END CERTIFICATE-----)", re.S)


@dataclass
class ChainCheck:
    """The outcome; `error` is None when the chain is the name's."""

    verified: bool
    # name_mismatch | expired | bad_signature | invalid_chain | self_signed | untrusted_root
    # | unknown_issuer | unreadable
    error: str | None = None
    detail: str = ""                  # one line for people
    method: str | None = None         # the validator that accepted a verified chain
    certificates: list[dict[str, Any]] = field(default_factory=list)
    root_removed: str | None = None   # verified through a root Mozilla's store dropped on this date
    root: Any = field(default=None, repr=False)  # the trust anchor a verified chain reached


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
    path = ca_bundle or ssl.get_default_verify_paths().cafile
    if not path:
        import certifi  # installed with ripe.atlas.cousteau
        path = certifi.where()
    with open(path, "rb") as f, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a store may hold old roots that trip deprecation warnings
        return tuple(x509.load_pem_x509_certificates(f.read()))


def describe(cert) -> dict[str, Any]:
    """The evidence of one certificate: names, issuer, validity, fingerprint (capped text)."""
    evidence: dict[str, Any] = {
        "subject": printable(cert.subject.rfc4514_string(), 200),
        "issuer": printable(cert.issuer.rfc4514_string(), 200),
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "sha256": cert.fingerprint(hashes.SHA256()).hex(),
    }
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        evidence["subject_alt_names"] = [printable(str(n), 100) for n in names.get_values_for_type(x509.DNSName)[:16]]
    except (x509.ExtensionNotFound, ValueError):
        pass
    return evidence


def check_chain(pems: Sequence[str], name: str, when: datetime, store: Sequence) -> ChainCheck:
    """Was this chain (leaf first, as the server sent it) the name's certificate at `when`,
    by the store of `when` (today's, plus the roots dropped since that were in it then)?"""
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
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # old roots' names trip cryptography's warnings when compared
        result = _check_then(chain, name, when, tuple(store))
    result.certificates = described
    return result


def _check_then(chain: list, name: str, when: datetime, store: tuple) -> ChainCheck:
    """The name, then the chain against today's store; an unknown issuer again with the roots of
    `when`; one still unknown is told apart: a private CA's chain, or one that cannot be checked."""
    if not _name_matches(chain[0], name):
        return ChainCheck(False, "name_mismatch", f"the certificate is not for {printable(name, 100)}")
    result = _check(chain, when, store)
    if result.error == "unknown_issuer":
        have = {c.fingerprint(hashes.SHA256()) for c in store}
        then = {r.cert.fingerprint(hashes.SHA256()): r for r in retired_roots() if r.trusted_at(when)}
        then = {fp: r for fp, r in then.items() if fp not in have}
        if then:
            again = _check(chain, when, store + tuple(r.cert for r in then.values()))
            if again.verified and again.root is not None:
                retired = then.get(again.root.fingerprint(hashes.SHA256()))
                if retired is not None:
                    again.root_removed = retired.removed.date().isoformat()
                    again.detail = (f"verified through {printable(again.root.subject.rfc4514_string(), 100)}, a root "
                                    f"in Mozilla's store then, dropped on {again.root_removed}")
            if again.error != "unknown_issuer":
                return again
    if result.error == "unknown_issuer":
        return _unanchored(chain, when, store)
    return result


def _name_matches(leaf, name: str) -> bool:
    """RFC 6125, as asn1crypto matches it (netprobe asks for names; a trailing dot is no label)."""
    try:
        return _asn1(leaf).is_valid_domain_ip(name.rstrip("."))
    except (ValueError, TypeError, UnicodeError):  # a name no DNS label can spell, a garbled extension
        return False


@functools.lru_cache(maxsize=2048)
def _asn1(cert) -> asn1_x509.Certificate:
    """The validator's form of a certificate (asn1crypto), made once per certificate."""
    return asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))


def _validate(chain: list, anchors: Sequence, when: datetime):
    """The validator's path from the leaf to one of `anchors` through the certificates the server
    sent, valid at `when` under the algorithms of the leaf's era and usable by a TLS server."""
    policy = SHA1_ERA_POLICY if chain[0].not_valid_before_utc < SHA1_ERA_END else POLICY
    others = [_asn1(c) for c in chain[1:]]
    context = ValidationContext(trust_roots=[_asn1(c) for c in anchors], other_certs=others, moment=when,
                                algorithm_usage_policy=policy)
    validator = CertificateValidator(_asn1(chain[0]), others, context)
    # An old leaf may have no extendedKeyUsage; one that has it must allow serverAuth.
    return asyncio.run(validator.async_validate_usage(set(), {"server_auth"}, extended_optional=True))


def _check(chain: list, when: datetime, anchors: tuple) -> ChainCheck:
    """The validator's verdict on the chain against one set of trust anchors."""
    try:
        path = _validate(chain, anchors, when)
    except PathBuildingError:
        return ChainCheck(False, "unknown_issuer")
    except ValidationError as exc:
        return _failure(exc)
    except (ValueError, TypeError, KeyError, IndexError) as exc:  # asn1crypto parses lazily: a garbled field
        return ChainCheck(False, "unreadable", printable(f"{type(exc).__name__}: {exc}", 160))
    digest = path.trust_anchor.certificate.sha256  # trust_roots made of certificates: CertTrustAnchor
    root = next((c for c in anchors if c.fingerprint(hashes.SHA256()) == digest), None)
    return ChainCheck(True, method=VALIDATOR, root=root)


def _failure(exc: ValidationError) -> ChainCheck:
    """The validator's refusal in netprobe's words (its own message kept as the detail)."""
    message = printable(str(exc).split(" Reason: ", 1)[0], 200)
    if isinstance(exc, (ExpiredError, NotYetValidError)):
        return ChainCheck(False, "expired", message)
    if isinstance(exc, InvalidCertificateError) and "self-signed" in str(exc):
        return ChainCheck(False, "self_signed", message)
    if isinstance(exc, DisallowedAlgorithmError) or "signature" in str(exc):
        return ChainCheck(False, "bad_signature", message)
    return ChainCheck(False, "invalid_chain", message)


def _unanchored(chain: list, when: datetime, store: tuple) -> ChainCheck:
    """A chain that reached no trusted root: where does what the server sent lead?  The top of
    the sent chain (a certificate whose issuer it did not send, or a root) is taken as the anchor;
    if the leaf validates up to it and its CA is one no public store held, it is a private CA's
    chain (`untrusted_root`); if it does not validate, that is the failure; else it cannot be told."""
    leaf = chain[0]
    sent = {c.subject for c in chain}
    top = next((c for c in chain[1:] if c != leaf and (c.issuer not in sent or c.issuer == c.subject)), None)
    unknown = ChainCheck(False, "unknown_issuer", (
        f"the chain ends at {printable((top or leaf).issuer.rfc4514_string(), 100)}, which is not in the trust "
        "store (an intermediate the server left out, or a root this store lacks): it cannot be checked"))
    if top is None:
        return unknown
    sent_chain = _check(chain, when, (top,))
    if not sent_chain.verified:
        return unknown if sent_chain.error == "unknown_issuer" else sent_chain
    if top.issuer != top.subject or top.issuer in _public_ca_names(store):
        # Only a root the server sent itself shows a private CA: a chain that stops at an
        # intermediate whose issuer it left out may lead to a public CA all the same.
        return unknown
    return ChainCheck(False, "untrusted_root", (
        f"the chain the server sent leads to {printable(top.issuer.rfc4514_string(), 100)}, a CA no public trust "
        "store held (today's, or Mozilla's since 2011): a private CA, such as a TLS-intercepting proxy's"))
