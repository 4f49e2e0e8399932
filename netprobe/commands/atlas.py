"""`netprobe atlas submit` and `netprobe atlas fetch`: RIPE Atlas probes as vantage points.

The edges only: options, the API key, the output file and the terminal.  What
is asked of Atlas and what its answers mean is netprobe/interop/atlas.py; the API
calls are interop/atlas_api.py, the state file interop/atlas_state.py.  Exit
codes as everywhere: 2 and one line on stderr for what the user can fix (no
key, a rejected key, no credits, a bad option or file, an unknown measurement),
1 for an API that is down, slow or failing, 0 otherwise (also when a
measurement is still running: what is ready is fetched, and the rest is said).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import click

from netprobe.commands.common import (RECORD_FORMATS, ExitCode, UserError, default_controls, load_targets,
                                      positive_seconds)
from netprobe.text import one_line, printable


MAX_KEY_FILE_BYTES = 4096
MAX_INPUT_BYTES = 256 * 1024 * 1024     # one --from-file file
MAX_LINE_BYTES = 8 * 1024 * 1024        # one JSON line (a result, or a record in --output)
MAX_RESULTS = 500_000                   # results converted in one go (memory: ~1 KB each)
_COUNTRY = re.compile(r"^[A-Za-z]{2}$")


def api_options(func):
    options = [
        click.option("--targets", "targets_file", envvar="NETPROBE_TARGETS", type=click.Path(dir_okay=False),
                     default=None, help="TOML target file (default: the built-in Telegram set)."),
        click.option("--no-default-controls", "no_default_controls", is_flag=True,
                     envvar="NETPROBE_NO_DEFAULT_CONTROLS",
                     help="Do not add the built-in set's controls to a target file that names none: failures at "
                          "a stage with no control of its own are then inconclusive."),
        click.option("--state", "state_file", type=click.Path(dir_okay=False), default=None,
                     help="State file of submitted measurements (default: ~/.local/state/netprobe/atlas.json)."),
        click.option("--api-server", envvar="RIPE_ATLAS_SERVER", default="atlas.ripe.net", show_default=True,
                     metavar="HOST", help="RIPE Atlas API host (env RIPE_ATLAS_SERVER)."),
        click.option("--key-file", type=click.Path(dir_okay=False), default=None,
                     help="File holding the API key (default: env RIPE_ATLAS_KEY)."),
        click.option("--timeout", type=float, default=30.0, show_default=True, callback=positive_seconds,
                     help="Deadline of one API request, in seconds."),
        click.option("--deadline", type=float, default=600.0, show_default=True, callback=positive_seconds,
                     help="Deadline of the whole command, in seconds."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.group("atlas")
def atlas():
    """Measure from RIPE Atlas probes: many networks, the same judgment.

    `submit` schedules one-off measurements (DNS with each probe's resolver,
    TLS certificates with SNI, TCP traceroutes) from probes you select;
    `fetch` downloads their results and writes records like `run` does, with
    label atlas:<probe id>.
    """


# --- the key ------------------------------------------------------------------------------

def read_key(key_file: str | None, required: bool) -> str | None:
    """The API key from --key-file or RIPE_ATLAS_KEY; never echoed, not even in an error."""
    if key_file:
        # lazy: bounded_input 5 ms; --help imports every command module (test_startup)
        from netprobe.bounded_input import read_regular_file
        try:
            raw = read_regular_file(Path(key_file), MAX_KEY_FILE_BYTES)
        except OSError as exc:
            raise UserError(f"--key-file: cannot read {key_file}: {exc.strerror or exc}") from None
        lines = [line.strip() for line in raw.decode("utf-8", "replace").splitlines() if line.strip()]
        key = lines[0] if lines else ""
        source = f"--key-file {key_file}"
    else:
        key = os.environ.get("RIPE_ATLAS_KEY", "").strip()
        source = "RIPE_ATLAS_KEY"
    if not key:
        if required:
            raise UserError("no RIPE Atlas API key: set RIPE_ATLAS_KEY or give --key-file (a key allowed to "
                            "create measurements, made at atlas.ripe.net under API keys)")
        return None
    if len(key) > 200 or not all(ch.isprintable() and not ch.isspace() for ch in key):
        raise UserError(f"the API key in {source} is not a key (it has spaces or control characters)")
    return key


def make_client(options: dict, key: str | None):
    # lazy: interop.atlas_api 112 ms; --help imports every command module (test_startup)
    from netprobe.interop.atlas_api import AtlasClient, Leash
    return AtlasClient(options["api_server"], key, Leash(options["timeout"], time.monotonic() + options["deadline"]))


def api_failure(exc) -> int:
    """An AtlasError the user cannot fix: one line, exit 1 (fixable ones raise UserError: exit 2)."""
    if exc.fixable:
        raise UserError(exc.message)
    click.echo(f"netprobe: error: {one_line(exc.message)}", err=True)
    return ExitCode.SERVICE_FAILED


# --- the state file -----------------------------------------------------------------------

def state_path(options: dict) -> Path:
    # lazy: interop 6 ms and up; --help imports every command module (test_startup)
    from netprobe.interop.atlas_state import default_state_path
    return Path(options["state_file"]) if options["state_file"] else default_state_path()


# --- submit -------------------------------------------------------------------------------

@atlas.command()
@click.option("--country", "countries", multiple=True, metavar="CC", help="Probes in this country (ISO 3166 code); repeatable.")
@click.option("--asn", "asns", multiple=True, type=int, metavar="N", help="Probes in this AS; repeatable.")
@click.option("--probe", "probe_ids", multiple=True, type=int, metavar="ID", help="This probe; repeatable.")
@click.option("--probes", "count", type=int, default=5, show_default=True,
              help="How many probes per --country and per --asn.")
@click.option("--measure", default="dns,tls,tcp", show_default=True, metavar="LIST",
              help="What to schedule: dns (A/AAAA with the probe's resolver), tls (sslcert with SNI), "
                   "tcp (TCP traceroute to the endpoints and TCP controls).")
@click.option("--dry-run", is_flag=True, help="Print exactly what would be scheduled and its cost; submit nothing.")
@api_options
def submit(countries, asns, probe_ids, count, measure, dry_run, **options):
    """Schedule one-off measurements of the target set from RIPE Atlas probes."""
    # lazy: interop.atlas 65 ms; --help imports every command module (test_startup)
    from netprobe.interop import atlas as model

    for cc in countries:
        if not _COUNTRY.match(cc):
            raise UserError(f"--country: {cc[:20]!r} is not a two-letter country code (ISO 3166-1, e.g. VN)")
    if any(a < 1 or a > 2**32 - 1 for a in asns):
        raise UserError("--asn: an AS number is a whole number from 1 to 4294967295")
    if any(p < 1 for p in probe_ids):
        raise UserError("--probe: a probe id is a whole number >= 1")
    if count < 1 or count > 1000:
        raise UserError(f"--probes: must be from 1 to 1000, got {count}")
    if not (countries or asns or probe_ids):
        raise UserError("choose probes: --country CC, --asn N or --probe ID (each repeatable)")
    kinds = [k.strip() for k in measure.split(",") if k.strip()]
    unknown = [k for k in kinds if k not in model.MEASURES]
    if unknown or not kinds:
        raise UserError(f"--measure: unknown kind {unknown[0] if unknown else ''!r} (known: {', '.join(model.MEASURES)})")
    targets = default_controls(load_targets(options["targets_file"]), options)
    definitions = model.definitions(targets, kinds)
    if not definitions:
        raise UserError(f"the target set {targets.name} gives nothing to measure for --measure {measure}")
    sources = model.probe_sources(countries, asns, probe_ids, count)
    probes = sum(s["requested"] for s in sources)
    cost = model.estimate_credits(definitions, probes)
    post = _post_data(definitions, sources)
    if dry_run:
        click.echo(json.dumps(post, indent=2, sort_keys=True))
        _print_cost(cost)
        return 0
    # lazy: interop 6-112 ms; --help imports every command module (test_startup)
    from netprobe.interop.atlas_state import STATE_SCHEMA, StateError, check_writable, load_state, save_state
    path = state_path(options)
    key = read_key(options["key_file"], required=True)
    client = make_client(options, key)
    check_writable(path)
    # lazy: interop.atlas_api 112 ms; --help imports every command module (test_startup)
    from netprobe.interop.atlas_api import AtlasError
    try:
        ids = client.create(definitions, sources)
    except AtlasError as exc:
        return api_failure(exc)
    if len(ids) != len(definitions):
        click.echo(f"netprobe: warning: asked for {len(definitions)} measurements, RIPE Atlas created {len(ids)}",
                   err=True)
    measurements = []
    for msm_id, definition in zip(ids, definitions):
        measurements.append({"id": msm_id, "definition": definition, "role": model.role_of(definition, targets)})
    state = load_state(path)
    state["schema"] = STATE_SCHEMA
    state["submissions"].append({
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "targets": targets.name,
        "targets_file": os.path.abspath(options["targets_file"]) if options["targets_file"] else None,
        "api_server": client.server, "probes": sources, "measurements": measurements,
    })
    try:
        save_state(path, state)
    except StateError as exc:
        raise UserError(f"{exc}; the measurements were scheduled: fetch them with "
                        f"`netprobe atlas fetch {' '.join(map(str, ids))}`") from None
    for msm_id in ids:
        click.echo(msm_id)
    click.echo(f"netprobe: scheduled {len(ids)} measurements of {targets.name} on up to {probes} probes "
               f"(about {cost['total']} credits); ids kept in {path}. Results arrive within minutes: "
               "`netprobe atlas fetch`", err=True)
    return 0


def _post_data(definitions: list[dict], sources: list[dict]) -> dict[str, Any]:
    """The exact body cousteau will POST (built by cousteau itself, without sending it)."""
    # lazy: ripe.atlas.cousteau 91 ms, only to submit; --help imports every command module (test_startup)
    from ripe.atlas.cousteau import AtlasCreateRequest, AtlasSource, Dns, Sslcert, Traceroute

    kinds = {"dns": Dns, "sslcert": Sslcert, "traceroute": Traceroute}
    request = AtlasCreateRequest(key=None, measurements=[kinds[d["type"]](**{k: v for k, v in d.items()
                                                                             if k != "type"}) for d in definitions],
                                 sources=[AtlasSource(**s) for s in sources], is_oneoff=True)
    request._construct_post_data()
    return request.post_data


def _print_cost(cost: dict[str, Any]) -> None:
    parts = ", ".join(f"{v['measurements']} {k} ({v['credits_per_probe']} credits per probe)"
                      for k, v in cost["by_type"].items())
    click.echo(f"netprobe: {cost['measurements']} one-off measurements: {parts}", err=True)
    click.echo(f"netprobe: estimated cost: {cost['per_probe']} credits per probe x {cost['probes']} probes = "
               f"{cost['total']} credits (one-off results cost {cost['one_off_factor']}x; Atlas charges only "
               "the results probes deliver)", err=True)


# --- fetch --------------------------------------------------------------------------------

@atlas.command()
@click.argument("args", nargs=-1, metavar="[MSM_ID... | --from-file FILE...]")
@click.option("--from-file", "from_file", is_flag=True,
              help="The arguments are files of results downloaded by other means (JSON array or JSON lines), "
                   "not measurement ids. Contacts no API unless --lookup-probes.")
@click.option("--lookup-probes", is_flag=True, help="With --from-file: ask the API for the probes' ASN and country.")
@click.option("--format", "fmt", type=click.Choice(RECORD_FORMATS), default=None,
              help="Stdout format (default: table on a terminal, else jsonl).")
@click.option("--output", type=click.Path(dir_okay=False), default=None,
              help="Append every new record to FILE (records already there are not written again).")
@click.option("--ca-bundle", type=click.Path(dir_okay=False), default=None,
              help="PEM trust store for the certificates probes report (default: the system's).")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing on stdout.")
@api_options
def fetch(args, from_file, lookup_probes, fmt, output, ca_bundle, quiet, **options):
    """Download Atlas results (default: the measurements in the state file) and judge them.

    With --from-file, classify results downloaded by other means instead.
    """
    # lazy: interop 65-112 ms; --help imports every command module (test_startup)
    from netprobe.interop.atlas import Context
    from netprobe.interop.atlas_api import AtlasError

    files, msm_ids = (), ()
    if from_file:
        files = args
        if not files:
            raise UserError("--from-file: name at least one file of results")
    else:
        if not all(a.isdigit() and 0 < int(a) < 10**12 for a in args):
            bad = next(a for a in args if not (a.isdigit() and 0 < int(a) < 10**12))
            raise UserError(f"not a measurement id: {bad[:40]!r} (files need --from-file)")
        msm_ids = tuple(int(a) for a in args)
    store, ca_evidence = _trust_store(ca_bundle)
    # lazy: interop 6 ms; --help imports every command module (test_startup)
    from netprobe.interop.atlas_state import load_state
    path = state_path(options)
    state = load_state(path, missing_ok=bool(files or msm_ids or options["state_file"] is None))
    known = {m["id"]: (sub, m) for sub in state["submissions"] for m in sub.get("measurements", [])
             if isinstance(m, dict) and isinstance(m.get("id"), int)}
    key = read_key(options["key_file"], required=False)
    sink = _Sink(fmt, output, quiet)
    notes: list[str] = []
    try:
        if files:
            raws = _read_files(files)
            definitions = {msm: m["definition"] | {"netprobe_role": m.get("role")} for msm, (_, m) in known.items()}
            targets = default_controls(load_targets(options["targets_file"]), options)
            probes = {}
            if lookup_probes:
                client = make_client(options, key)
                probes = _probe_metadata(client, sorted({r.get("prb_id") for r in raws if isinstance(r, dict)
                                                         and isinstance(r.get("prb_id"), int)}), notes)
            context = Context(targets, definitions, frozenset(), probes, store, ca_evidence)
            sink.take(_convert(raws, context, notes), notes)
        else:
            client = make_client(options, key)
            if msm_ids:
                batches = [(None, list(dict.fromkeys(msm_ids)))]
            else:
                batches = [(sub, [m["id"] for m in sub.get("measurements", []) if isinstance(m.get("id"), int)])
                           for sub in state["submissions"]]
                if not any(ids for _, ids in batches):
                    raise UserError(f"no measurements to fetch in {path}: run `netprobe atlas submit`, or name "
                                    "measurement ids, or use --from-file")
            for submission, ids in batches:
                sink.take(_fetch_batch(client, submission, ids, known, options, store, ca_evidence, notes), notes)
    except AtlasError as exc:
        sink.close()
        for note in notes:
            click.echo(f"netprobe: {one_line(note)}", err=True)
        return api_failure(exc)
    sink.close()
    sink.finish(notes)
    for note in notes:
        click.echo(f"netprobe: {one_line(note)}", err=True)
    return 0


def _trust_store(ca_bundle: str | None):
    # lazy: interop.chaincheck 126 ms; --help imports every command module (test_startup)
    from netprobe.interop.chaincheck import load_store
    if ca_bundle and not os.path.isfile(ca_bundle):
        raise UserError(f"--ca-bundle: no such file: {ca_bundle}")
    try:
        store = load_store(ca_bundle)
    except (OSError, ValueError) as exc:
        raise UserError(f"--ca-bundle: {ca_bundle or 'the system trust store'} is not a usable PEM trust store "
                        f"({str(exc)[:80]})") from None
    if not store:
        raise UserError(f"--ca-bundle: no certificate in {ca_bundle or 'the system trust store'}")
    if ca_bundle:
        # lazy: probes.https 56 ms; --help imports every command module (test_startup)
        from netprobe.probes.https import file_digest
        return store, {"file_sha256": file_digest(ca_bundle)}
    return store, "system"


def _fetch_batch(client, submission, ids, known, options, store, ca_evidence, notes):
    """One submission's (or the named) measurements: metadata, results, probes, conversion."""
    # lazy: interop 65-112 ms; --help imports every command module (test_startup)
    from netprobe.interop.atlas import Context
    from netprobe.interop.atlas_api import is_running, status_name

    definitions: dict[int, dict] = {}
    running: set[int] = set()
    raws: list = []
    targets_file = options["targets_file"] or (submission or {}).get("targets_file")
    if targets_file is None and not submission and ids:
        subs = {known[i][0].get("targets_file") for i in ids if i in known}
        targets_file = next(iter(subs)) if len(subs) == 1 else None
    targets = default_controls(load_targets(targets_file), options)
    # lazy: interop.atlas_api 112 ms; --help imports every command module (test_startup)
    from netprobe.interop.atlas_api import AtlasError

    known_ids = [i for i in ids if i in known]
    metas: dict[int, dict] = {}
    if known_ids:
        try:
            metas = client.statuses(known_ids)
        except AtlasError as exc:
            if not exc.fixable:
                raise
            # An API without the measurement list: ask one measurement at a time below.
    ended_empty = 0
    for msm_id in ids:
        if msm_id in known:
            _, entry = known[msm_id]
            definitions[msm_id] = dict(entry["definition"]) | {"netprobe_role": entry.get("role")}
        meta, meta_error = metas.get(msm_id), None
        if meta is None:
            try:
                meta = client.measurement(msm_id)
            except AtlasError as exc:
                if not exc.fixable:
                    raise
                meta, meta_error = {}, exc
        if msm_id not in known:
            definitions[msm_id] = {k: meta[k] for k in ("type", "target", "query_argument", "query_type", "port",
                                                         "af", "protocol", "hostname")
                                   if k in meta and isinstance(meta[k], (str, int)) and not isinstance(meta[k], bool)}
        if meta_error is not None:
            try:
                raws.extend(client.results(msm_id))
            except AtlasError:
                raise meta_error from None
            notes.append(f"measurement {msm_id}: the API gave its results but not its description "
                         f"({meta_error.message[:80]}); whether it is still running is unknown")
            continue
        status = status_name(meta)
        if is_running(meta):
            running.add(msm_id)
        elif status.lower() in ("no suitable probes", "failed", "denied", "canceled", "cancelled"):
            ended_empty += 1
            notes.append(f"measurement {msm_id} ended without results: {status}"
                         + (" (no probe matched the selection: check --country/--asn/--probe)"
                            if "suitable" in status.lower() else ""))
            continue
        raws.extend(client.results(msm_id))
        if len(raws) > MAX_RESULTS:
            raise UserError(f"more than {MAX_RESULTS} results at once: fetch fewer measurements per command")
    if ids and ended_empty == len(ids):
        raise UserError(f"none of the {len(ids)} measurement(s) ran: {notes[-1].partition(': ')[2]}")
    if running:
        notes.append(f"{len(running)} measurement(s) still running ({', '.join(map(str, sorted(running)[:10]))}): "
                     "fetched what is ready; fetch again when they end")
    prb_ids = sorted({r.get("prb_id") for r in raws if isinstance(r, dict) and isinstance(r.get("prb_id"), int)
                      and not isinstance(r.get("prb_id"), bool)})
    probes = _probe_metadata(client, prb_ids, notes)
    return _convert(raws, Context(targets, definitions, frozenset(running), probes, store, ca_evidence), notes)


def _probe_metadata(client, prb_ids: list[int], notes: list[str]) -> dict[int, dict]:
    """ASN and country of the probes, when the API gives them; otherwise left out, never guessed."""
    # lazy: interop.atlas_api 112 ms; --help imports every command module (test_startup)
    from netprobe.interop.atlas_api import AtlasError
    if not prb_ids:
        return {}
    try:
        return client.probes(prb_ids)
    except AtlasError as exc:
        notes.append(f"probe metadata (ASN, country) left out: {exc.message}")
        return {}


def _convert(raws, context, notes):
    # lazy: interop.atlas 65 ms; --help imports every command module (test_startup)
    from netprobe.interop.atlas import convert
    result = convert(raws, context)
    if result.unparseable:
        notes.append(f"skipped {result.unparseable} result(s) that could not be parsed")
    for why, n in sorted(result.skipped.items()):
        notes.append(f"skipped {n} {why}")
    if result.held:
        notes.append(f"{len(result.held)} probe(s) held back until their running measurements end")
    if result.without_controls:
        notes.append(f"{len(result.without_controls)} probe(s) measured no control in a run: their failures there "
                     "are inconclusive (*.no_control), the observed reasons kept in the evidence")
    return result


def _read_files(files) -> list:
    """Results from JSON-array or JSON-lines files (bounded_input.json_array_or_lines); a line
    that is no JSON is counted, not fatal."""
    # lazy: bounded_input 5 ms; --help imports every command module (test_startup)
    from netprobe.bounded_input import json_array_or_lines
    results: list = []
    for name in files:
        try:
            results.extend(json_array_or_lines(Path(name), MAX_INPUT_BYTES, MAX_LINE_BYTES))
        except OSError as exc:
            raise UserError(f"--from-file: cannot read {name}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise UserError(f"--from-file: {name} is not a JSON array of results ({str(exc)[:60]})") from None
        if len(results) > MAX_RESULTS:
            raise UserError(f"--from-file: more than {MAX_RESULTS} results: split the files")
    return results


# --- output ---------------------------------------------------------------------------------

def record_identity(record: dict[str, Any]) -> bytes:
    """What makes two records the same observation: run (probe, measurements, times), kind, target, address."""
    # lazy: hashlib 3 ms; --help imports every command module (test_startup)
    import hashlib
    text = "|".join(str(record.get(k)) for k in ("run_id", "probe", "target", "address", "label"))
    return hashlib.sha256(text.encode("utf-8", "replace")).digest()[:16]


def already_written(path: str, wanted: set[bytes]) -> set[bytes]:
    """Which of `wanted` are in the output file already; memory bounded by `wanted`, not by the file."""
    # lazy: bounded_input 5 ms; --help imports every command module (test_startup)
    from netprobe.bounded_input import whole_lines
    found: set[bytes] = set()
    try:
        f = open(path, "rb")
    except OSError:
        return found
    with f:
        for line in whole_lines(f, MAX_LINE_BYTES):
            if b'"label":"atlas:' not in line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                identity = record_identity(record)
                if identity in wanted:
                    found.add(identity)
    return found


class _Sink:
    """Records through netprobe.output.RecordSink, as `run` writes them; with --output, a
    record already in the file is neither written again nor shown."""

    def __init__(self, fmt: str | None, output: str | None, quiet: bool):
        # lazy: output 25 ms; --help imports every command module (test_startup)
        from netprobe.output import RecordSink, default_format
        self.fmt = default_format(fmt)
        self.output = output
        self.sink = RecordSink(self.fmt, output, quiet)
        self.written = 0
        self.duplicates = 0
        self.counts: dict[str, int] = {}

    def take(self, conversion, notes: list[str]) -> None:
        # lazy: records 18 ms; --help imports every command module (test_startup)
        from netprobe.records import RunInfo, encode

        records = [encode(result, RunInfo(label=label, run_id=run_id))
                   for result, run_id, label in conversion.records]
        present: set[bytes] = set()
        if self.output:
            present = already_written(self.output, {record_identity(r) for r in records})
        for record in records:
            if self.output:
                if record_identity(record) in present:
                    self.duplicates += 1
                    continue
                self.written += 1
            self.sink.write(record)
            self.counts[record["verdict"]] = self.counts.get(record["verdict"], 0) + 1

    def close(self) -> None:
        self.sink.close()

    def finish(self, notes: list[str]) -> None:
        if self.output:
            notes.insert(0, f"{self.written} new record(s) appended to {self.output}"
                         + (f"; {self.duplicates} already there were not written again" if self.duplicates else ""))
        if self.sink.stdout is None:
            return
        if self.fmt == "json":
            sys.stdout.write(self.sink.stdout.json_text())
        elif self.fmt == "table":
            _print_table(self.sink.kept)


def _print_table(records: list[dict[str, Any]]) -> None:
    # lazy: rich 23 ms and up; --help imports every command module (test_startup)
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=Text("RIPE Atlas results"))
    for column in ("label", "probe", "target", "address", "verdict", "reason"):
        table.add_column(column)
    for record in records:
        if record["probe"] == "summary":
            continue
        table.add_row(*(Text(printable(record.get(c) or "")) for c in
                        ("label", "probe", "target", "address", "verdict", "reason")))
    Console(highlight=False).print(table)
