"""One run's lifecycle: output files, settings, signals, the engine, the report.

A command parses its options and hands the plan over here; this module opens
the sinks, runs the engine under the run's deadline and the user's signals, and
prints what the run found.  Results reach --output as they are measured, so an
interrupted run keeps them.
"""

from __future__ import annotations

import os
import sys

import click

from netprobe.commands.common import ExitCode, UserError
from netprobe.text import one_line


def daemon_executor():
    """The event loop's executor for blocking calls (the DNS-over-HTTPS exchange): one daemon
    thread per call.  A call the probe's deadline abandoned (a resolver that drips its answer)
    then neither delays later calls, as a small pool would, nor holds the process past the
    run deadline, as asyncio.run's executor shutdown and the interpreter's exit would."""
    import concurrent.futures
    import threading

    class DaemonThreads(concurrent.futures.ThreadPoolExecutor):
        def submit(self, fn, /, *args, **kwargs):
            future = concurrent.futures.Future()

            def work():
                if not future.set_running_or_notify_cancel():
                    return
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:
                    future.set_exception(exc)
                else:
                    future.set_result(result)

            threading.Thread(target=work, name="netprobe-io", daemon=True).start()
            return future

        def shutdown(self, wait=True, *, cancel_futures=False):
            pass  # nothing to wait for: abandoned calls end with the process

    return DaemonThreads(max_workers=1)


def _rich_stderr() -> bool:
    """Whether rich would treat stderr as a terminal (colours, the progress bar)."""
    if os.environ.get("FORCE_COLOR") or os.environ.get("TTY_COMPATIBLE") == "1":
        return True
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def execute_plan(plan, options) -> int:
    """Run the plan, stream records to their sinks, print the report; the exit code."""
    import dataclasses
    import signal

    from netprobe.engine import Runner, Settings, default_deadline, drive, on_sweep_loop
    from netprobe.output import FLUSH_INTERVAL_S, OutputError, RecordSink, default_format
    from netprobe.records import RunInfo, encode

    fmt = default_format(options["fmt"])
    quiet = options["quiet"]
    try:
        sink = RecordSink(fmt, options["output"], quiet, flush_interval=FLUSH_INTERVAL_S)
    except OutputError as exc:
        raise UserError(str(exc)) from None
    run = RunInfo(label=options["label"])
    total = len(plan)
    settings = Settings(timeout=options["timeout"], concurrency=options["concurrency"], rate=options["rate"],
                        ca_bundle=options["ca_bundle"])
    settings = dataclasses.replace(settings, deadline=options["deadline"]
                                   or default_deadline(total, settings, plan.stages))
    # rich (a quarter of a small sweep's start-up) only where it shows something: the table, and
    # a terminal's stderr (colours, the progress bar); elsewhere the closing report is plain lines.
    err_console = None
    if fmt == "table" or _rich_stderr():
        from rich.console import Console
        err_console = Console(stderr=True, highlight=False)
    progress = None
    if err_console is not None and err_console.is_terminal and not quiet and not err_console.no_color:
        from rich.progress import Progress
        progress = Progress(console=err_console, transient=True)
        progress_task = progress.add_task("probing", total=total)
        progress.start()
    failure: list[str] = []

    summary: list[dict] = []

    flush_timer = None

    def emit(result):
        nonlocal flush_timer
        record = encode(result, run)
        if result.probe == "summary":
            summary.append(record)
        try:
            sink.write(record)
        except OutputError as exc:
            failed(exc)
        if progress is not None:
            progress.advance(progress_task)
        if flush_timer is None and sink.pending:
            # Batched lines wait at most FLUSH_INTERVAL_S, also when no further record comes.
            flush_timer = loop.call_later(FLUSH_INTERVAL_S, flush)

    def flush():
        nonlocal flush_timer
        flush_timer = None
        try:
            sink.flush()
        except OutputError as exc:
            failed(exc)

    def failed(exc):
        failure.append(str(exc))
        stop_run()

    received: list[int] = []
    runner = Runner(plan, settings, emit)
    loop = stop_run = None

    def started(run_loop, stop):
        nonlocal loop, stop_run
        loop, stop_run = run_loop, stop

    try:
        drive(runner, on_sweep_loop(plan), signals=(signal.SIGINT, signal.SIGTERM), on_signal=received.append,
              on_start=started, make_executor=daemon_executor)
    finally:
        if progress is not None:
            progress.stop()
        try:
            sink.close()
        except OutputError as exc:
            failure.append(str(exc))
    if failure:
        raise UserError(failure[0])
    outcome = runner.outcome
    if not outcome.interrupted:
        received.clear()  # a signal after the run had finished interrupted nothing
    notes = []
    if outcome.concurrency_note:
        notes.append(outcome.concurrency_note)
        click.echo(f"netprobe: {outcome.concurrency_note}", err=True)
    if received:
        notes.append(f"interrupted: only the probes that finished are shown ({outcome.not_started} not started)")
    elif outcome.cut_by_deadline or outcome.not_started:
        notes.append(f"run deadline reached: {outcome.cut_by_deadline} probes cut short, "
                     f"{outcome.not_started} not started")
    stdout = sink.stdout
    if stdout is not None and fmt == "ooni":  # the run as one OONI measurement (netprobe.interop.ooni)
        from netprobe.interop.ooni import runs_as_ooni
        sys.stdout.write(runs_as_ooni(stdout.kept, options.get("probe_cc"), options.get("probe_asn")))
    if stdout is not None:
        if fmt == "table":
            from rich.console import Console

            from netprobe.render import print_report
            out_console = Console(highlight=False, soft_wrap=False)
            print_report(out_console, stdout.kept, outcome.counts, outcome.vantage, notes, outcome.findings,
                         details=options["details"], summary=summary[0] if summary else None)
        else:
            if fmt == "json":
                sys.stdout.write(stdout.json_text())
            if err_console is not None:
                from netprobe.render import print_report
                print_report(err_console, [], outcome.counts, outcome.vantage, notes, outcome.findings,
                             summary=summary[0] if summary else None)
            else:
                from netprobe.report_lines import closing_lines
                sys.stderr.write("".join(line + "\n" for line in closing_lines(
                    outcome.counts, outcome.vantage, notes, outcome.findings, summary[0] if summary else None)))
    if received:
        name = signal.Signals(received[0]).name
        if options["output"]:
            kept = f"; finished results were kept in {one_line(options['output'])}"
        else:
            kept = "; finished results were shown" if stdout is not None else ""
        click.echo(f"netprobe: interrupted by {name}{kept}", err=True)
        return 128 + received[0]
    return ExitCode.OK


