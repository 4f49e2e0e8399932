"""`netprobe atlas submit` and `fetch` against a fake RIPE Atlas API (`responses` intercepts the
requests cousteau makes): what netprobe sends, what it writes, and how each fault reads.

The results served are real (tests/data/atlas/SOURCES.md).  Nothing here reaches the network:
`responses` refuses any request it was not told about.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
import requests
import responses

from netprobe.interop import atlas
from netprobe.commands import main
from netprobe.targets import load_builtin

DATA = Path(__file__).parent / "data" / "atlas"
TARGETS = str(DATA / "targets.toml")
ROOTS = str(DATA / "roots.pem")  # the tests' trust store, not the machine's (SOURCES.md)
KEY = "0f6d3a2e-5b4c-4e1d-9a8b-7c6d5e4f3a2b"
API = "https://atlas.ripe.net/api/v2"


def load(name: str) -> list[dict]:
    return json.loads((DATA / name).read_text())


def run(capsys, *args) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.fixture
def api():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture(autouse=True)
def environment(monkeypatch, tmp_path):
    monkeypatch.delenv("RIPE_ATLAS_KEY", raising=False)
    monkeypatch.delenv("RIPE_ATLAS_SERVER", raising=False)
    monkeypatch.delenv("NETPROBE_TARGETS", raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state-home"))


# --- submit ------------------------------------------------------------------------------------

def test_dry_run_prints_exactly_the_body_and_its_cost_and_sends_nothing(capsys, api):
    code, out, err = run(capsys, "atlas", "submit", "--dry-run", "--country", "VN", "--probes", "5")
    assert code == 0
    body = json.loads(out)
    expected = atlas.definitions(load_builtin())
    assert body["is_oneoff"] is True
    assert body["probes"] == [{"type": "country", "value": "VN", "requested": 5}]
    assert [dict(sorted(d.items())) for d in body["definitions"]] == [dict(sorted(d.items())) for d in expected]
    cost = atlas.estimate_credits(expected, 5)
    assert f"= {cost['total']} credits" in err
    assert len(api.calls) == 0


def test_a_target_file_without_controls_gets_the_built_in_ones_for_atlas_too(capsys, api, tmp_path):
    """Issue 18 item 5 for `atlas submit`: with no control measured from the same probe, every
    failure of that probe would be inconclusive; the built-in controls are scheduled unless refused."""
    path = tmp_path / "mine.toml"
    path.write_text('name = "mine"\nnetworks = ["149.154.160.0/20"]\ndomains = ["telegram.org"]\n')
    code, out, err = run(capsys, "atlas", "submit", "--dry-run", "--country", "VN", "--targets", str(path))
    assert code == 0 and "names no controls or control_domains" in err
    names = {d.get("target") or d.get("query_argument") for d in json.loads(out)["definitions"]}
    assert "example.com" in names and "telegram.org" in names
    code, out, err = run(capsys, "atlas", "submit", "--dry-run", "--country", "VN", "--targets", str(path),
                         "--no-default-controls")
    assert code == 0 and "names no controls" not in err
    names = {d.get("target") or d.get("query_argument") for d in json.loads(out)["definitions"]}
    assert "example.com" not in names and "telegram.org" in names
    assert len(api.calls) == 0


def test_submit_sends_the_definitions_and_the_probe_selection_and_keeps_the_ids(capsys, api, monkeypatch, tmp_path):
    monkeypatch.setenv("RIPE_ATLAS_KEY", KEY)
    definitions = atlas.definitions(load_builtin(), ["tls"])
    ids = list(range(70000001, 70000001 + len(definitions)))
    api.add(responses.POST, f"{API}/measurements/", json={"measurements": ids}, status=201)
    state = tmp_path / "atlas.json"
    code, out, err = run(capsys, "atlas", "submit", "--measure", "tls", "--asn", "45899", "--asn", "7552",
                         "--probe", "6001", "--probes", "3", "--state", str(state))
    assert code == 0, err
    assert out.split() == [str(i) for i in ids]
    request = api.calls[0].request
    assert request.headers["Authorization"] == f"Key {KEY}"
    body = json.loads(request.body)
    assert body["is_oneoff"] is True
    assert body["probes"] == [{"type": "asn", "value": 45899, "requested": 3},
                              {"type": "asn", "value": 7552, "requested": 3},
                              {"type": "probes", "value": "6001", "requested": 1}]
    sent = {d["target"]: d for d in body["definitions"]}
    assert sent["web.telegram.org"] == {"type": "sslcert", "af": 4, "target": "web.telegram.org",
                                        "hostname": "web.telegram.org", "port": 443, "resolve_on_probe": True,
                                        "description": "netprobe telegram: TLS web.telegram.org"}
    saved = json.loads(state.read_text())
    submission = saved["submissions"][0]
    assert submission["targets"] == "telegram"
    assert [m["id"] for m in submission["measurements"]] == ids
    assert submission["measurements"][0]["role"] == "control"
    assert KEY not in state.read_text()


def test_submit_uses_another_api_server(capsys, api, monkeypatch, tmp_path):
    monkeypatch.setenv("RIPE_ATLAS_KEY", KEY)
    monkeypatch.setenv("RIPE_ATLAS_SERVER", "atlas.test.example:8443")
    n = len(atlas.definitions(load_builtin(), ["dns"]))
    api.add(responses.POST, "https://atlas.test.example:8443/api/v2/measurements/",
            json={"measurements": list(range(1, n + 1))})
    code, _, err = run(capsys, "atlas", "submit", "--measure", "dns", "--country", "vn",
                       "--state", str(tmp_path / "s.json"))
    assert code == 0, err
    assert api.calls[0].request.url.startswith("https://atlas.test.example:8443/")


def test_no_key(capsys, api, tmp_path):
    code, out, err = run(capsys, "atlas", "submit", "--country", "VN", "--state", str(tmp_path / "s.json"))
    assert code == 2
    assert err.startswith("netprobe: error: no RIPE Atlas API key") and err.count("\n") == 1
    assert len(api.calls) == 0


def test_a_rejected_key_is_never_repeated(capsys, api, monkeypatch, tmp_path):
    monkeypatch.setenv("RIPE_ATLAS_KEY", KEY)
    api.add(responses.POST, f"{API}/measurements/", status=403,
            json={"error": {"status": 403, "title": "Forbidden", "detail": f"The key {KEY} is not valid"}})
    state = tmp_path / "s.json"
    code, out, err = run(capsys, "atlas", "submit", "--country", "VN", "--state", str(state))
    assert code == 2
    assert "refused the API key" in err and "HTTP 403" in err
    assert KEY not in err and KEY not in out
    assert not state.exists()


def test_a_key_file(capsys, api, tmp_path):
    key_file = tmp_path / "key"
    key_file.write_text(f"\n{KEY}\n")
    n = len(atlas.definitions(load_builtin(), ["tls"]))
    api.add(responses.POST, f"{API}/measurements/", json={"measurements": list(range(1, n + 1))})
    code, _, err = run(capsys, "atlas", "submit", "--measure", "tls", "--country", "VN", "--key-file", str(key_file),
                       "--state", str(tmp_path / "s.json"))
    assert code == 0, err
    assert api.calls[0].request.headers["Authorization"] == f"Key {KEY}"


@pytest.mark.parametrize("status, error, expected", [
    (402, {"detail": "You do not have enough credits to schedule this measurement."}, "not enough RIPE Atlas credits"),
    (400, {"detail": "There were problems with your request", "errors": [
        {"source": {"pointer": "/probes/0/value"}, "detail": "Unknown country code: XX"}]}, "rejected the probe selection"),
])
def test_credits_and_unknown_country(capsys, api, monkeypatch, tmp_path, status, error, expected):
    monkeypatch.setenv("RIPE_ATLAS_KEY", KEY)
    api.add(responses.POST, f"{API}/measurements/", status=status, json={"error": {"status": status, **error}})
    code, _, err = run(capsys, "atlas", "submit", "--country", "XX", "--state", str(tmp_path / "s.json"))
    assert code == 2
    assert expected in err and err.count("\n") == 1


def test_bad_options_are_refused_before_any_request(capsys, api):
    for args in (["--country", "Vietnam"], ["--asn", "0"], [], ["--country", "VN", "--measure", "http"],
                 ["--country", "VN", "--probes", "0"]):
        code, _, err = run(capsys, "atlas", "submit", "--dry-run", *args)
        assert code == 2, args
        assert err.startswith("netprobe: error:")
    assert len(api.calls) == 0


def test_api_down(capsys, api, monkeypatch, tmp_path):
    monkeypatch.setenv("RIPE_ATLAS_KEY", KEY)
    api.add(responses.POST, f"{API}/measurements/", body=requests.exceptions.ConnectionError("connection refused"))
    code, _, err = run(capsys, "atlas", "submit", "--country", "VN", "--state", str(tmp_path / "s.json"))
    assert code == 1
    assert "cannot reach the RIPE Atlas API at atlas.ripe.net" in err and "Traceback" not in err


def test_api_slow_is_bounded_by_the_deadline(capsys, api, monkeypatch, tmp_path):
    monkeypatch.setenv("RIPE_ATLAS_KEY", KEY)

    def slow(request):
        time.sleep(3)
        return 201, {}, json.dumps({"measurements": [1]})

    api.add_callback(responses.POST, f"{API}/measurements/", callback=slow)
    started = time.monotonic()
    code, _, err = run(capsys, "atlas", "submit", "--country", "VN", "--deadline", "0.5",
                       "--state", str(tmp_path / "s.json"))
    assert time.monotonic() - started < 2.5
    assert code == 1
    assert "before the --deadline" in err


# --- fetch -------------------------------------------------------------------------------------

def serve(api, msm_id: int, results: list, status: str = "Stopped", meta: dict | None = None):
    api.add(responses.GET, f"{API}/measurements/{msm_id}/",
            json={"id": msm_id, "status": {"id": 4, "name": status}, **(meta or {})})
    api.add(responses.GET, f"{API}/measurements/{msm_id}/results", json=results)


def serve_statuses(api, statuses: dict[int, str]):
    """The measurement list, filtered by id: how fetch reads the status of a whole submission."""
    api.add(responses.GET, re.compile(re.escape(f"{API}/measurements/?") + r".*"),
            json={"results": [{"id": i, "status": {"name": name}} for i, name in statuses.items()]})


def state_with(tmp_path, measurements: list[tuple[int, dict, str]]) -> Path:
    path = tmp_path / "atlas.json"
    path.write_text(json.dumps({"schema": "netprobe-atlas-state/1", "submissions": [{
        "targets": "atlas-test", "targets_file": TARGETS, "probes": [],
        "measurements": [{"id": i, "definition": d, "role": r} for i, d, r in measurements]}]}))
    return path


def test_fetch_downloads_judges_and_appends_without_duplicates(capsys, api, tmp_path):
    tor, reviwiki = load("sslcert-torproject-1443369.json"), load("sslcert-reviwiki-15418551.json")
    serve(api, 1443369, tor)
    serve(api, 15418551, reviwiki)
    serve_statuses(api, {1443369: "Stopped", 15418551: "Stopped"})
    api.add(responses.GET, re.compile(re.escape(f"{API}/probes/") + r".*"),
            json={"results": [{"id": 1003, "asn_v4": 1764, "asn_v6": None, "country_code": "AT"}]})
    state = state_with(tmp_path, [
        (15418551, {"type": "sslcert", "target": "reviwiki.info", "hostname": "reviwiki.info", "port": 443}, "control"),
        (1443369, {"type": "sslcert", "target": "torproject.org", "hostname": "torproject.org", "port": 443}, "service")])
    output = tmp_path / "results.jsonl"
    code, out, err = run(capsys, "atlas", "fetch", "--state", str(state), "--output", str(output), "--format", "jsonl",
                         "--ca-bundle", ROOTS)
    assert code == 0, err
    lines = output.read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [json.loads(line) for line in out.splitlines()] == records
    probes = {r["label"] for r in records}
    assert probes == {f"atlas:{r['prb_id']}" for r in tor + reviwiki}
    first = next(r for r in records if r["label"] == "atlas:1003" and r["probe"] == "https")
    assert first["verdict"] == "reachable"  # a verified certificate needs no control
    assert first["evidence"]["atlas"]["asn_v4"] == 1764 and first["evidence"]["atlas"]["country"] == "AT"
    china = next(r for r in records if r["label"] == "atlas:1008" and r["probe"] == "https")
    assert (china["verdict"], china["reason"]) == ("inconclusive", "dns.no_control")  # no control from 1008
    assert china["evidence"]["observed_reason"] == "dns.outside_networks"
    assert "country" not in china["evidence"]["atlas"]  # the API said nothing of probe 1008
    control = next(r for r in records if r["label"] == "atlas:2754")
    assert control["probe"] == "control" and control["evidence"]["stage"] == "tls"
    assert f"{len(records)} new record(s) appended" in err
    # The measurements were fetched, their metadata read, the probes looked up.
    urls = [c.request.url for c in api.calls]
    assert f"{API}/measurements/1443369/results" in urls and any("probes/?" in u and "id__in=" in u for u in urls)
    assert not any(u.endswith("/measurements/1443369/") for u in urls)  # statuses came in one list request
    assert all("Authorization" not in c.request.headers for c in api.calls)  # public data: no key sent
    # Again: nothing new.
    code, out, err = run(capsys, "atlas", "fetch", "--state", str(state), "--output", str(output), "--format", "jsonl",
                         "--ca-bundle", ROOTS)
    assert code == 0
    assert output.read_text().splitlines() == lines
    assert "0 new record(s)" in err and f"{len(records)} already there" in err


def test_fetch_says_when_a_measurement_is_still_running(capsys, api, tmp_path):
    serve(api, 1443369, load("sslcert-torproject-1443369.json"))
    serve(api, 15418551, load("sslcert-reviwiki-15418551.json"), status="Ongoing")
    serve_statuses(api, {1443369: "Stopped", 15418551: "Ongoing"})
    api.add(responses.GET, re.compile(re.escape(f"{API}/probes/") + r".*"), json={"results": []})
    state = state_with(tmp_path, [
        (15418551, {"type": "sslcert", "target": "reviwiki.info", "port": 443}, "control"),
        (1443369, {"type": "sslcert", "target": "torproject.org", "port": 443}, "service")])
    code, out, err = run(capsys, "atlas", "fetch", "--state", str(state), "--format", "jsonl", "--ca-bundle", ROOTS)
    assert code == 0
    assert "still running (15418551)" in err
    labels = {json.loads(line)["label"] for line in out.splitlines()}
    assert labels == {"atlas:2754", "atlas:29332", "atlas:29296"}  # the probes that reported in both
    assert "held back" in err


def test_fetch_by_id_unknown_measurement(capsys, api, tmp_path):
    api.add(responses.GET, f"{API}/measurements/99999999/", status=404,
            json={"error": {"status": 404, "detail": "Not found."}})
    code, _, err = run(capsys, "atlas", "fetch", "99999999", "--state", str(tmp_path / "none.json"))
    assert code == 2
    assert "has no measurement 99999999 (HTTP 404" in err


def test_fetch_by_id_reads_definitions_from_the_api_and_counts_what_sagan_cannot_parse(capsys, api, tmp_path):
    results = load("sagan-dns-nxdomain-2815716.json") + [{"type": "dns", "prb_id": 5, "msm_id": 2815716,
                                                           "timestamp": "yesterday", "fw": 4700}]
    serve(api, 2815716, results, meta={"type": "dns", "query_argument": "aardvark.nlnet.nl", "query_type": "A"})
    api.add(responses.GET, re.compile(re.escape(f"{API}/probes/") + r".*"), json={"results": []})
    code, out, err = run(capsys, "atlas", "fetch", "2815716", "--targets", TARGETS, "--format", "jsonl",
                         "--state", str(tmp_path / "none.json"))
    assert code == 0, err
    record = json.loads(out.splitlines()[0])
    # NXDOMAIN with no control name asked from that probe: seen, not judged a block.
    assert (record["probe"], record["reason"], record["evidence"]["observed_reason"]) == \
        ("dns", "dns.no_control", "dns.nxdomain")
    assert "skipped 1 result(s) that could not be parsed" in err


def test_fetch_api_down(capsys, api, tmp_path):
    api.add(responses.GET, f"{API}/measurements/5/", body=requests.exceptions.ConnectionError("refused"))
    code, _, err = run(capsys, "atlas", "fetch", "5", "--state", str(tmp_path / "none.json"))
    assert code == 1 and "cannot reach" in err


def test_fetch_with_nothing_to_fetch(capsys, api, tmp_path):
    code, _, err = run(capsys, "atlas", "fetch", "--state", str(tmp_path / "none.json"))
    assert code == 2


def test_from_file_json_lines_and_arrays_offline(capsys, api, tmp_path):
    lines = tmp_path / "results.jsonl"
    lines.write_text("\n".join(json.dumps(r) for r in load("dns-www.ripe.net-1421267.json")) + "\n{not json\n")
    code, out, err = run(capsys, "atlas", "fetch", "--targets", TARGETS, "--from-file", str(lines),
                         str(DATA / "firmware-traceroute-tcp-4T.json"), "--format", "jsonl",
                         "--state", str(tmp_path / "none.json"))
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert {(r["label"], r["probe"], r["reason"]) for r in records if r["probe"] != "summary"} == {
        ("atlas:10080", "dns", None), ("atlas:10024", "dns", "dns.resolver_no_control"),
        ("atlas:11891", "dns", None), ("atlas:12320", "dns", None), ("atlas:99001", "tcp", "tcp.unproven")}
    assert "skipped 1 result(s) that could not be parsed" in err
    assert "measured no control in a run" in err and "*.no_control" in err
    assert len(api.calls) == 0


def test_from_file_of_others_results_leads_the_report_with_a_diagnosis_and_claims_no_block(capsys, tmp_path):
    """The real DNS and sslcert results of the shared set, none with a control from its probe:
    REFUSED, timeouts, NODATA, a dead local resolver, dnserr, fake addresses and a proxy's
    certificate are all seen and kept, none is called blocked; each probe's run ends with a
    summary, and `netprobe report` leads with it."""
    files = [str(DATA / f) for f in ("dns-1xbet-9211416.json", "dns-ipv4only-arpa-9386425.json",
                                     "dns-www.ripe.net-1421267.json", "sslcert-torproject-1443369.json",
                                     "sslcert-torproject-opendns-1443162.json", "sslcert-google-15285836.json")]
    output = tmp_path / "atlas.jsonl"
    code, out, err = run(capsys, "atlas", "fetch", "--targets", TARGETS, "--from-file", *files, "--ca-bundle", ROOTS,
                         "--format", "jsonl",
                         "--output", str(output), "--state", str(tmp_path / "none.json"))
    assert code == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    assert not [r for r in records if r["verdict"] in ("blocked", "reset")]
    labels = {r["label"] for r in records}
    summaries = {r["label"]: r for r in records if r["probe"] == "summary"}
    assert set(summaries) == labels
    assert not any(s["reason"] == "summary.blocking_observed" for s in summaries.values())
    refused = next(r for r in records if r["address"] == "147.231.12.1:53")
    assert (refused["reason"], refused["evidence"]["observed_reason"]) == ("dns.resolver_no_control", "dns.refused")
    first = summaries["atlas:4062"]["evidence"]["findings"][0]
    assert first.startswith("Not judged: 1 failure (dns) without a control")
    page = tmp_path / "report.html"
    code, _, err = run(capsys, "report", str(output), "--label", "atlas:4062", "--html", str(page))
    assert code == 0, err
    text = page.read_text()
    # The page opens with the probe's diagnosis: two resolvers answered genuinely, the third's
    # REFUSED was not judged.
    assert text.index('<section class="answer" data-diagnosis="reachable"') < text.index("<h2>atlas:4062: ") \
        < text.index("Not judged: 1 failure (dns)") < text.index("<h2>Timeline")


def test_from_file_errors(capsys, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[{")
    code, _, err = run(capsys, "atlas", "fetch", "--from-file", str(bad), "--state", str(tmp_path / "n.json"))
    assert code == 2 and "not a JSON array" in err
    code, _, err = run(capsys, "atlas", "fetch", "--from-file", str(tmp_path / "missing.json"))
    assert code == 2 and "cannot read" in err
    code, _, err = run(capsys, "atlas", "fetch", str(bad))
    assert code == 2 and "--from-file" in err


def test_a_measurement_that_found_no_probes(capsys, api, tmp_path):
    serve(api, 123, [], status="No suitable probes")
    code, _, err = run(capsys, "atlas", "fetch", "123", "--state", str(tmp_path / "none.json"))
    assert code == 2
    assert "no probe matched the selection" in err and err.count("\n") == 1


def test_reads_retry_with_the_key_when_the_api_refuses_without_it(capsys, api, monkeypatch, tmp_path):
    monkeypatch.setenv("RIPE_ATLAS_KEY", KEY)
    calls = []

    def private(request):
        calls.append(request.headers.get("Authorization"))
        if request.headers.get("Authorization") != f"Key {KEY}":
            return 403, {}, json.dumps({"error": {"status": 403, "detail": "private"}})
        return 200, {}, json.dumps({"id": 77, "status": {"name": "Stopped"}, "type": "dns",
                                    "query_argument": "aardvark.nlnet.nl", "query_type": "A"})

    api.add_callback(responses.GET, f"{API}/measurements/77/", callback=private)
    api.add(responses.GET, f"{API}/measurements/77/results", json=[])
    code, _, err = run(capsys, "atlas", "fetch", "77", "--targets", TARGETS, "--state", str(tmp_path / "n.json"))
    assert code == 0, err
    assert calls == [None, f"Key {KEY}"]


def test_a_damaged_state_file_is_one_line(capsys, tmp_path):
    state = tmp_path / "atlas.json"
    state.write_text("{not json")
    code, _, err = run(capsys, "atlas", "fetch", "--state", str(state))
    assert code == 2 and "is not netprobe's" in err
    state.write_text(json.dumps({"submissions": [7, {"measurements": [{"id": "x"}, {"id": 5, "definition": 3}]}]}))
    code, _, err = run(capsys, "atlas", "fetch", "--state", str(state))
    assert code == 2 and "no measurements to fetch" in err


def test_an_api_that_serves_only_results(capsys, api, tmp_path):
    """No measurement description, no probe metadata: the results are judged all the same, and
    what is missing is said."""
    api.add(responses.GET, f"{API}/measurements/2815716/", status=404, json={"error": {"status": 404}})
    api.add(responses.GET, f"{API}/measurements/2815716/results", json=load("sagan-dns-nxdomain-2815716.json"))
    api.add(responses.GET, re.compile(re.escape(f"{API}/probes/") + r".*"), status=404, body="no")
    code, out, err = run(capsys, "atlas", "fetch", "2815716", "--targets", TARGETS, "--format", "jsonl",
                         "--state", str(tmp_path / "none.json"))
    assert code == 0, err
    record = json.loads(out.splitlines()[0])
    assert record["evidence"]["observed_reason"] == "dns.nxdomain" and "asn_v4" not in record["evidence"]["atlas"]
    assert "not its description" in err and "probe metadata (ASN, country) left out" in err


def test_an_answer_larger_than_the_cap_is_refused(capsys, api, monkeypatch, tmp_path):
    from netprobe.interop import atlas_api
    monkeypatch.setattr(atlas_api, "MAX_RESPONSE_BYTES", 4096)
    serve(api, 1443369, load("sslcert-torproject-1443369.json"))  # about 63 KB
    code, _, err = run(capsys, "atlas", "fetch", "1443369", "--targets", TARGETS, "--state", str(tmp_path / "n.json"))
    assert code == 1
    assert "refused" in err and "Traceback" not in err
