"""Table-driven tests of netprobe.classify: failures -> reasons -> verdicts.

No test here opens a socket; exceptions are constructed the way the kernel,
the ssl module and dnspython construct them.
"""

from __future__ import annotations

import errno
import importlib
import inspect
import ipaddress
import pkgutil
import random
import socket
import ssl

import dns.exception
import dns.message
import dns.rdtypes
import dns.resolver
import dns.rrset
import pytest

from netprobe.classify import (
    BLOCKED,
    INCONCLUSIVE,
    REACHABLE,
    REASONS,
    RESET,
    VERDICT_RANK,
    VERDICTS,
    ConnectionClosed,
    Verdict,
    DnsQueryOutcome,
    classify_dns,
    dns_failure,
    dns_reason,
    errno_failure,
    failure_of,
    stream_failure,
    stream_reason,
    tls_failure,
    tls_reason,
    verdict_for,
)

STREAM_STAGES = ("tcp", "control", "tls", "http", "mtproto")


def oserror(code: int) -> OSError:
    """OSError(errno, strerror) as the socket module raises it (auto-subclassed)."""
    return OSError(code, errno.errorcode.get(code, str(code)))


# --- reasons and verdicts ----------------------------------------------------

@pytest.mark.parametrize("reason", sorted(REASONS))
def test_every_reason_maps_to_a_known_verdict_with_a_meaning(reason):
    verdict, meaning = REASONS[reason]
    assert verdict in VERDICTS
    assert meaning.strip()
    stage, dot, failure = reason.partition(".")
    assert dot and stage and failure
    assert verdict_for(reason) == verdict


def test_no_reason_means_reachable_and_only_no_reason_does():
    assert verdict_for(None) == REACHABLE
    assert all(verdict != REACHABLE for verdict, _ in REASONS.values())


def test_the_verdict_rank_orders_every_verdict_worst_last():
    assert sorted(Verdict, key=lambda v: v.rank) == [REACHABLE, INCONCLUSIVE, RESET, BLOCKED]
    assert {verdict: rank for verdict, rank in VERDICT_RANK.items()} == {v: v.rank for v in Verdict}
    assert VERDICT_RANK["blocked"] == 3  # a verdict read back from a record is a plain string


def test_verdicts_are_the_strings_records_have_always_held():
    # Reports list them in this order (columns of the state CSV, the terminal legend).
    assert VERDICTS == tuple(Verdict) == ("reachable", "blocked", "reset", "inconclusive")
    assert [str(v) for v in Verdict] == [f"{v}" for v in Verdict] == list(VERDICTS)
    assert Verdict("reset") is RESET and all(type(verdict) is Verdict for verdict, _ in REASONS.values())


def test_unknown_reason_is_rejected():
    with pytest.raises(KeyError):
        verdict_for("tcp.made_up")


@pytest.mark.parametrize("stage", STREAM_STAGES)
@pytest.mark.parametrize("failure, verdict", [
    ("timeout", BLOCKED), ("refused", RESET), ("reset", RESET), ("eof", BLOCKED),
    ("unreachable", BLOCKED), ("no_route", INCONCLUSIVE), ("local_firewall", INCONCLUSIVE),
    ("local_resources", INCONCLUSIVE), ("unknown", INCONCLUSIVE),
])
def test_every_stream_stage_has_every_stream_failure(stage, failure, verdict):
    assert verdict_for(f"{stage}.{failure}") == verdict


@pytest.mark.parametrize("reason, verdict", [
    ("dns.nxdomain", BLOCKED), ("dns.servfail", BLOCKED), ("dns.refused", BLOCKED),
    ("dns.bad_rcode", BLOCKED), ("dns.no_answer", BLOCKED), ("dns.timeout", BLOCKED),
    ("dns.reset", RESET), ("dns.eof", BLOCKED), ("dns.port_unreachable", BLOCKED),
    ("dns.unreachable", BLOCKED), ("dns.malformed", BLOCKED), ("dns.unexpected_source", BLOCKED),
    ("dns.bogon", BLOCKED), ("dns.teredo", BLOCKED), ("dns.outside_networks", BLOCKED),
    ("dns.no_route", INCONCLUSIVE), ("dns.local_firewall", INCONCLUSIVE),
    ("dns.local_resources", INCONCLUSIVE), ("dns.unknown", INCONCLUSIVE),
    ("run.deadline", INCONCLUSIVE),
])
def test_dns_and_run_reason_verdicts(reason, verdict):
    assert verdict_for(reason) == verdict


def test_failure_of_strips_the_stage():
    assert failure_of("tls.reset") == "reset"
    assert failure_of("dns.outside_networks") == "outside_networks"


# --- errno -> failure ----------------------------------------------------------

ERRNO_TABLE = [
    (errno.ECONNREFUSED, "refused"),
    (errno.ECONNRESET, "reset"),
    (errno.ECONNABORTED, "reset"),
    (errno.EPIPE, "reset"),
    (errno.ENOTCONN, "reset"),
    (errno.ETIMEDOUT, "timeout"),
    (errno.EHOSTUNREACH, "unreachable"),
    (errno.ENETUNREACH, "unreachable"),
    (errno.EHOSTDOWN, "unreachable"),
    (errno.ENONET, "unreachable"),
    (errno.EPROTO, "unreachable"),
    (errno.ENETDOWN, "no_route"),
    (errno.EADDRNOTAVAIL, "no_route"),
    (errno.EAFNOSUPPORT, "no_route"),
    (errno.EACCES, "unreachable"),  # after sending: ICMPv6 administratively prohibited
    (errno.EPERM, "local_firewall"),
    (errno.EMFILE, "local_resources"),
    (errno.ENFILE, "local_resources"),
    (errno.ENOBUFS, "local_resources"),
    (errno.ENOMEM, "local_resources"),
    (errno.EADDRINUSE, "local_resources"),
    (errno.EAGAIN, "local_resources"),
]


@pytest.mark.parametrize("code, failure", ERRNO_TABLE, ids=[errno.errorcode[c] for c, _ in ERRNO_TABLE])
def test_errno_failure_table(code, failure):
    assert errno_failure(code) == failure
    assert stream_failure(oserror(code)) == failure


@pytest.mark.parametrize("code", [errno.ENETUNREACH, errno.EHOSTUNREACH])
def test_unreachable_before_sending_is_no_route_not_a_block(code):
    # connect() failing by itself says this machine has no route: inconclusive.
    assert errno_failure(code, immediate=True) == "no_route"
    assert stream_failure(oserror(code), immediate=True) == "no_route"
    assert verdict_for(stream_reason("tcp", oserror(code), immediate=True)) == INCONCLUSIVE
    # The same errno arriving later (an ICMP unreachable from the path) is a block.
    assert verdict_for(stream_reason("tcp", oserror(code))) == BLOCKED


@pytest.mark.parametrize("code, failure", [
    (errno.ECONNREFUSED, "refused"), (errno.EACCES, "local_firewall"), (errno.EPERM, "local_firewall"),
    (errno.EMFILE, "local_resources"), (errno.ETIMEDOUT, "timeout"),
])
def test_immediate_only_changes_unreachable_errnos(code, failure):
    assert errno_failure(code, immediate=True) == failure


def test_no_errno_is_unknown():
    assert errno_failure(None) == "unknown"


# --- exceptions -> stream reasons ----------------------------------------------

@pytest.mark.parametrize("exc, reason", [
    (TimeoutError(), "tls.timeout"),
    (socket.timeout("timed out"), "tls.timeout"),
    (oserror(errno.ETIMEDOUT), "tls.timeout"),
    (ConnectionResetError(), "tls.reset"),
    (ConnectionResetError("Connection lost"), "tls.reset"),  # asyncio's, without errno
    (oserror(errno.ECONNRESET), "tls.reset"),
    (ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), "tls.eof"),
    (EOFError(), "tls.eof"),
    (ConnectionClosed("peer sent FIN"), "tls.eof"),
    (oserror(errno.ECONNREFUSED), "tls.refused"),
    (ValueError("not a network error"), "tls.unknown"),
], ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else v)
def test_stream_reason(exc, reason):
    assert stream_reason("tls", exc) == reason


def test_oserror_errno_construction_picks_the_builtin_subclass():
    # Sanity: the tables below rely on OSError(errno, ...) becoming these classes.
    assert type(oserror(errno.ECONNRESET)) is ConnectionResetError
    assert type(oserror(errno.ETIMEDOUT)) is TimeoutError


def _real_tls_garbage_error() -> ssl.SSLError:
    """The SSLError a client gets when the 'server' answers its ClientHello with
    non-TLS bytes (a DPI box's HTTP block page); made in memory, no socket."""
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = context.wrap_bio(incoming, outgoing, server_hostname="web.telegram.org")
    with pytest.raises(ssl.SSLWantReadError):
        tls.do_handshake()
    incoming.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n" * 4)
    with pytest.raises(ssl.SSLError) as info:
        tls.do_handshake()
    return info.value


@pytest.mark.parametrize("make, failure", [
    (_real_tls_garbage_error, "protocol_error"),
    (lambda: ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"),
     "bad_certificate"),
    (lambda: ssl.SSLError(1, "[SSL: TLSV1_ALERT_ACCESS_DENIED] tlsv1 alert access denied"), "alert"),
    (lambda: ssl.SSLError(1, "[SSL: TLSV1_UNRECOGNIZED_NAME] tlsv1 unrecognized name"), "alert"),
    (lambda: ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), "eof"),
    (lambda: ssl.SSLZeroReturnError(6, "TLS/SSL connection has been closed (EOF)"), "eof"),
    (lambda: TimeoutError(), "timeout"),
    (lambda: ConnectionResetError(errno.ECONNRESET, "reset"), "reset"),
], ids=["garbage-instead-of-ServerHello", "certificate-verify-failed", "alert", "unrecognized-name", "eof",
        "zero-return", "timeout", "reset"])
def test_tls_failure(make, failure):
    exc = make()
    assert tls_failure(exc) == failure
    assert tls_reason(exc) in REASONS


@pytest.mark.parametrize("make", [
    _real_tls_garbage_error,
    lambda: ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed"),
], ids=["garbage-instead-of-ServerHello", "certificate-verify-failed"])
def test_stream_failure_does_not_read_ssl_codes_as_errnos(make):
    assert stream_failure(make()) != "local_firewall"


# --- no socket error reaches the 'unknown' bucket ------------------------------

# Errors listed in the Linux man pages (man-pages 6.x), section ERRORS.
MAN_CONNECT = ["EACCES", "EPERM", "EADDRINUSE", "EADDRNOTAVAIL", "EAFNOSUPPORT", "EAGAIN", "EALREADY",
               "EBADF", "ECONNREFUSED", "EFAULT", "EINPROGRESS", "EINTR", "EISCONN", "ENETUNREACH",
               "ENOTSOCK", "EPROTOTYPE", "ETIMEDOUT"]
MAN_SEND = ["EACCES", "EAGAIN", "EWOULDBLOCK", "EALREADY", "EBADF", "ECONNRESET", "EDESTADDRREQ", "EFAULT",
            "EINTR", "EINVAL", "EISCONN", "EMSGSIZE", "ENOBUFS", "ENOMEM", "ENOTCONN", "ENOTSOCK",
            "EOPNOTSUPP", "EPIPE"]
MAN_RECV = ["EAGAIN", "EWOULDBLOCK", "EBADF", "ECONNREFUSED", "EFAULT", "EINTR", "EINVAL", "ENOMEM",
            "ENOTCONN", "ENOTSOCK"]
MAN_GETSOCKOPT = ["EBADF", "EFAULT", "EINVAL", "ENOPROTOOPT", "ENOTSOCK"]
MAN_SOCKET = ["EACCES", "EAFNOSUPPORT", "EINVAL", "EMFILE", "ENFILE", "ENOBUFS", "ENOMEM", "EPROTONOSUPPORT"]

# Programming errors: they mean netprobe misused a socket, not anything about this
# machine or the network path, so they are deliberately left 'unknown' (inconclusive).
PROGRAMMING_ERRORS = ["EBADF", "EFAULT", "ENOTSOCK", "EINVAL", "EISCONN", "EALREADY", "EINPROGRESS", "EINTR",
                      "EPROTOTYPE", "EDESTADDRREQ"]

MAN_ERRNOS = sorted(set(MAN_CONNECT + MAN_SEND + MAN_RECV + MAN_GETSOCKOPT + MAN_SOCKET) - set(PROGRAMMING_ERRORS))



@pytest.mark.parametrize("name", MAN_ERRNOS)
def test_no_man_page_socket_errno_is_unknown(name):
    exc = oserror(getattr(errno, name))
    assert stream_failure(exc) != "unknown"
    assert stream_failure(exc, immediate=True) != "unknown"


@pytest.mark.parametrize("name", PROGRAMMING_ERRORS)
def test_programming_errors_are_not_read_as_network_evidence(name):
    assert stream_failure(oserror(getattr(errno, name))) == "unknown"
    assert verdict_for(stream_reason("tcp", oserror(getattr(errno, name)))) == INCONCLUSIVE


@pytest.mark.parametrize("name", MAN_ERRNOS + PROGRAMMING_ERRORS)
@pytest.mark.parametrize("stage", STREAM_STAGES)
def test_every_errno_gives_a_declared_reason(stage, name):
    exc = oserror(getattr(errno, name))
    assert stream_reason(stage, exc) in REASONS
    assert stream_reason(stage, exc, immediate=True) in REASONS
    assert dns_reason(exc) in REASONS


@pytest.mark.parametrize("exc", [
    pytest.param(ConnectionError("connection lost"), id="ConnectionError"),
    pytest.param(BrokenPipeError(), id="BrokenPipeError"),
    pytest.param(ConnectionAbortedError(), id="ConnectionAbortedError"),
    pytest.param(ConnectionRefusedError(), id="ConnectionRefusedError"),
    pytest.param(ConnectionResetError(), id="ConnectionResetError"),
    pytest.param(socket.timeout(), id="socket.timeout"),
])
def test_builtin_connection_errors_without_errno_are_classified(exc):
    assert stream_failure(exc) != "unknown"


@pytest.mark.parametrize("cls, failure", [
    (BrokenPipeError, "reset"), (ConnectionAbortedError, "reset"), (ConnectionRefusedError, "refused"),
    (ConnectionResetError, "reset"),
])
def test_builtin_connection_errors_with_errno(cls, failure):
    code = {BrokenPipeError: errno.EPIPE, ConnectionAbortedError: errno.ECONNABORTED,
            ConnectionRefusedError: errno.ECONNREFUSED, ConnectionResetError: errno.ECONNRESET}[cls]
    exc = oserror(code)
    assert isinstance(exc, cls)
    assert stream_failure(exc) == failure


# --- dnspython exceptions -> dns reasons ---------------------------------------

@pytest.mark.parametrize("exc, reason", [
    (dns.exception.Timeout(), "dns.timeout"),
    (dns.resolver.LifetimeTimeout(timeout=1.0, errors=[]), "dns.timeout"),
    (TimeoutError(), "dns.timeout"),
    (dns.resolver.NXDOMAIN(), "dns.nxdomain"),
    (dns.resolver.NoAnswer(), "dns.no_answer"),
    (dns.resolver.NoNameservers(), "dns.servfail"),
    (dns.resolver.YXDOMAIN(), "dns.bad_rcode"),
    (dns.exception.FormError(), "dns.malformed"),
    (dns.message.ShortHeader(), "dns.malformed"),
    (dns.message.TrailingJunk(), "dns.malformed"),
    (dns.message.Truncated(), "dns.malformed"),
    (dns.name.BadLabelType(), "dns.malformed"),
    (ConnectionRefusedError(), "dns.port_unreachable"),
    (oserror(errno.ECONNREFUSED), "dns.port_unreachable"),
    (oserror(errno.ECONNRESET), "dns.reset"),
    (EOFError(), "dns.eof"),
    (oserror(errno.EHOSTUNREACH), "dns.unreachable"),
    (oserror(errno.ENETDOWN), "dns.no_route"),
    (oserror(errno.EPERM), "dns.local_firewall"),
    (oserror(errno.EMFILE), "dns.local_resources"),
], ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else v)
def test_dns_reason(exc, reason):
    assert dns_reason(exc) == reason
    assert reason in REASONS


def test_unexpected_source_is_its_own_reason():
    exc = dns.query.UnexpectedSource("got a response from 6.6.6.6 instead of 1.1.1.1")
    assert dns_reason(exc) == "dns.unexpected_source"


DNS_QUERY_PATH_MODULES = ["dns.exception", "dns.message", "dns.query", "dns.asyncquery", "dns.name",
                          "dns.rcode", "dns.opcode", "dns.rdata", "dns.rdatatype", "dns.rdataclass",
                          "dns.rdataset", "dns.tsig", "dns.resolver", "dns.edns"]


def _dns_exception_classes() -> list[type]:
    modules = list(DNS_QUERY_PATH_MODULES)
    modules += [m.name for m in pkgutil.walk_packages(dns.rdtypes.__path__, "dns.rdtypes.")]
    found: dict[str, type] = {}
    for name in modules:
        module = importlib.import_module(name)
        for obj in vars(module).values():
            if (inspect.isclass(obj) and issubclass(obj, dns.exception.DNSException)
                    and obj is not dns.exception.DNSException and obj.__module__ == name):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return [found[k] for k in sorted(found)]


def _instantiate(cls: type) -> BaseException:
    try:
        return cls()
    except Exception:  # noqa: BLE001 - any constructor signature
        exc = cls.__new__(cls)
        Exception.__init__(exc)
        return exc


# The dnspython exceptions whose failure is not "malformed"; every other one the
# walk finds is a reply that was not a well-formed answer to our question.
DNS_EXCEPTION_FAILURES = {
    "dns.exception.Timeout": "timeout",
    "dns.resolver.LifetimeTimeout": "timeout",
    "dns.resolver.NXDOMAIN": "nxdomain",
    "dns.resolver.NoAnswer": "no_answer",
    "dns.resolver.NoNameservers": "servfail",
    "dns.resolver.YXDOMAIN": "bad_rcode",
    "dns.query.UnexpectedSource": "unexpected_source",
}


def _dns_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _dns_params():
    for cls in _dns_exception_classes():
        name = _dns_name(cls)
        yield pytest.param(cls, DNS_EXCEPTION_FAILURES.get(name, "malformed"), id=name)


def test_the_walk_finds_the_dnspython_exceptions():
    names = {_dns_name(c) for c in _dns_exception_classes()}
    assert {"dns.message.ShortHeader", "dns.name.BadPointer"} <= names
    assert set(DNS_EXCEPTION_FAILURES) <= names, "a class of the table is no longer in dnspython"
    assert len(names) > 40


@pytest.mark.parametrize("cls, failure", list(_dns_params()))
def test_each_dnspython_error_has_its_exact_failure(cls, failure):
    """Per class, not 'anything but unknown': a lost mapping (NXDOMAIN read as
    malformed, say) fails here, as does a new dnspython class under Timeout."""
    assert dns_failure(_instantiate(cls)) == failure
    assert f"dns.{failure}" in REASONS


def test_fuzzed_dns_answers_never_reach_unknown():
    """Mutated wire-format answers: whatever dnspython raises while parsing is classified."""
    query = dns.message.make_query("web.telegram.org", "AAAA", use_edns=0, payload=1232)
    response = dns.message.make_response(query)
    response.answer.append(dns.rrset.from_text("web.telegram.org.", 300, "IN", "AAAA", "2001:67c:4e8:f004::9"))
    response.answer.append(dns.rrset.from_text("web.telegram.org.", 300, "IN", "TXT", "x"))
    wire = response.to_wire()
    rng = random.Random(20261128)
    failures = set()
    for _ in range(3000):
        data = bytearray(wire)
        for _ in range(rng.randint(1, 5)):
            op = rng.random()
            if op < 0.6 and data:
                data[rng.randrange(len(data))] = rng.randrange(256)
            elif op < 0.8 and len(data) > 1:
                del data[rng.randrange(len(data)):]
            else:
                data.insert(rng.randrange(len(data) + 1), rng.randrange(256))
        try:
            dns.message.from_wire(bytes(data))
        except Exception as exc:  # noqa: BLE001 - the point is to see every kind
            failures.add((type(exc).__name__, dns_reason(exc)))
    assert failures, "the mutations should break some answers"
    assert not [f for f in failures if f[1].endswith(".unknown")], failures


# --- DNS answers -> reasons ----------------------------------------------------

NETS = tuple(ipaddress.ip_network(n) for n in ("149.154.160.0/20", "2001:67c:4e8::/48", "10.20.0.0/16"))


def a(*addresses, rcode="NOERROR"):
    return DnsQueryOutcome("A", rcode=rcode, addresses=tuple(addresses))


def aaaa(*addresses, rcode="NOERROR"):
    return DnsQueryOutcome("AAAA", rcode=rcode, addresses=tuple(addresses))


@pytest.mark.parametrize("outcomes, reason", [
    pytest.param([a("149.154.167.99"), aaaa("2001:67c:4e8:f004::9")], None, id="genuine-A-and-AAAA"),
    pytest.param([a("10.20.1.1"), aaaa()], None, id="private-address-inside-networks"),
    pytest.param([a("149.154.167.99"), aaaa()], None, id="A-ok-AAAA-empty"),
    pytest.param([a(), aaaa("2001:67c:4e8:f004::9")], None, id="A-empty-AAAA-ok"),
    pytest.param([a(rcode="NXDOMAIN"), aaaa(rcode="NXDOMAIN")], "dns.nxdomain", id="nxdomain"),
    pytest.param([a(rcode="SERVFAIL"), aaaa(rcode="SERVFAIL")], "dns.servfail", id="servfail"),
    pytest.param([a(rcode="REFUSED"), aaaa()], "dns.refused", id="refused"),
    pytest.param([a(rcode="NOTIMP"), aaaa()], "dns.bad_rcode", id="notimp"),
    pytest.param([a(rcode="FORMERR"), aaaa()], "dns.bad_rcode", id="formerr"),
    pytest.param([a(rcode="BADVERS"), aaaa()], "dns.bad_rcode", id="badvers"),
    pytest.param([a(rcode="3841"), aaaa()], "dns.bad_rcode", id="numeric-rcode"),
    pytest.param([a("149.154.167.99"), aaaa(rcode="NXDOMAIN")], "dns.nxdomain", id="rcode-beats-address"),
    pytest.param([a(), aaaa()], "dns.no_answer", id="both-empty"),
    pytest.param([a("8.8.8.8"), aaaa()], "dns.outside_networks", id="public-outside"),
    pytest.param([a("149.154.167.99", "93.184.216.34"), aaaa()], "dns.outside_networks",
                 id="mixed-genuine-and-outside"),
    pytest.param([a("149.154.167.99"), aaaa("2001:db8:1::1")], "dns.bogon", id="documentation-v6-bogon"),
    pytest.param([a("8.8.8.8"), aaaa("2001::1")], "dns.teredo", id="teredo-wins-over-outside"),
    pytest.param([a("127.0.0.1"), aaaa("2001:0:53aa:64c::1")], "dns.teredo", id="teredo-wins-over-bogon"),
    pytest.param([a("127.0.0.1"), aaaa("2a00:1450::1")], "dns.bogon", id="bogon-wins-over-outside"),
])
def test_classify_dns(outcomes, reason):
    assert classify_dns(outcomes, NETS) == reason


@pytest.mark.parametrize("address", [
    "10.10.34.35", "127.0.0.1", "169.254.1.1", "100.64.0.1", "0.0.0.0", "192.168.1.1", "172.16.0.1",
    "240.0.0.1", "::1", "fe80::1", "fc00::1", "fd00::1", "::", "::ffff:1.2.3.4",
])
def test_bogon_outside_networks(address):
    qtype = "AAAA" if ":" in address else "A"
    outcome = DnsQueryOutcome(qtype, rcode="NOERROR", addresses=(address,))
    assert classify_dns([outcome], NETS) == "dns.bogon"


@pytest.mark.parametrize("address", ["2001::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2", "2001:0:ffff::"])
def test_teredo_aaaa(address):
    assert classify_dns([a("149.154.167.99"), aaaa(address)], NETS) == "dns.teredo"


@pytest.mark.parametrize("error_reason", ["dns.timeout", "dns.port_unreachable", "dns.malformed"])
def test_an_error_wins_over_addresses(error_reason):
    failed = DnsQueryOutcome("AAAA", error_reason=error_reason)
    assert classify_dns([a("149.154.167.99"), failed], NETS) == error_reason
    assert classify_dns([failed, a("149.154.167.99")], NETS) == error_reason


def test_an_error_wins_over_an_error_rcode():
    failed = DnsQueryOutcome("AAAA", error_reason="dns.timeout")
    assert classify_dns([a(rcode="NXDOMAIN"), failed], NETS) == "dns.timeout"


def test_networks_may_be_any_iterable():
    assert classify_dns([a("149.154.167.99")], iter(NETS)) is None


def test_no_networks_means_no_network_constraint():
    assert classify_dns([a("93.184.216.34"), aaaa()], ()) is None
