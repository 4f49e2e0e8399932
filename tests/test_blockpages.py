"""Known blockpages (issue 10 item 5): netprobe.blockpages names a page a censor or filter is
known to serve, from OONI's public fingerprint list, and nothing else.

Positive cases are real: snippets built from the patterns in netprobe/data/blockpages.csv itself,
and real blockpage bodies recorded by the Citizen Lab (tests/data/blockpages/, sources in its
SOURCE.md). Negative cases are pages a probe of Telegram meets every day: a generic nginx 404,
Cloudflare's 403s, an empty body, Telegram's own pages. No network: everything is in memory.
"""

from __future__ import annotations

import configparser
import csv
import fnmatch
import io
import re
import time
from importlib import resources
from pathlib import Path

import pytest

from netprobe import blockpages
from netprobe.blockpages import BODY_LIMIT, load, match_blockpage, parse_rows

DATA = Path(__file__).parent / "data"
REPO = Path(__file__).parent.parent


def packaged_rows() -> list[dict[str, str]]:
    raw = resources.files("netprobe").joinpath(blockpages.DATA_FILE).read_bytes().decode("utf-8")
    return list(csv.DictReader(io.StringIO(raw, newline="")))


# --- the list ------------------------------------------------------------------------------

def test_every_fingerprint_in_the_file_loads_and_compiles():
    rows = packaged_rows()
    loaded = load()
    assert loaded.skipped == ()
    assert len(loaded.fingerprints) == len(rows) == 1254
    assert {fp.name for fp in loaded.fingerprints} == {row["name"] for row in rows}
    for fp in loaded.fingerprints:
        assert fp.pattern_type in ("full", "prefix", "contains", "regexp"), fp.name
        assert fp.location == "body" or re.fullmatch(r"header\.[a-z0-9-]+", fp.location), fp.name
        assert fp.pattern, fp.name
        assert all(re.fullmatch(r"[A-Z]{2}", cc) for cc in fp.countries), fp.name
        if fp.pattern_type == "regexp":
            assert isinstance(fp.regexp, re.Pattern), fp.name
        else:
            assert fp.regexp is None, fp.name


def test_no_false_positive_fingerprint_is_shipped():
    """OONI's scope `fp` marks pages that are NOT blockpages; they were left out of the file."""
    assert {row["scope"] for row in packaged_rows()} <= set(blockpages.SCOPE_ORDER)


def test_the_list_is_parsed_once():
    assert load() is load()


def test_patterns_are_kept_verbatim_including_crlf():
    by_name = {fp.name: fp for fp in load().fingerprints}
    assert by_name["cp.d_corp_multacom_satellite"].pattern == "<title>Page Restricted</title>\r\n"
    assert by_name["ooni.ir_0"].pattern == 'iframe src="http://10.10'
    assert by_name["ooni.ae_0"].countries == ("AE", "SA")


def test_unusable_rows_are_skipped_with_a_reason_not_fatal():
    text = (
        "name,scope,location_found,pattern_type,pattern,confidence_no_fp,expected_countries,source,exp_url\n"
        "t.good,nat,body,contains,blocked by order,7,IR,test,\n"
        "t.bad_regexp,nat,body,regexp,(unclosed,5,,test,\n"
        "t.false_positive,fp,body,contains,Ray ID:,5,,test,\n"
        "t.unknown_type,nat,body,glob,*x*,5,,test,\n"
        "t.dns,nat,dns,full,10.10.34.34,5,,test,\n"
        "t.empty,nat,body,contains,,5,,test,\n"
    )
    loaded = parse_rows(text)
    assert [fp.name for fp in loaded.fingerprints] == ["t.good"]
    reasons = dict(loaded.skipped)
    assert set(reasons) == {"t.bad_regexp", "t.false_positive", "t.unknown_type", "t.dns", "t.empty"}
    assert "does not compile" in reasons["t.bad_regexp"]
    assert "false positive" in reasons["t.false_positive"]


def test_specific_scopes_are_tried_before_vague_words():
    scopes = [fp.scope for fp in load().fingerprints]
    ranks = [blockpages.SCOPE_ORDER[scope] for scope in scopes]
    assert ranks == sorted(ranks)
    assert scopes[0] == "nat" and scopes[-1] == "vbw"


def test_package_data_ships_the_list_and_its_source_note():
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    globs = [g.strip() for g in re.split(r"[,\n]", config["options.package_data"]["netprobe"]) if g.strip()]
    for name in ("data/blockpages.csv", "data/blockpages.SOURCE.md"):
        assert any(fnmatch.fnmatch(name, g) for g in globs), name
        assert resources.files("netprobe").joinpath(name).is_file(), name
    note = resources.files("netprobe").joinpath("data/blockpages.SOURCE.md").read_text("utf-8")
    assert "ooni/blocking-fingerprints" in note
    assert "171641e60b54231cad18753a72145da87b0d3e07" in note
    assert "Licence" in note


# --- answers that are known blockpages -----------------------------------------------------

# (fingerprint expected, status, headers, body). Each snippet carries a pattern of the list verbatim,
# in the kind of answer that fingerprint was recorded from.
SNIPPETS = [
    pytest.param("ooni.ae_1", 302,
                 {"location": "http://www.bluecoat.com/notify-NotifyUser1?cfru=aHR0cDovL3RlbGVncmFtLm9yZy8="},
                 b"", id="location-prefix-bluecoat-AE"),
    pytest.param("ooni.kr_2", 302, {"location": "http://www.warning.or.kr", "server": "nginx"}, b"",
                 id="location-full-warning.or.kr-KR"),
    pytest.param("ooni.ae_0", 403, {"server": "Protected by WireFilter 8000 (wf-1)"}, b"<html></html>",
                 id="server-prefix-wirefilter-AE"),
    pytest.param("ooni.cl_0", 200, {"server": "Kerio Control Embedded Web Server"}, b"",
                 id="server-full-kerio-CL"),
    pytest.param("ooni.us_1", 403, {"via": "1.1 forcepoint-wcg.chambersburg.localnet"}, b"",
                 id="via-full-forcepoint-US"),
    pytest.param("ooni.de_1", 200, {"X-App-Url": "https://blocked.netalerts.io"}, b"",
                 id="x-app-url-any-case-DE"),
    pytest.param("cl.nat_ir_iframe_forward_ipv4", 200, {"content-type": "text/html"},
                 b'<html><head><title>M4-8</title></head><body><iframe src="http://10.10.34.34?type=Invalid Site'
                 b'&policy=MainPolicy " style="width: 100%; height: 100%"></iframe></body></html>',
                 id="body-contains-iran-iframe"),
    pytest.param("cp.b_nat_ru_rkn_body", 200, {},
                 "<p>Доступ ограничен. Причина: <a href=\"http://blocklist.rkn.gov.ru/\">реестр</a></p>".encode(),
                 id="body-contains-rkn-beats-the-vague-word"),
    pytest.param("cp.b_nat_sa_national_2", 200, {},
                 b"<p>If you believe the requested page should not be blocked please\r\n"
                 b'click <a href="http://www.internet.gov.sa/resources/block-unblock-request">here</a></p>',
                 id="body-regexp-across-lines-SA"),
    pytest.param("cl.susp_blankhtml_1", 200, {}, b"<HTML></HTML>", id="body-full-blank-html"),
    pytest.param("ooni.th_11", 200, {},
                 b"<h1>Web Page Blocked</h1>\r\n<p>The web page you are trying to visit has been blocked in "
                 b"accordance with company policy. Please contact your system administrator if you believe "
                 b"this is an error.</p>", id="body-contains-crlf-TH"),
    pytest.param("cp.f_gen_blocked_4", 200, {},
                 "<p>Esta página web se ha identificado como potencialmente indeseable.</p>".encode("utf-8"),
                 id="body-recorded-as-latin1-mojibake"),
]


@pytest.mark.parametrize("name,status,headers,body", SNIPPETS)
def test_snippets_from_the_list_match_their_fingerprint(name, status, headers, body):
    found = match_blockpage(status, headers, body)
    assert found is not None
    assert found["name"] == name
    fp = next(fp for fp in load().fingerprints if fp.name == name)
    assert found == {"name": name, "scope": fp.scope, "countries": list(fp.countries),
                     "location": fp.location, "confidence": fp.confidence}


# Real bodies (first 2048 bytes), see tests/data/blockpages/SOURCE.md.
REAL_BODIES = [
    ("isp_by_beltelecom_block.html", "cl.isp_by_beltelecom_block", "isp"),
    ("isp_kr_sktelecom_youthhazard_block.html", "ooni.kr_5", "isp"),
    ("isp_ru_dialog_block.html", "cp.b_nat_ru_rkn_body", "nat"),
    ("isp_ru_mgts_rkn_blockpage.html", "cl.isp_ru_mgts_rkn_blockpage_1", "isp"),
    ("isp_ru_rostelcom_block.html", "cp.f_gen_ru_3", "vbw"),
    ("isp_tr_ttnet_secureinternet_blockpage.html", "ooni.tr_5", "isp"),
    ("nat_id_trustpositif.html", "ooni.id_3", "nat"),
    ("nat_mm_transportcomms_block.html", "cl.nat_mm_transportcomms_block", "nat"),
    ("nat_my_violates.html", "ooni.my_0", "nat"),
    ("nat_sa.html", "cp.b_nat_sa_national", "nat"),
    ("nat_th_blockpage.html", "ooni.th_0", "nat"),
    ("prod_fortiguard_webfilter_blocktext.html", "cl.prod_fortiguard_webfilter_blockurl", "prod"),
    ("prod_iserv_blockpage.html", "ooni.de_2", "inst"),
]


@pytest.mark.parametrize("filename,name,scope", REAL_BODIES, ids=[r[0] for r in REAL_BODIES])
def test_real_blockpages_are_named(filename, name, scope):
    body = (DATA / "blockpages" / filename).read_bytes()
    assert len(body) <= BODY_LIMIT
    found = match_blockpage(200, {"content-type": "text/html"}, body)
    assert found is not None and (found["name"], found["scope"], found["location"]) == (name, scope, "body")


def test_the_lab_sample_is_the_iranian_national_blockpage():
    body = (DATA / "blockpage_known.html").read_bytes()
    assert b'iframe src="http://10.10.' in body
    found = match_blockpage(200, {"server": "nginx", "content-type": "text/html"}, body)
    assert found == {"name": "cl.nat_ir_iframe_forward_ipv4", "scope": "nat", "countries": ["IR"],
                     "location": "body", "confidence": 10}


# --- answers that are not -----------------------------------------------------------------

NGINX_404 = (b"<html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n"
             b"<center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx/1.18.0</center>\r\n"
             b"</body>\r\n</html>\r\n")
CLOUDFLARE_403 = (b"<html>\r\n<head><title>403 Forbidden</title></head>\r\n<body>\r\n"
                  b"<center><h1>403 Forbidden</h1></center>\r\n<hr><center>cloudflare</center>\r\n"
                  b"</body>\r\n</html>\r\n")
# Cloudflare's own error pages (1020 "Access denied", the WAF's "Sorry, you have been blocked"): the
# start of the page, as served, with a made-up site name and Ray ID.
CLOUDFLARE_1020 = b"""<!DOCTYPE html>
<!--[if lt IE 7]> <html class="no-js ie6 oldie" lang="en-US"> <![endif]-->
<!--[if gt IE 8]><!--> <html class="no-js" lang="en-US"> <!--<![endif]-->
<head>
<title>Access denied | example.org used Cloudflare to restrict access</title>
<meta charset="UTF-8" />
<meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
<meta name="robots" content="noindex, nofollow" />
<link rel="stylesheet" id="cf_styles-css" href="/cdn-cgi/styles/main.css" />
</head>
<body>
<div id="cf-wrapper">
  <div id="cf-error-details" class="p-0">
    <header class="mx-auto pt-10 lg:pt-6 lg:px-8 w-240 lg:w-full mb-15 antialiased">
      <h1 class="inline-block md:block mr-2 md:mb-2 font-light text-60 md:text-3xl text-black-dark leading-tight">
        <span data-translate="error">Error</span>
        <span>1020</span>
      </h1>
      <span class="inline-block md:block heading-ray-id font-mono text-15 lg:text-sm lg:leading-relaxed">Ray ID: 8a1b2c3d4e5f6071 &bull;</span>
      <h2 class="text-gray-600 leading-1.3 text-3xl lg:text-2xl font-light">Access denied</h2>
    </header>
    <section class="w-240 lg:w-full mx-auto mb-8 lg:px-8">
      <div id="what-happened-section" class="w-1/2 md:w-full">
        <h2 class="text-3xl leading-tight font-normal mb-4 text-black-dark antialiased" data-translate="what_happened">What happened?</h2>
        <p>This website is using a security service to protect itself from online attacks.</p>
      </div>
    </section>
"""
CLOUDFLARE_WAF = b"""<!DOCTYPE html>
<html class="no-js" lang="en-US">
<head>
<title>Attention Required! | Cloudflare</title>
<meta charset="UTF-8" />
<meta name="robots" content="noindex, nofollow" />
<link rel="stylesheet" id="cf_styles-css" href="/cdn-cgi/styles/cf.errors.css" />
</head>
<body>
  <div id="cf-wrapper">
    <div id="cf-error-details" class="cf-error-details-wrapper">
      <div class="cf-wrapper cf-header cf-error-overview">
        <h1 data-translate="block_headline">Sorry, you have been blocked</h1>
        <h2 class="cf-subheadline"><span data-translate="unable_to_access">You are unable to access</span> example.org</h2>
      </div>
      <div class="cf-section cf-wrapper">
        <div class="cf-columns two">
          <div class="cf-column">
            <h2 data-translate="blocked_why_headline">Why have I been blocked?</h2>
            <p data-translate="blocked_why_detail">This website is using a security service to protect itself from online attacks. The action you just performed triggered the security solution. There are several actions that could trigger this block including submitting a certain word or phrase, a SQL command or malformed data.</p>
          </div>
          <div class="cf-column">
            <h2 data-translate="blocked_resolve_headline">What can I do to resolve this?</h2>
            <p data-translate="blocked_resolve_detail">You can email the site owner to let them know you were blocked. Please include what you were doing when this page came up and the Cloudflare Ray ID found at the bottom of this page.</p>
          </div>
        </div>
      </div>
"""
TELEGRAM_WEB = b"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Telegram Web</title>
<meta name="viewport" content="width=device-width, initial-scale=1, maximum-scale=1, user-scalable=no, shrink-to-fit=no, viewport-fit=cover">
<meta name="description" content="Telegram is a cloud-based mobile and desktop messaging app with a focus on security and speed.">
<meta property="og:title" content="Telegram Web">
<meta property="og:url" content="https://web.telegram.org/">
<meta name="apple-mobile-web-app-title" content="Telegram">
<link rel="icon" href="/favicon.ico">
<link rel="manifest" href="/site.webmanifest">
</head>
<body>
<noscript>Your browser does not support JavaScript or it is disabled. Please enable it to use Telegram Web.</noscript>
<div id="root"></div>
<script type="module" src="/assets/index.js"></script>
</body>
</html>
"""
TELEGRAM_ORG_301 = (b"<html>\r\n<head><title>301 Moved Permanently</title></head>\r\n<body>\r\n"
                    b"<center><h1>301 Moved Permanently</h1></center>\r\n<hr><center>nginx</center>\r\n"
                    b"</body>\r\n</html>\r\n")

NOT_BLOCKPAGES = [
    pytest.param(404, {"server": "nginx/1.18.0", "content-type": "text/html"}, NGINX_404, id="nginx-404"),
    pytest.param(403, {"server": "cloudflare", "content-type": "text/html"}, CLOUDFLARE_403, id="cloudflare-403"),
    pytest.param(403, {"server": "cloudflare", "content-type": "text/html; charset=UTF-8"}, CLOUDFLARE_1020,
                 id="cloudflare-1020-access-denied"),
    pytest.param(403, {"server": "cloudflare", "content-type": "text/html; charset=UTF-8"}, CLOUDFLARE_WAF,
                 id="cloudflare-waf-sorry-you-have-been-blocked"),
    pytest.param(200, {}, b"", id="empty-body-no-headers"),
    pytest.param(200, {"server": "nginx", "content-length": "0"}, b"", id="empty-body"),
    pytest.param(None, {}, b"", id="no-answer"),
    pytest.param(200, {"server": "nginx", "content-type": "text/html; charset=utf-8"}, TELEGRAM_WEB,
                 id="telegram-web-200"),
    pytest.param(301, {"server": "nginx", "location": "https://telegram.org/",
                       "content-type": "text/html", "content-length": "162"}, TELEGRAM_ORG_301,
                 id="telegram.org-301-to-https"),
]


@pytest.mark.parametrize("status,headers,body", NOT_BLOCKPAGES)
def test_ordinary_pages_are_not_blockpages(status, headers, body):
    assert match_blockpage(status, headers, body) is None


def test_a_header_fingerprint_needs_its_header():
    # netprobe records server, location, content-type, content-length: a Via fingerprint cannot match
    # a body that merely mentions it.
    assert match_blockpage(403, {"server": "nginx"}, b"1.1 forcepoint-wcg.chambersburg.localnet") is None
    # and a header fingerprint is not looked for in another header
    assert match_blockpage(200, {"content-type": "Kerio Control Embedded Web Server"}, b"") is None


def test_a_full_fingerprint_is_not_a_substring_match():
    assert match_blockpage(302, {"location": "http://www.warning.or.kr/x"}, b"") is None
    assert match_blockpage(200, {}, b"<html><HTML></HTML></html>")["name"] == "ooni.th_10"  # a vbw `contains`


def test_only_the_first_body_limit_bytes_are_looked_at():
    pattern = b'iframe src="http://10.10.34.34"'
    filler = b" " * BODY_LIMIT
    assert match_blockpage(200, {}, pattern + filler) is not None
    assert match_blockpage(200, {}, filler[:BODY_LIMIT - len(pattern)] + pattern)["name"] == \
        "cl.nat_ir_iframe_forward_ipv4"
    assert match_blockpage(200, {}, filler + pattern) is None


def test_invalid_utf8_does_not_raise():
    body = b"\xff\xfe\xc3(" * 100 + 'Доступ ограничен'.encode("utf-8") + b"\x80" * 10
    assert match_blockpage(200, {}, body)["scope"] == "vbw"
    assert match_blockpage(200, {}, b"\xff" * BODY_LIMIT) is None


def test_the_answer_is_a_fresh_dict():
    body = (DATA / "blockpage_known.html").read_bytes()
    first = match_blockpage(200, {}, body)
    first["countries"].append("XX")
    assert match_blockpage(200, {}, body)["countries"] == ["IR"]


# --- hostile bodies ------------------------------------------------------------------------

# The regexp fingerprints (4 after the `fp` rows were dropped) have no nested quantifiers; they are
# literals joined by `.*` (DOTALL), e.g. 'URL .* Sp.*er Gate' (cp.a_prod_drweb_3) and
# '<span style=.*color:red;.*>\(æ¡æ' (cp.e_unk_style_red). Two `.*` make a failed search polynomial
# (about starts x candidates x length), which the 2048-byte cap bounds: ~30 ms at worst, measured.
NESTED_QUANTIFIER = re.compile(r"\((?:[^()\\]|\\.)*(?<!\\)[*+}](?:[^()\\]|\\.)*\)[*+?{]")


def test_no_regexp_fingerprint_has_nested_quantifiers():
    regexps = [fp for fp in load().fingerprints if fp.pattern_type == "regexp"]
    assert regexps
    for fp in regexps:
        assert not NESTED_QUANTIFIER.search(fp.pattern), fp.name
        assert fp.pattern.count(".*") <= 2, fp.name  # the polynomial degree the timing test covers
    assert NESTED_QUANTIFIER.search(r"(a+)+$")  # the check itself sees the classic bomb


def hostile_bodies() -> list[bytes]:
    """2 KB bodies built to make each regexp fingerprint backtrack as much as possible (every
    fragment but the last, repeated), plus generic worst cases for substring search."""
    bodies = [b"a" * BODY_LIMIT, b"<" * BODY_LIMIT, b"\xff" * BODY_LIMIT, ("Д" * BODY_LIMIT).encode()[:BODY_LIMIT],
              (b"<span style=" * 200)[:1024] + (b"color:red;" * 200)[:1024]]
    for fp in load().fingerprints:
        if fp.pattern_type != "regexp":
            continue
        fragments = [re.sub(r"\\(.)", r"\1", part) for part in fp.pattern.split(".*")]
        head = "".join(fragments[:-1]).encode()
        bodies.append((head * (BODY_LIMIT // len(head) + 1))[:BODY_LIMIT])
        if len(fragments) > 2:  # many starts, then many middles: starts x middles x length
            first, second = fragments[0].encode(), fragments[1].encode()
            bodies.append((first * (BODY_LIMIT // 2 // len(first)))
                          + (second * (BODY_LIMIT // len(second)))[:BODY_LIMIT // 2])
    # every contains/prefix pattern almost present: its text minus the last character, repeated
    near = "".join(fp.pattern[:-1] for fp in load().fingerprints if fp.location == "body")[:4096]
    bodies.append(near.encode("utf-8")[:BODY_LIMIT])
    return bodies


def test_hostile_2kb_bodies_finish_quickly():
    worst = 0.0
    start_all = time.perf_counter()
    for body in hostile_bodies():
        assert len(body) <= BODY_LIMIT
        start = time.perf_counter()
        match_blockpage(200, {"server": "x" * 200, "location": "http://" + "a" * 200}, body)
        worst = max(worst, time.perf_counter() - start)
    assert worst < 0.5, f"one 2 KB body took {worst:.3f} s"
    assert time.perf_counter() - start_all < 5.0


def test_a_longer_body_is_cut_not_searched_whole():
    # 1.75 MB made for cp.a_prod_drweb_3 ('URL .* Sp.*er Gate'): searched whole, 17 KB of it already
    # takes ~15 s (cubic); the cap keeps it to milliseconds.
    huge = b"URL " * 250_000 + b" Sp" * 250_000
    start = time.perf_counter()
    assert match_blockpage(200, {}, huge) is None
    assert time.perf_counter() - start < 0.5
