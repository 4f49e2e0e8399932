"""chaincheck: a chain judged as of its measurement, one case per outcome.

Every certificate here is made by the test (cryptography): a root that is the whole trust
store, its intermediate, leaves under it; a SHA-1-signed hierarchy of the SHA-1 era; a private
CA standing for a TLS-intercepting proxy's.  Nothing is read from the machine's trust store.
The real Atlas chains are judged in tests/test_atlas_convert.py.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from netprobe.interop import chaincheck
from netprobe.interop.chaincheck import RetiredRoot, check_chain


def day(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "netprobe test"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class CA:
    """A CA of the test: its key and certificate, and what it issues."""

    def __init__(self, cn, key, cert):
        self.cn, self.key, self.cert = cn, key, cert

    @classmethod
    def root(cls, cn, key, algorithm=hashes.SHA256(), start="2000-01-01", end="2040-01-01"):
        return cls(cn, key, build(name(cn), key.public_key(), name(cn), key, True, start, end, algorithm, key))

    def intermediate(self, cn, key, algorithm=hashes.SHA256(), start="2005-01-01", end="2035-01-01"):
        return CA(cn, key, build(name(cn), key.public_key(), self.cert.subject, self.key, True, start, end,
                                 algorithm, self.key))

    def leaf(self, names=("www.example.org",), start="2018-01-01", end="2019-01-01", algorithm=hashes.SHA256(),
             ca=False, cn=None, key=None, signer=None):
        key = key or LEAF_KEY
        return build(name(cn or names[0]), key.public_key(), self.cert.subject, signer or self.key, ca, start, end,
                     algorithm, self.key, names)

    def pem(self):
        return pem(self.cert)


def build(subject, public_key, issuer, signing_key, ca, start, end, algorithm, issuer_key, names=None):
    """One certificate, with the extensions a public CA of its time put in."""
    builder = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
               .serial_number(x509.random_serial_number()).not_valid_before(day(start)).not_valid_after(day(end))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                              critical=False))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False),
                                        critical=True)
    if names is not None:
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                                            critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    if isinstance(algorithm, hashes.SHA1):
        return sha1_signed(builder.sign(signing_key, hashes.SHA256()), signing_key)
    return builder.sign(signing_key, algorithm)


def sha1_signed(cert, rsa_signing_key):
    """The certificate signed again with SHA-1 and RSA, as CAs did until 2016: cryptography's
    builder no longer makes such signatures, so the to-be-signed part is relabelled (asn1crypto)
    and signed with the key directly."""
    from asn1crypto import x509 as asn1_x509
    from cryptography.hazmat.primitives.asymmetric import padding
    from cryptography.hazmat.primitives.serialization import Encoding

    parsed = asn1_x509.Certificate.load(cert.public_bytes(Encoding.DER))
    tbs = parsed["tbs_certificate"]
    tbs["signature"] = {"algorithm": "sha1_rsa"}
    parsed["signature_algorithm"] = {"algorithm": "sha1_rsa"}
    parsed["signature_value"] = rsa_signing_key.sign(tbs.dump(force=True), padding.PKCS1v15(), hashes.SHA1())
    return x509.load_der_x509_certificate(parsed.dump(force=True))


def pem(cert) -> str:
    from cryptography.hazmat.primitives.serialization import Encoding
    return cert.public_bytes(Encoding.PEM).decode("ascii")


def rsa_key(bits=2048):
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


LEAF_KEY = ec.generate_private_key(ec.SECP256R1())
ROOT = CA.root("Test Root CA", rsa_key())
INTERMEDIATE = ROOT.intermediate("Test Issuing CA", ec.generate_private_key(ec.SECP256R1()))
# The SHA-1 era: RSA keys, every signature SHA-1, as public CAs issued them until 2016.
SHA1_ROOT = CA.root("Test SHA-1 Root CA", rsa_key(), hashes.SHA1())
SHA1_INTERMEDIATE = SHA1_ROOT.intermediate("Test SHA-1 Issuing CA", rsa_key(), hashes.SHA1())
# A private CA (a corporate TLS proxy's), in no store.
PROXY_ROOT = CA.root("Test Proxy Enterprise CA", ec.generate_private_key(ec.SECP256R1()))
PROXY = PROXY_ROOT.intermediate("proxy.example.net", ec.generate_private_key(ec.SECP256R1()))
STORE = (ROOT.cert, SHA1_ROOT.cert)
OTHER_KEY = ec.generate_private_key(ec.SECP256R1())

MEASURED = day("2018-06-01")
SHA1_MEASURED = day("2014-06-01")


@pytest.fixture(autouse=True)
def no_retired_roots(monkeypatch):
    """The real retired roots stay out of these cases; a case that needs one sets its own."""
    monkeypatch.setattr(chaincheck, "retired_roots", lambda: ())
    chaincheck._public_ca_names.cache_clear()
    yield
    chaincheck._public_ca_names.cache_clear()


def sent(*certs) -> list[str]:
    return [pem(c) for c in certs]


GOOD = sent(INTERMEDIATE.leaf(), INTERMEDIATE.cert)
SHA1_GOOD = sent(SHA1_INTERMEDIATE.leaf(start="2014-01-01", end="2015-06-01", algorithm=hashes.SHA1()),
                 SHA1_INTERMEDIATE.cert)
# The same SHA-1 hierarchy issuing a leaf in 2017, after the era: refused for its SHA-1 alone.
SHA1_LATE = sent(SHA1_INTERMEDIATE.leaf(start="2017-02-01", end="2018-12-01", algorithm=hashes.SHA1()),
                 SHA1_INTERMEDIATE.cert)
# A leaf that is no CA, made to sign another leaf for the name.
NOT_A_CA = INTERMEDIATE.leaf(names=("leaf.example.org",), key=OTHER_KEY)
UNDER_A_LEAF = build(name("www.example.org"), LEAF_KEY.public_key(), NOT_A_CA.subject, OTHER_KEY, False,
                     "2018-01-01", "2019-01-01", hashes.SHA256(), OTHER_KEY, ["www.example.org"])
SELF_SIGNED = build(name("www.example.org"), LEAF_KEY.public_key(), name("www.example.org"), LEAF_KEY, False,
                    "2018-01-01", "2019-01-01", hashes.SHA256(), LEAF_KEY, ["www.example.org"])


@pytest.mark.parametrize("pems, asked, when, verified, error", [
    # Valid when measured, though expired today (2019): the name's chain then.
    (GOOD, "www.example.org", MEASURED, True, None),
    # The same chain measured after its leaf expired, or before it was issued.
    (GOOD, "www.example.org", day("2019-01-02"), False, "expired"),
    (GOOD, "www.example.org", day("2017-12-31"), False, "expired"),
    # The same chain asked for another name.
    (GOOD, "www.example.com", MEASURED, False, "name_mismatch"),
    # SHA-1 everywhere, leaf issued in 2014: accepted for its era.
    (SHA1_GOOD, "www.example.org", SHA1_MEASURED, True, None),
    # The same SHA-1 chain measured after it expired is expired, not a SHA-1 matter.
    (SHA1_GOOD, "www.example.org", day("2015-07-01"), False, "expired"),
    # SHA-1 on a leaf issued after the era: refused.
    (SHA1_LATE, "www.example.org", day("2017-06-01"), False, "bad_signature"),
    # A private CA's chain sent up to its issuing CA only (DSV's proxy did that): it stops at an issuer
    # the server left out, as a public chain missing an intermediate does: it cannot be checked.
    (sent(PROXY.leaf(), PROXY.cert), "www.example.org", MEASURED, False, "unknown_issuer"),
    # ... sent with its own root, which no public store ever held: a private CA's, a failure.
    (sent(PROXY.leaf(), PROXY.cert, PROXY_ROOT.cert), "www.example.org", MEASURED, False, "untrusted_root"),
    # A public chain with its intermediate left out: it cannot be checked.
    (GOOD[:1], "www.example.org", MEASURED, False, "unknown_issuer"),
    # A leaf whose issuer's signature is not the issuer's (signed by another key).
    (sent(INTERMEDIATE.leaf(signer=OTHER_KEY), INTERMEDIATE.cert), "www.example.org", MEASURED, False,
     "bad_signature"),
    # A leaf signing a leaf: the validator refuses a certificate that is no CA as an issuer.
    (sent(UNDER_A_LEAF, NOT_A_CA, INTERMEDIATE.cert), "www.example.org", MEASURED, False, "invalid_chain"),
    (sent(SELF_SIGNED), "www.example.org", MEASURED, False, "self_signed"),
    (["junk", 5, "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"], "www.example.org", MEASURED,
     False, "unreadable"),
])
def test_each_outcome(pems, asked, when, verified, error):
    check = check_chain(pems, asked, when, STORE)
    assert (check.verified, check.error) == (verified, error), check.detail
    assert check.method == ("pyhanko-certvalidator" if verified else None)


def test_a_sha1_chain_of_the_era_is_refused_by_todays_rules():
    """Without the era's allowance the same chain fails: the allowance is what accepts it."""
    assert {x509.load_pem_x509_certificate(p.encode()).signature_hash_algorithm.name for p in SHA1_GOOD} == {"sha1"}
    assert check_chain(SHA1_GOOD, "www.example.org", SHA1_MEASURED, STORE).verified
    policy = chaincheck.SHA1_ERA_POLICY
    try:
        chaincheck.SHA1_ERA_POLICY = chaincheck.POLICY
        check = check_chain(SHA1_GOOD, "www.example.org", SHA1_MEASURED, STORE)
    finally:
        chaincheck.SHA1_ERA_POLICY = policy
    assert (check.verified, check.error) == (False, "bad_signature")
    assert "sha1" in check.detail


LEAF_NAMES = ("*.example.org", "example.net")


@pytest.mark.parametrize("asked, matches", [
    ("a.example.org", True),
    ("A.Example.ORG", True),
    ("a.example.org.", True),
    ("example.net", True),
    ("example.org", False),       # a wildcard stands for one label, not none
    ("a.b.example.org", False),   # nor for two
    ("www.example.net", False),
    ("x" * 300, False),           # no DNS name: never a match, never a crash
    ("", False),
])
def test_names_match_as_rfc_6125_says(asked, matches):
    pems = sent(INTERMEDIATE.leaf(names=LEAF_NAMES), INTERMEDIATE.cert)
    check = check_chain(pems, asked, MEASURED, STORE)
    assert check.verified is matches and check.error == (None if matches else "name_mismatch"), check.detail


def test_the_common_name_counts_only_without_a_subject_alt_name():
    without = sent(INTERMEDIATE.leaf(names=(), cn="www.example.org"), INTERMEDIATE.cert)
    assert check_chain(without, "www.example.org", MEASURED, STORE).verified
    beside = sent(INTERMEDIATE.leaf(names=("other.example.org",), cn="www.example.org"), INTERMEDIATE.cert)
    assert check_chain(beside, "www.example.org", MEASURED, STORE).error == "name_mismatch"


@pytest.mark.parametrize("when, verified, error, removed", [
    # In the store when measured: valid then, through a root dropped since.
    (MEASURED, True, None, "2020-01-01"),
    # Measured after it was dropped: a public CA's chain this store cannot check.
    (day("2020-06-01"), False, "unknown_issuer", None),
    # Measured before it entered the store.
    (day("2014-06-01"), False, "unknown_issuer", None),
])
def test_a_retired_root_counts_only_while_it_was_in_the_store(monkeypatch, when, verified, error, removed):
    retired = CA.root("Test Retired Root CA", ec.generate_private_key(ec.SECP256R1()))
    issuing = retired.intermediate("Test Retired Issuing CA", ec.generate_private_key(ec.SECP256R1()))
    monkeypatch.setattr(chaincheck, "retired_roots",
                        lambda: (RetiredRoot(retired.cert, day("2015-01-01"), day("2020-01-01")),))
    pems = sent(issuing.leaf(start="2014-01-01", end="2021-01-01"), issuing.cert)
    check = check_chain(pems, "www.example.org", when, STORE)
    assert (check.verified, check.error, check.root_removed) == (verified, error, removed), check.detail


def test_the_evidence_describes_every_certificate_sent():
    check = check_chain(GOOD, "www.example.org", MEASURED, STORE)
    assert [c["subject"] for c in check.certificates] == ["CN=www.example.org,O=netprobe test",
                                                          "CN=Test Issuing CA,O=netprobe test"]
    assert check.certificates[0]["subject_alt_names"] == ["www.example.org"]


def test_a_hostile_chain_is_capped():
    pems = GOOD[:1] * 500
    check = check_chain(pems, "www.example.org", MEASURED, STORE)
    assert len(check.certificates) == chaincheck.MAX_CHAIN and not check.verified
