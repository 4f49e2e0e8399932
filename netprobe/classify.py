"""The one place where failures become reasons and reasons become verdicts.

Probes only observe: they record what happened (an exception, an rcode, the
addresses in an answer) and hand it here.  Everything in this module is a pure
function of those observations, so every verdict netprobe can give is tested
by tables without a network (tests/test_classify.py).

A reason is `STAGE.FAILURE` (`dns.nxdomain`, `tcp.refused`, `tls.reset`, ...).
Each reason has exactly one verdict, listed in REASONS with what it means.
"""

from __future__ import annotations

import errno
import functools
import re
import socket
import sys
from dataclasses import dataclass
from enum import StrEnum
from typing import Iterable, Sequence
from urllib.parse import urlsplit

from netprobe.addresses import IPAddress, IPNetwork, in_networks, is_bogon, is_teredo, parse_ip

class Verdict(StrEnum):
    """A record's verdict, always derived from its reason (REASONS).  A str, so records keep
    writing, reading and comparing plain strings.  `rank` puts the worst last: a run's records of
    one target fold into its worst verdict (netprobe/report/fold.py), and the run's table lists
    the worst first (netprobe/render.py).  Declared in the order reports show them."""

    REACHABLE = "reachable", 0
    BLOCKED = "blocked", 3
    RESET = "reset", 2
    INCONCLUSIVE = "inconclusive", 1

    def __new__(cls, value: str, rank: int):
        member = str.__new__(cls, value)
        member._value_ = value
        member.rank = rank
        return member


REACHABLE, BLOCKED, RESET, INCONCLUSIVE = Verdict.REACHABLE, Verdict.BLOCKED, Verdict.RESET, Verdict.INCONCLUSIVE
VERDICTS = tuple(Verdict)
# The rank of a verdict read back as a plain string (a record line): one dict lookup.
VERDICT_RANK = {verdict: verdict.rank for verdict in Verdict}

# The failures that every connection-oriented stage can suffer.  A stage name
# is prefixed to each (`tcp.timeout`, `tls.timeout`, `mtproto.reset`, ...).
_STREAM_FAILURES = {
    "timeout": (BLOCKED, "no answer before the deadline (packets dropped)"),
    "refused": (RESET, "the connection attempt was answered with a TCP reset"),
    "reset": (RESET, "an established connection was reset"),
    "eof": (BLOCKED, "the peer closed the connection before answering"),
    "unreachable": (BLOCKED, "an ICMP unreachable / administratively prohibited arrived"),
    "no_route": (INCONCLUSIVE, "this vantage point has no route for the address (family)"),
    "local_firewall": (INCONCLUSIVE, "a firewall on this machine refused the packet"),
    "local_resources": (INCONCLUSIVE, "this machine ran out of sockets or memory"),
    "unknown": (INCONCLUSIVE, "an error netprobe does not know how to read"),
}

REASONS: dict[str, tuple[str, str]] = {
    **{f"{stage}.{failure}": meaning
       for stage in ("tcp", "control", "tls", "http", "mtproto")
       for failure, meaning in _STREAM_FAILURES.items()},
    "dns.nxdomain": (BLOCKED, "the resolver says the name does not exist"),
    "dns.servfail": (BLOCKED, "the resolver answered SERVFAIL"),
    "dns.refused": (BLOCKED, "the resolver answered REFUSED"),
    "dns.bad_rcode": (BLOCKED, "the resolver answered an unexpected error code"),
    "dns.no_answer": (BLOCKED, "neither A nor AAAA records were returned"),
    "dns.timeout": (BLOCKED, "no DNS answer before the deadline"),
    "dns.reset": (RESET, "the DNS query over TCP was reset"),
    "dns.eof": (BLOCKED, "the resolver closed the TCP connection without answering"),
    "dns.port_unreachable": (BLOCKED, "the resolver's DNS port answered ICMP port unreachable"),
    "dns.unreachable": (BLOCKED, "an ICMP unreachable arrived for the resolver"),
    "dns.malformed": (BLOCKED, "the DNS answer could not be parsed"),
    "dns.unexpected_source": (BLOCKED, "an answer came from an address we did not ask"),
    "dns.bogon": (BLOCKED, "an answer is a private/reserved address outside the service's networks"),
    "dns.teredo": (BLOCKED, "an AAAA answer lies in Teredo 2001::/32, a known forgery signature"),
    "dns.outside_networks": (BLOCKED, "an answer lies outside the service's networks"),
    "dns.no_route": (INCONCLUSIVE, "this vantage point has no route to the resolver"),
    "dns.local_firewall": (INCONCLUSIVE, "a firewall on this machine refused the DNS packet"),
    "dns.local_resources": (INCONCLUSIVE, "this machine ran out of sockets or memory"),
    "dns.unknown": (INCONCLUSIVE, "an error netprobe does not know how to read"),
    "dns.doh_http_error": (BLOCKED, "the DNS-over-HTTPS server answered an HTTP error or not DNS"),
    "dns.doh_tls_error": (BLOCKED, "the TLS handshake with the DNS-over-HTTPS server failed"),
    "dns.intercepted": (INCONCLUSIVE, "an address that runs no DNS server gave a genuine answer: a "
                        "transparent DNS proxy, not evidence of blocking"),
    "probe.overrun": (INCONCLUSIVE, "the probe outlived its own deadline: this machine stalled, "
                      "so its timing says nothing about the path"),
    "dns.injected": (BLOCKED, "an address that runs no DNS server answered: something on the path "
                     "answers DNS in its place"),
    "tls.bad_certificate": (BLOCKED, "the certificate does not verify for the name (interception?)"),
    "tls.alert": (BLOCKED, "the TLS handshake was answered with an alert"),
    "tls.protocol_error": (BLOCKED, "the answer to our ClientHello was not TLS"),
    "http.blockpage": (BLOCKED, "an HTTP answer that is a blockpage (451, or a redirect off the service)"),
    "http.bad_response": (BLOCKED, "the answer was not HTTP"),
    "mtproto.bad_response": (BLOCKED, "the answer to req_pq_multi was not MTProto"),
    "mtproto.nonce_mismatch": (BLOCKED, "a resPQ that does not echo our nonce"),
    "http.known_blockpage": (BLOCKED, "the answer matches a known blockpage fingerprint (OONI's public list)"),
    "http.not_service": (INCONCLUSIVE, "the answer came from an address outside the service's networks: it "
                         "cannot be shown to be the service's"),
    # --- a failure (or a success) weighed against the controls of its stage (netprobe/vantage.py)
    "dns.resolver_failing": (INCONCLUSIVE, "the resolver failed for the control names too: it is broken or "
                             "unreachable, not blocking the service"),
    "dns.same_for_all": (INCONCLUSIVE, "the resolver answered the control names the same way: it answers every "
                         "name alike (captive portal, walled garden)"),
    "dns.resolver_untrusted": (INCONCLUSIVE, "the control names' answers from this resolver lead to servers "
                               "whose TLS does not verify for them (captive portal)"),
    "dns.intercepted_all": (INCONCLUSIVE, "the address that runs no DNS server answered the control names alike: "
                            "all DNS is intercepted, not only the service's"),
    "tcp.path_failing": (INCONCLUSIVE, "every TCP control of this address family and port failed too"),
    "tcp.intercepted": (INCONCLUSIVE, "a connection that must fail was accepted on this port: something on the "
                        "path accepts every connection, so a completed handshake proves nothing"),
    "tcp.service_intercepted": (INCONCLUSIVE, "on this port something that is not the service answers for the "
                                "service's addresses while controls get through (see the summary): a completed "
                                "handshake proves nothing"),
    "control.path_check": (INCONCLUSIVE, "a path check, not a pass or fail: who answers MTProto's first request "
                           "on this port (evidence.observed_reason); the service's answers are weighed against it"),
    "tls.untrusted_for_all": (INCONCLUSIVE, "TLS fails verification for the control names too (a TLS-intercepting "
                              "proxy, a wrong clock or trust store)"),
    "tls.intercepted_trusted": (INCONCLUSIVE, "the certificate verifies, but it has the issuer every control "
                                "name's certificate has: a TLS-intercepting proxy whose root this machine trusts "
                                "(a company's) answered, not the service"),
    "tls.path_failing": (INCONCLUSIVE, "TLS handshakes with the control names failed too"),
    "http.path_failing": (INCONCLUSIVE, "plain HTTP to the control names failed too"),
    "http.intercepted": (INCONCLUSIVE, "this port is intercepted: an answer on it cannot be shown to be the "
                         "service's"),
    "mtproto.intercepted": (INCONCLUSIVE, "this port is intercepted: the MTProto failure is the interceptor's "
                            "answer, not the service's"),
    # --- plain HTTP's controls missing or answered by someone else (targets control_domains.http)
    "http.no_control": (INCONCLUSIVE, "no control name was fetched over plain HTTP in the same run (or "
                        "measurement): nothing shows the path carries other names' HTTP, so the failure (observed "
                        "reason in the evidence) is no evidence of blocking"),
    "mtproto.path_failing": (INCONCLUSIVE, "MTProto's request to hosts that are not the service, on the same "
                             "port, ended the same way (reset, timeout, closed): the path ends it for everyone"),
    "mtproto.no_control": (INCONCLUSIVE, "no control connection of this address family and no path check on "
                           "this port were measured in the same run: nothing shows the MTProto failure is the "
                           "service's, not the path's (observed reason in the evidence)"),
    "http.not_genuine": (BLOCKED, "a control name's plain-HTTP answer is not the one its genuine server gives "
                         "(the target file's http expectation): something else on the path answered"),
    "interception.accepted": (INCONCLUSIVE, "negative control: a connection that must fail was accepted, so "
                              "something on the path answers for every address on this port"),
    "vantage.offline": (INCONCLUSIVE, "no control got through at any stage and nothing answered: this vantage "
                        "point looks offline"),
    "vantage.undecided": (INCONCLUSIVE, "the run ended before the controls decided whether this vantage point "
                          "is online"),
    "vantage.ipv4_offline": (INCONCLUSIVE, "every IPv4 control failed: IPv4 looks offline here"),
    "vantage.ipv6_offline": (INCONCLUSIVE, "every IPv6 control failed: IPv6 looks offline here"),
    "vantage.no_open_access": (INCONCLUSIVE, "no control got through at any stage while something on the path "
                               "answers: this network gives no open access (captive portal, walled garden)"),
    "summary.blocking_observed": (BLOCKED, "at least one technique of blocking was observed, backed by passing "
                                  "controls of its stage (see findings)"),
    "summary.network_changed": (INCONCLUSIVE, "blocking was seen only at stages whose controls changed during the "
                                "run: the network changed under it"),
    "summary.undecided": (INCONCLUSIVE, "the run ended before any control answered: nothing can be concluded"),
    "summary.nothing_concluded": (INCONCLUSIVE, "no probe got a genuine answer, and none showed a block"),
    "summary.offline": (INCONCLUSIVE, "no control endpoint was reachable: nothing can be concluded"),
    "summary.intercepted": (INCONCLUSIVE, "a stage is intercepted for every name or address and nothing else "
                            "was backed by its controls: the vantage point says nothing about the service"),
    "summary.no_open_access": (INCONCLUSIVE, "no control got through at any stage while something on the path "
                               "answers: this network gives no open access to the Internet"),
    "run.deadline": (INCONCLUSIVE, "the run's deadline ended the probe before it finished"),
    # --- RIPE Atlas only (netprobe/interop/atlas.py): Atlas reports a certificate chain, not a verified handshake
    "tls.unknown_issuer": (INCONCLUSIVE, "the certificate is for the name, but its chain stops at an issuer the "
                           "server did not send and no trust store netprobe knows holds (an intermediate left out, "
                           "or a root this store lacks): it cannot be checked, so it says nothing of blocking"),
    "tls.old_version": (INCONCLUSIVE, "the server refused the probe's TLS 1.2 ClientHello (alert "
                        "protocol_version): RIPE Atlas probes do not offer TLS 1.3, so this says nothing of blocking"),
    # --- a failure with no control of its stage: in a local run (a target file that names none, or
    # --no-default-controls; netprobe/vantage.py) or from the same probe and run (RIPE Atlas)
    "dns.no_control": (INCONCLUSIVE, "no control name was answered by the same resolver (or asked at the same "
                       "canary) in the same run, or from the same probe in the same run: nothing shows this "
                       "resolver answers other names, so the failure (observed reason in the evidence) is no "
                       "evidence of blocking"),
    "dns.resolver_no_control": (INCONCLUSIVE, "the resolver refused, failed, returned no address or did not answer, "
                                "and it answered no control name from the same probe in the same run: the "
                                "resolver's own failure, not evidence of blocking"),
    "tcp.no_control": (INCONCLUSIVE, "no TCP control of this address family was measured in the same run (or "
                       "from the same probe in the same run): nothing shows the path carries other connections, "
                       "so the failure is no evidence of blocking"),
    "tls.no_control": (INCONCLUSIVE, "no control name's TLS was measured in the same run (or its certificate "
                       "judged from the same probe in the same run): nothing shows the path carries genuine TLS, "
                       "so the failure is no evidence of blocking"),
    # --- OONI measurements (netprobe/interop/ooni/): other people's data, judged by the same rule; a failure
    # with no control in the measurement is dns/tcp/tls.no_control above ("probe" and "run" being
    # OONI's probe and measurement: OONI's telegram test measures no control at all)
    **{f"{stage}.unconfirmed": (INCONCLUSIVE, "a failure or a different answer that OONI flagged as an anomaly, "
                                "but neither OONI's pipeline confirmed it nor does the page match a known blockpage: "
                                "OONI's test helper measured from elsewhere, which says whether the site is up, not "
                                "what this path does to it; the observed reason is in the evidence")
       for stage in ("dns", "tcp", "tls", "http")},
    **{f"{stage}.unproven": (INCONCLUSIVE, "the connection completed (or a data center answered a POST), but "
                             "nothing in the imported measurement shows the answer was the service's: a box that "
                             "accepts every connection gives the same, and no connection that must fail was tried "
                             "on the same path")
       for stage in ("tcp", "http")},
    "summary.unjudged": (INCONCLUSIVE, "no blocking can be signed: failures were seen that nothing in the same "
                         "measurement can judge (no control through the same path, nothing confirming a block), "
                         "and the rest got through"),
    "dns.known_blockpage": (BLOCKED, "the resolver answered an address that OONI's public DNS fingerprints name as "
                            "a blockpage's (a censor's, an ISP's or a filter's)"),
}


def verdict_for(reason: str | None) -> Verdict:
    if reason is None:
        return REACHABLE
    return REASONS[reason][0]


def failure_of(reason: str) -> str:
    return reason.partition(".")[2]


# --- OONI failure strings <-> reasons (netprobe import ooni / export ooni) ------
#
# OONI names a failure by what the socket or library said (df-007-errors), not by
# the stage it happened in; the stage comes from where OONI recorded it (a
# tcp_connect entry, a TLS handshake, a DNS query, an HTTP request).  A value
# with a dot is a whole reason whatever the stage (a DNS or certificate error
# can only be that); a value without one is a stream failure, prefixed with
# the stage.  Order matters for the reverse direction: the first OONI string
# naming a failure is the one netprobe writes.

_OONI_CURRENT = {  # ooniprobe (Go) and Measurement Kit: what netprobe writes, too
    "generic_timeout_error": "timeout",
    "connection_refused": "refused",
    "connection_reset": "reset",
    "eof_error": "eof",
    "host_unreachable": "unreachable",
    "network_unreachable": "no_route",  # ENETUNREACH: almost always this machine's own routing (no IPv6)
    "network_down": "no_route",
    "connection_aborted": "reset",
    "network_reset": "reset",
    "dns_nxdomain_error": "dns.nxdomain",
    "dns_servfail_error": "dns.servfail",
    "dns_refused_error": "dns.refused",
    "dns_no_answer": "dns.no_answer",
    "dns_bogon_error": "dns.bogon",
    "dns_server_misbehaving": "dns.bad_rcode",
    "dns_non_recoverable_failure": "dns.bad_rcode",
    "dns_temporary_failure": "dns.servfail",  # getaddrinfo EAI_AGAIN: SERVFAIL or no answer in time
    "android_dns_cache_no_data": "dns.no_answer",  # Android's getaddrinfo: no data, cause unknown
    "ssl_invalid_certificate": "tls.bad_certificate",
    "ssl_invalid_hostname": "tls.bad_certificate",  # also a TLS unrecognized_name alert
    "ssl_unknown_authority": "tls.bad_certificate",
    "ssl_failed_handshake": "tls.alert",
    "http_unexpected_status_code": "http.blockpage",
    "http_unexpected_redirect_url": "http.blockpage",
}
OONI_FAILURES: dict[str, str] = {
    **_OONI_CURRENT,
    # read, never written: too vague or too specific for what netprobe observed
    "dns_reply_with_wrong_query_id": "dns.malformed",
    "connection_already_closed": "unknown",
    "interrupted": "unknown",
    # ooniprobe-legacy (Python, Twisted)
    "connection_refused_error": "refused",
    "connect_error": "unknown",
    "tcp_timed_out_error": "timeout",
    "deferred_timeout_error": "timeout",
    "task_timed_out": "timeout",
    "connection_lost_error": "reset",
    "connection_done": "eof",
    "response_never_received": "eof",
    "address_family_not_supported_error": "no_route",
    "dns_name_error": "dns.nxdomain",
    "dns_name_failure": "dns.servfail",
    "dns_lookup_error": "dns.unknown",
}

# A DNS stage reads the stream failures its own way (REASONS has no dns.refused
# for a refused TCP connection: that is the port answering unreachable).
_DNS_STREAM = {"refused": "port_unreachable"}


def ooni_reason(failure: str, stage: str) -> str:
    """The reason for an OONI failure string met at `stage` (tcp, tls, http or dns).

    Unknown strings (OONI's own "unknown_failure: ..." among them) are
    `STAGE.unknown`: recorded, never guessed at.  A refused connection can only
    happen at connect time, so it is `tcp.refused` whatever request it ended.
    """
    mapped = OONI_FAILURES.get(failure, "unknown")
    if failure.startswith("unknown_failure: ") and failure[17:] in REASONS:
        return failure[17:]  # netprobe's own export names reasons OONI has no word for
    if "." in mapped:
        return mapped
    if stage == "dns":
        return f"dns.{_DNS_STREAM.get(mapped, mapped)}"
    if mapped == "refused":
        return "tcp.refused"
    reason = f"{stage}.{mapped}"
    return reason if reason in REASONS else f"{stage}.unknown"


def ooni_failure(reason: str) -> str:
    """The OONI failure string for a netprobe reason; `unknown_failure: REASON` when OONI
    has no word for it (df-007 allows any text after unknown_failure)."""
    for text, mapped in _OONI_CURRENT.items():
        if mapped == reason:
            return text
    stage, _, failure = reason.partition(".")
    if stage == "dns":
        failure = {v: k for k, v in _DNS_STREAM.items()}.get(failure, failure)
    if failure in _STREAM_FAILURES and failure != "unknown":
        for text, mapped in _OONI_CURRENT.items():
            if mapped == failure:
                return text
    return f"unknown_failure: {reason}"


# --- exceptions -> reasons ---------------------------------------------------

_ERRNO_FAILURES = {
    errno.ECONNREFUSED: "refused",
    errno.ECONNRESET: "reset",
    errno.ECONNABORTED: "reset",
    errno.EPIPE: "reset",
    errno.ENOTCONN: "reset",
    errno.ETIMEDOUT: "timeout",
    errno.EHOSTUNREACH: "unreachable",
    errno.ENETUNREACH: "unreachable",
    errno.EHOSTDOWN: "unreachable",
    errno.ENONET: "unreachable",
    errno.ENOPROTOOPT: "unreachable",  # ICMP protocol unreachable
    errno.EPROTO: "unreachable",
    errno.EMSGSIZE: "unreachable",  # ICMP fragmentation needed
    errno.EOPNOTSUPP: "unreachable",  # ICMP source route failed
    errno.ENETDOWN: "no_route",
    errno.EADDRNOTAVAIL: "no_route",
    errno.EAFNOSUPPORT: "no_route",
    errno.EPROTONOSUPPORT: "no_route",
    errno.EACCES: "local_firewall",
    errno.EPERM: "local_firewall",
    errno.EMFILE: "local_resources",
    errno.ENFILE: "local_resources",
    errno.ENOBUFS: "local_resources",
    errno.ENOMEM: "local_resources",
    errno.EADDRINUSE: "local_resources",  # no free local port left
    errno.EAGAIN: "local_resources",
}

# Errors raised by connect() itself, before any packet left: the network
# has not answered, so they say something about this machine, not the path.
_IMMEDIATE_NO_ROUTE = {errno.ENETUNREACH, errno.EHOSTUNREACH}


# After a packet left, EACCES comes from the path: Linux reports an ICMPv6
# "administratively prohibited" that way. This machine's own netfilter refuses
# with EPERM, or with EACCES before anything is sent.
_PROHIBITED_BY_PATH = {errno.EACCES}


def errno_failure(err: int | None, *, immediate: bool = False) -> str:
    if immediate and err in _IMMEDIATE_NO_ROUTE:
        return "no_route"
    if not immediate and err in _PROHIBITED_BY_PATH:
        return "unreachable"
    return _ERRNO_FAILURES.get(err, "unknown")


def _is_ssl_error(exc: BaseException | None) -> bool:
    """An ssl.SSLError: there is none unless ssl was imported, which a TCP sweep never does
    (ssl takes longer to import than a small sweep to run)."""
    ssl = sys.modules.get("ssl")
    return ssl is not None and isinstance(exc, ssl.SSLError)


def stream_failure(exc: BaseException, *, immediate: bool = False) -> str:
    """The failure part of a reason, for errors on a TCP-based stage."""
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return "timeout"
    if _is_ssl_error(exc):
        # An SSLError's errno is OpenSSL's code, not an OS errno.
        return tls_failure(exc)
    if isinstance(exc, (EOFError, ConnectionClosed)):
        return "eof"
    if isinstance(exc, OSError) and exc.errno is not None:
        return errno_failure(exc.errno, immediate=immediate)
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionError):
        # asyncio raises these without an errno when the peer resets or aborts.
        return "reset"
    return "unknown"


class ConnectionClosed(Exception):
    """The peer closed the stream (orderly FIN) before a complete answer."""


@functools.cache
def _dns_exception_failures() -> tuple[tuple[type[BaseException], str], ...]:
    """dnspython's exceptions and the failure each means; dnspython is imported here,
    on the first DNS failure, so that a run without DNS probes never loads it."""
    # lazy: dnspython 50 ms; TCP-only sweep (test_startup)
    import dns.exception
    import dns.query
    import dns.resolver

    return (
        (dns.exception.Timeout, "timeout"),
        (dns.resolver.NXDOMAIN, "nxdomain"),
        (dns.resolver.NoAnswer, "no_answer"),
        (dns.resolver.NoNameservers, "servfail"),
        (dns.resolver.YXDOMAIN, "bad_rcode"),
        (dns.query.UnexpectedSource, "unexpected_source"),
        # Anything else dnspython raises while reading an answer (FormError,
        # Truncated, a bad name...): the bytes that came back were not a
        # well-formed answer to our question.
        (dns.exception.DNSException, "malformed"),
    )


def dns_failure(exc: BaseException) -> str:
    for kind, failure in _dns_exception_failures():
        if isinstance(exc, kind):
            return failure
    if isinstance(exc, ConnectionRefusedError) or getattr(exc, "errno", None) == errno.ECONNREFUSED:
        return "port_unreachable"  # UDP: ICMP port unreachable; TCP: RST on port 53
    return stream_failure(exc)


def dns_reason(exc: BaseException) -> str:
    return f"dns.{dns_failure(exc)}"


def doh_reason(exc: BaseException) -> str:
    """Reason for a failed DNS-over-HTTPS exchange (requests' exceptions)."""
    # lazy: requests 89 ms; TCP-only sweep (test_startup)
    import requests

    if isinstance(exc, requests.exceptions.Timeout):
        return "dns.timeout"
    if isinstance(exc, requests.exceptions.SSLError):
        return "dns.doh_tls_error"
    if isinstance(exc, requests.exceptions.HTTPError):
        return "dns.doh_http_error"
    cause = _root_os_error(exc)
    if _is_ssl_error(cause):  # urllib3 can pass a TLS error through unwrapped
        return "dns.doh_tls_error"
    if cause is not None:
        failure = stream_failure(cause)
        return f"dns.{'port_unreachable' if failure == 'refused' else failure}"
    if isinstance(exc, requests.exceptions.RequestException):
        return "dns.doh_http_error"
    return dns_reason(exc)


def _root_os_error(exc: BaseException) -> OSError | None:
    """The socket error under requests' and urllib3's wrappers, if there is one."""
    seen = set()
    stack = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno is not None:
            return current
        stack.extend(a for a in getattr(current, "args", ()) if isinstance(a, BaseException))
        for linked in (current.__cause__, current.__context__, getattr(current, "reason", None)):
            if isinstance(linked, BaseException):
                stack.append(linked)
    return None


def stream_reason(stage: str, exc: BaseException, *, immediate: bool = False) -> str:
    return f"{stage}.{stream_failure(exc, immediate=immediate)}"


# --- TLS errors -> reasons ---------------------------------------------------

# OpenSSL reason codes (the `[SSL: CODE]` of an SSLError) saying the bytes that
# came back were not a TLS answer to our ClientHello (e.g. a plain-HTTP reply,
# an injected page, a record of impossible size).
_TLS_NOT_TLS_MARKERS = (
    "WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "UNKNOWN_PROTOCOL",
    "HTTP_REQUEST", "HTTPS_PROXY_REQUEST", "WRONG_SSL_VERSION", "RECORD_LENGTH_MISMATCH",
    "ENCRYPTED_LENGTH_TOO_LONG", "DATA_LENGTH_TOO_LONG", "BAD_RECORD_TYPE", "UNEXPECTED_RECORD",
    "UNEXPECTED_MESSAGE", "BAD_PACKET_LENGTH", "LENGTH_MISMATCH", "BAD_LENGTH",
    "DECRYPTION_FAILED_OR_BAD_RECORD_MAC", "EXCESSIVE_MESSAGE_SIZE",
)
_SSL_CODE = re.compile(r"\[SSL: ([A-Z0-9_]+)\]")


def ssl_error_code(exc: BaseException) -> str | None:
    """OpenSSL's reason code of an SSLError (`WRONG_VERSION_NUMBER`, ...), if it names one."""
    code = getattr(exc, "reason", None)
    if isinstance(code, str) and code:
        return code.upper()
    match = _SSL_CODE.search(str(exc))
    return match.group(1) if match else None


def tls_failure(exc: BaseException) -> str:
    """The failure part of a reason, for errors during (or after) a TLS handshake.

    An SSLError's `errno` is OpenSSL's SSL_ERROR_* code, not an OS errno, so
    SSL errors are read here and never handed to errno_failure.
    """
    # lazy: ssl 10 ms; TCP-only sweep (test_startup)
    import ssl
    if isinstance(exc, ssl.SSLCertVerificationError):
        return "bad_certificate"
    if isinstance(exc, (ssl.SSLEOFError, ssl.SSLZeroReturnError)):
        return "eof"
    if isinstance(exc, ssl.SSLError):
        code = ssl_error_code(exc) or ""
        if "ALERT" in code or "UNRECOGNIZED_NAME" in code:
            return "alert"
        if any(marker in code for marker in _TLS_NOT_TLS_MARKERS):
            return "protocol_error"
        if "RECORD LAYER FAILURE" in str(exc).upper():
            return "protocol_error"
        return "unknown"
    return stream_failure(exc)


def tls_reason(exc: BaseException) -> str:
    return f"tls.{tls_failure(exc)}"


# --- DNS answers -> reasons --------------------------------------------------

@dataclass(frozen=True)
class DnsQueryOutcome:
    """What one A or AAAA query observed: an rcode and addresses, or an error."""

    qtype: str
    rcode: str | None = None
    addresses: tuple[str, ...] = ()
    error_reason: str | None = None


_RCODE_REASONS = {"NXDOMAIN": "dns.nxdomain", "SERVFAIL": "dns.servfail", "REFUSED": "dns.refused"}


def classify_dns(outcomes: Sequence[DnsQueryOutcome], networks: Iterable[IPNetwork]) -> str | None:
    """Reason for a domain's A+AAAA outcomes, or None when the answers are genuine.

    The strongest evidence wins: a failed query first, then an error rcode,
    then forged-looking addresses, then an empty answer.
    """
    networks = tuple(networks)
    for outcome in outcomes:
        if outcome.error_reason:
            return outcome.error_reason
    for outcome in outcomes:
        if outcome.rcode and outcome.rcode != "NOERROR":
            return _RCODE_REASONS.get(outcome.rcode, "dns.bad_rcode")
    addresses = [parse_ip(a) for o in outcomes for a in o.addresses]
    if not addresses:
        return "dns.no_answer"
    foreign = [ip for ip in addresses if not in_networks(ip, networks)]
    if any(is_teredo(ip) for ip in foreign):
        return "dns.teredo"
    if any(is_bogon(ip) for ip in foreign):
        return "dns.bogon"
    if foreign and networks:
        # Without declared networks only forged-looking addresses can be judged.
        return "dns.outside_networks"
    return None


def choose_addresses(dns_addresses: Iterable[str], dns_reason: str | None, pinned: Sequence[IPAddress],
                     networks: Iterable[IPNetwork]) -> tuple[list[IPAddress], str, str | None]:
    """Which addresses HTTPS should contact, where they came from, and the DNS reason.

    Genuine DNS answers first; when DNS lies or fails, the domain's pinned
    addresses, so that SNI blocking is still measured on a domain whose DNS is
    poisoned.  IPv4 first: an IPv6-less vantage point would otherwise only
    learn that it has no IPv6.
    """
    networks = tuple(networks)
    answered = [parse_ip(a) for a in dns_addresses]
    genuine = [ip for ip in answered if in_networks(ip, networks)] if networks else answered
    ordered = lambda ips: sorted(ips, key=lambda ip: ip.version)  # noqa: E731 - stable, IPv4 first
    if genuine:
        return ordered(genuine), "dns", dns_reason
    if pinned:
        return ordered(pinned), "pinned", dns_reason
    return [], "none", dns_reason or "dns.no_answer"


def choose_control_addresses(dns_addresses: Iterable[str], dns_reason: str | None,
                             pinned: Sequence[IPAddress]) -> tuple[list[IPAddress], str, str | None]:
    """Which addresses a control name's TLS and HTTP controls contact.

    Whatever DNS answered, unless it failed and the name has pinned addresses:
    a control must follow the resolver's answers, so that a portal that answers
    every name with itself shows up as TLS that does not verify.
    """
    answered = [parse_ip(a) for a in dns_addresses]
    ordered = lambda ips: sorted(ips, key=lambda ip: ip.version)  # noqa: E731 - stable, IPv4 first
    if answered and (dns_reason is None or not pinned):
        return ordered(answered), "dns", dns_reason
    if pinned:
        return ordered(pinned), "pinned", dns_reason
    return [], "none", dns_reason or "dns.no_answer"


# --- control names' DNS answers -------------------------------------------------

def classify_control_dns(outcomes: Sequence[DnsQueryOutcome], pinned: Iterable[IPAddress]) -> str | None:
    """Reason for a control name's A+AAAA outcomes, or None when they look genuine.

    A control name has no "networks": any public address is plausible (CDNs
    move), so only failures and forged-looking addresses count against it.
    Its pinned addresses are genuine even when private (a lab, a company).
    """
    pinned = frozenset(pinned)
    if aaaa_timed_out_alone(outcomes):
        # The resolver answers names; whether it drops AAAA is kept apart (netprobe/vantage.py).
        outcomes = [o for o in outcomes if o.qtype != "AAAA"]
    for outcome in outcomes:
        if outcome.error_reason:
            return outcome.error_reason
    for outcome in outcomes:
        if outcome.rcode and outcome.rcode != "NOERROR":
            return _RCODE_REASONS.get(outcome.rcode, "dns.bad_rcode")
    addresses = [parse_ip(a) for o in outcomes for a in o.addresses]
    if not addresses:
        return "dns.no_answer"
    foreign = [ip for ip in addresses if ip not in pinned]
    if any(is_teredo(ip) for ip in foreign):
        return "dns.teredo"
    if any(is_bogon(ip) for ip in foreign):
        return "dns.bogon"
    return None


def aaaa_timed_out_alone(outcomes: Sequence[DnsQueryOutcome]) -> bool:
    """The AAAA query went unanswered while A got an answer (of any content):
    some home routers and resolvers drop AAAA for every name."""
    by_type = {o.qtype: o for o in outcomes}
    a, aaaa = by_type.get("A"), by_type.get("AAAA")
    return (a is not None and aaaa is not None and aaaa.error_reason == "dns.timeout"
            and not a.error_reason and a.rcode == "NOERROR")


def a_genuine(outcomes: Sequence[DnsQueryOutcome], networks: Iterable[IPNetwork]) -> bool:
    """The A answer alone is the service's: addresses, all inside its networks."""
    a = next((o for o in outcomes if o.qtype == "A"), None)
    if a is None or not a.addresses:
        return False
    try:
        return classify_dns([a], networks) is None
    except ValueError:
        return False


def injection_reason(answer: DnsQueryOutcome | None, networks: Iterable[IPNetwork],
                     control_addresses: Iterable[IPAddress] | None = None) -> str:
    """An address that runs no DNS server answered.  A forged (or unreadable) answer is
    injection; a genuine one is a transparent DNS proxy (hotel, ISP, company)
    answering in the resolver's place: not evidence of a block."""
    if answer is None:
        return "dns.injected"
    try:
        if control_addresses is not None:  # a control name: any plausible public answer is genuine
            genuine = classify_control_dns([answer], control_addresses) is None
        else:
            genuine = classify_dns([answer], networks) is None
    except ValueError:
        genuine = False
    return "dns.intercepted" if genuine else "dns.injected"


# --- HTTP answers ------------------------------------------------------------------

def host_on_service(host: str, domains: Iterable[str]) -> bool:
    return any(host == d or host.endswith("." + d) for d in domains if d)


def location_target(location: str, domains: Iterable[str],
                    networks: Iterable[IPNetwork]) -> tuple[str | None, bool, str | None]:
    """Where a redirect points: (host, still on the service, parse error)."""

    try:
        parts = urlsplit(location.strip())
        host = parts.hostname  # lower case, without brackets
    except ValueError as exc:
        return None, False, str(exc)[:200]
    if not parts.netloc:
        # A relative reference stays on this host; a scheme with no host (javascript:, data:) leaves it.
        return None, parts.scheme in ("", "http", "https"), None
    host = (host or "").rstrip(".")
    on_service = host_on_service(host, domains)
    if not on_service:
        try:
            on_service = in_networks(parse_ip(host), networks)
        except ValueError:
            pass
    return host, on_service, None


# OONI's scope for fingerprints that are only a vague blocking word ("Access Denied"): they also
# match ordinary error pages (Apache's and Akamai's 403), so they are recorded, not trusted.
VAGUE_BLOCKPAGE_SCOPE = "vbw"


def http_answer_reason(status: int | None, location_on_service: bool | None,
                       blockpage: dict | None) -> str | None:
    """An HTTP answer is a blockpage when it says so (451), sends the reader off the
    service, or matches a known blockpage; anything else may be the service's.
    Telegram's own status codes and page text are deliberately not pinned: they
    have changed before (ooni/probe#756, #2382)."""
    if status == 451:
        return "http.blockpage"
    if blockpage is not None and blockpage.get("scope") != VAGUE_BLOCKPAGE_SCOPE:
        return "http.known_blockpage"
    if status is not None and 300 <= status < 400 and location_on_service is False:
        return "http.blockpage"
    return None


def http_answer_difference(http: dict, expected: dict) -> str | None:
    """How an HTTP answer (a probe's evidence.http) differs from the one a control name's genuine
    server gives (targets.HttpExpectation.evidence()); None when it is that answer.

    Every stated part must hold: the status; the Location, exactly; each header, containing its
    text in any case; the body prefix, containing its text byte for byte.  An interceptor's 404
    or a portal's 302 fails the first part that it does not fake."""
    status = http.get("status")
    if status is None:
        return "no HTTP answer"
    wanted = expected.get("status")
    if wanted is not None and status != wanted:
        return f"status {status}, not {wanted}"
    headers = http.get("headers") or {}
    location = expected.get("location")
    if location is not None and (headers.get("location") or "").strip() != location:
        got = headers.get("location")
        return f"Location {got[:120]!r}, not {location!r}" if got is not None else f"no Location, not {location!r}"
    for name, text in (expected.get("headers") or {}).items():
        got = headers.get(name)
        if got is None or text.lower() not in got.lower():
            return f"{name} {got[:120]!r} lacks {text!r}" if got is not None else f"no {name} header, wanted {text!r}"
    marker = expected.get("body_contains")
    if marker is not None:
        prefix = http.get("body_prefix") or {}
        try:
            body = bytes.fromhex(prefix.get("hex", ""))
        except (TypeError, ValueError):
            body = b""
        if marker.encode("utf-8") not in body:
            return f"the body's first {len(body)} bytes lack {marker!r}"
    return None


# --- MTProto answers --------------------------------------------------------------

_MTPROTO_RESPONSE_REASONS = {"res_pq": None, "transport_error": None, "nonce_mismatch": "mtproto.nonce_mismatch"}


def mtproto_response_reason(kind: str) -> str | None:
    """A resPQ echoing our nonce, or a transport error only an MTProto server sends,
    is the server itself; anything else is not MTProto."""
    return _MTPROTO_RESPONSE_REASONS.get(kind, "mtproto.bad_response")


# --- negative controls ------------------------------------------------------------

def negative_control_reason(connect_reason: str | None) -> str | None:
    """A connection that must fail: its success is the finding (interception)."""
    return "interception.accepted" if connect_reason is None else None


# --- RIPE Atlas results ------------------------------------------------------------
# Atlas probes report failures as text, in their firmware's words (RIPE-NCC/ripe-atlas-probe-
# measurements, eperd/evtdig.c, sslgetcert.c, traceroute.c: strerror() and gai_strerror()
# texts and a few fixed phrases).  Matched by substring, lower case, first match wins; a
# text matching none is `unknown` (inconclusive), never a block.

_ATLAS_ERRNO_TEXT = (
    ("timeout", "timeout"),
    ("timed out", "timeout"),
    ("connection refused", "refused"),
    ("connection reset", "reset"),
    ("broken pipe", "reset"),
    # The probe has no route of that family at all (mostly IPv6 on an IPv4-only probe).
    ("network is unreachable", "no_route"),
    ("address family not supported", "no_route"),
    ("cannot assign requested address", "no_route"),
    ("no route to host", "unreachable"),
    ("host is unreachable", "unreachable"),
    ("permission denied", "local_firewall"),
    ("operation not permitted", "local_firewall"),
    ("address already in use", "local_resources"),
    ("no buffer space", "local_resources"),
    ("cannot allocate memory", "local_resources"),
    ("too many open files", "local_resources"),
)

# gai_strerror() texts of the probe's own name resolution (sslcert `dnserr`, DNS `getaddrinfo`).
_ATLAS_RESOLVE_TEXT = (
    ("not known", "nxdomain"),              # EAI_NONAME: "Name or service not known", "... or not known"
    ("no address associated", "no_answer"),  # EAI_NODATA
    ("temporary failure", "timeout"),       # EAI_AGAIN
    ("non-recoverable", "servfail"),        # EAI_FAIL
)

# Answers to the probe's ClientHello that were not a TLS handshake (sslgetcert.c).
_ATLAS_NOT_TLS_TEXT = ("server hello", "bad type", "bad len", "bad amount of cert data")

# ICMP errors a traceroute hop reports (`err`): N(et), H(ost), P(rotocol), A(dministratively
# prohibited), or the ICMP code as a number: all mean the path refused the packet.
ATLAS_ICMP_ERRORS = {"N": "network unreachable", "H": "host unreachable", "P": "protocol unreachable",
                     "A": "administratively prohibited", "p": "port unreachable"}


def _text_match(text: object, table) -> str | None:
    lowered = str(text).lower()
    return next((failure for needle, failure in table if needle in lowered), None)


def atlas_stream_failure(text: object) -> str:
    """The failure part of a reason, for a connection error an Atlas probe reported as text."""
    return _text_match(text, _ATLAS_ERRNO_TEXT) or "unknown"


def atlas_resolve_reason(text: object) -> str:
    """Reason for a failure of the probe's own name resolution (gai_strerror text)."""
    return f"dns.{_text_match(text, _ATLAS_RESOLVE_TEXT) or 'unknown'}"


def atlas_dns_error_reason(error: object) -> str:
    """Reason for the `error` of an Atlas DNS response: {"timeout": 5000}, {"socket": "connect
    failed ..."}, {"senderror": "..."}, {"TUDNS": "..."}, {"nameserver": "no local resolvers found"}, ..."""
    items = error.items() if isinstance(error, dict) else [("", error)]
    for key, value in items:
        key = str(key).lower()
        if key == "timeout":
            return "dns.timeout"
        if key in ("tcpread", "idmismatch"):
            return "dns.malformed"
        if key == "getaddrinfo":
            return atlas_resolve_reason(value)
        failure = _text_match(value, _ATLAS_ERRNO_TEXT)
        if failure is not None:
            return f"dns.{'port_unreachable' if failure == 'refused' else failure}"
    return "dns.unknown"


def atlas_sslcert_error_reason(err: object) -> str:
    """Reason for the `err` of an Atlas sslcert result: "connect: ..." failed at TCP;
    a timeout after connecting is the TLS stage's; an answer that was not TLS is a protocol error."""
    text = str(err).lower()
    if text.startswith("connect:"):
        return f"tcp.{atlas_stream_failure(text[len('connect:'):])}"
    if "timeout" in text:
        return "tls.timeout"
    if any(marker in text for marker in _ATLAS_NOT_TLS_TEXT):
        return "tls.protocol_error"
    failure = _text_match(text, _ATLAS_ERRNO_TEXT)
    return f"tls.{failure}" if failure in ("reset", "refused", "unreachable") else "tls.unknown"
