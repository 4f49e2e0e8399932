"""One run's lifecycle: output files, settings, signals, the engine, the report.

A command parses its options and hands the plan over here; this module opens
the sinks, runs the engine under the run's deadline and the user's signals, and
prints what the run found.  Results reach --output as they are measured, so an
interrupted run keeps them.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sys
import threading

import click

from netprobe.commands.common import ExitCode, UserError
from netprobe.engine import Runner, Settings, default_deadline, drive, on_sweep_loop
from netprobe.output import FLUSH_INTERVAL_S, OutputError, RecordSink, default_format
from netprobe.records import RunInfo, encode
from netprobe.report_lines import closing_lines
from netprobe.text import one_line

# The signals that interrupt a run, and the exit code each ends it with.
SIGNAL_EXITS = {signal.SIGINT: ExitCode.SIGINT, signal.SIGTERM: ExitCode.SIGTERM}


def daemon_executor():
    """The event loop's executor for blocking calls (the DNS-over-HTTPS exchange): one daemon
    thread per call.  A call the probe's deadline abandoned (a resolver that drips its answer)
    then neither delays later calls, as a small pool would, nor holds the process past the
    run deadline, as asyncio.run's executor shutdown and the interpreter's exit would."""
    # lazy: concurrent.futures 4 ms; only DNS-over-HTTPS runs need it; TCP-only sweep (test_startup)
    import concurrent.futures

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
    return PlanRun(plan, options).execute()


class PlanRun:
    """One run of a plan, in named steps: open the outputs, start the progress bar, drive
    the engine, close the outputs, finish (the report and the exit code).

    Whatever ends the run early (a signal, an output that fails) goes through `interrupt`,
    which stops the engine's loop; the run keeps every record measured until then, and the
    outputs are closed whatever happens.
    """

    def __init__(self, plan, options) -> None:
        self.plan, self.options = plan, options
        self.fmt = default_format(options["fmt"])
        self.quiet = options["quiet"]
        self.sink: RecordSink | None = None
        self.info: RunInfo | None = None
        self.err_console = None  # rich's console on stderr, where it shows something
        self.progress = self.progress_task = None
        self.summary: dict | None = None  # the run's last record (Runner.finish)
        self.loop = self.stop_loop = None  # set by the engine before the first probe
        self.flush_timer = None
        # What interrupted the run (the first of each only): a signal, an output's failure.
        self.signum: int | None = None
        self.failure: str | None = None
        self.runner = Runner(plan, self.settings(), self.emit)

    def settings(self) -> Settings:
        """The engine's settings; the run deadline by default enough for every probe to time out."""
        options = self.options
        settings = Settings(timeout=options["timeout"], concurrency=options["concurrency"], rate=options["rate"],
                            ca_bundle=options["ca_bundle"])
        return dataclasses.replace(settings, deadline=options["deadline"]
                                   or default_deadline(len(self.plan), settings, self.plan.stages))

    def execute(self) -> int:
        self.open_outputs()
        self.start_progress()
        try:
            self.drive()
        finally:
            self.close()
        if self.failure is not None:
            raise UserError(self.failure)
        return self.finish()

    # --- the steps ---------------------------------------------------------------------

    def open_outputs(self) -> None:
        """The record sink (a user error if --output cannot be opened), and stderr's console."""
        try:
            self.sink = RecordSink(self.fmt, self.options["output"], self.quiet, flush_interval=FLUSH_INTERVAL_S)
        except OutputError as exc:
            raise UserError(str(exc)) from None
        self.info = RunInfo(label=self.options["label"])
        # rich (a quarter of a small sweep's start-up) only where it shows something: the table, and
        # a terminal's stderr (colours, the progress bar); elsewhere the closing report is plain lines.
        if self.fmt == "table" or _rich_stderr():
            # lazy: rich 23 ms; TCP-only sweep (test_startup)
            from rich.console import Console
            self.err_console = Console(stderr=True, highlight=False)

    def start_progress(self) -> None:
        console = self.err_console
        if console is not None and console.is_terminal and not self.quiet and not console.no_color:
            # lazy: rich.progress 38 ms; TCP-only sweep (test_startup)
            from rich.progress import Progress
            self.progress = Progress(console=console, transient=True)
            self.progress_task = self.progress.add_task("probing", total=len(self.plan))
            self.progress.start()

    def drive(self) -> None:
        """The engine on its loop; SIGINT and SIGTERM stop it (the engine's handlers), and so
        does an output that fails (`interrupt`)."""
        drive(self.runner, on_sweep_loop(self.plan), signals=tuple(SIGNAL_EXITS), on_signal=self.signalled,
              on_start=self.started, make_executor=daemon_executor)

    def close(self) -> None:
        """The progress bar and the outputs, whatever ended the run: what was written stays."""
        if self.progress is not None:
            self.progress.stop()
        try:
            self.sink.close()
        except OutputError as exc:
            self.failed(exc)

    def finish(self) -> int:
        """The closing report; the exit code (a signal's when one interrupted the run)."""
        outcome = self.runner.outcome
        if not outcome.interrupted:
            self.signum = None  # a signal after the run had finished interrupted nothing
        notes = []
        if outcome.concurrency_note:
            notes.append(outcome.concurrency_note)
            click.echo(f"netprobe: {outcome.concurrency_note}", err=True)
        if self.signum is not None:
            notes.append(f"interrupted: only the probes that finished are shown ({outcome.not_started} not started)")
        elif outcome.cut_by_deadline or outcome.not_started:
            notes.append(f"run deadline reached: {outcome.cut_by_deadline} probes cut short, "
                         f"{outcome.not_started} not started")
        self.report(notes)
        if self.signum is None:
            return ExitCode.OK
        if self.options["output"]:
            kept = f"; finished results were kept in {one_line(self.options['output'])}"
        else:
            kept = "; finished results were shown" if self.sink.stdout is not None else ""
        click.echo(f"netprobe: interrupted by {signal.Signals(self.signum).name}{kept}", err=True)
        return SIGNAL_EXITS[self.signum]

    def report(self, notes: list[str]) -> None:
        """What the run found: on stdout as the format says, the closing lines on stderr."""
        stdout, fmt, outcome, summary = self.sink.stdout, self.fmt, self.runner.outcome, self.summary
        if stdout is None:
            return
        if fmt == "ooni":  # the run as one OONI measurement (netprobe.interop.ooni)
            # lazy: interop.ooni 52 ms; TCP-only sweep (test_startup)
            from netprobe.interop.ooni import runs_as_ooni
            sys.stdout.write(runs_as_ooni(stdout.kept, self.options.get("probe_cc"), self.options.get("probe_asn")))
        if fmt == "table":
            # lazy: rich 23 ms, render 65 ms; TCP-only sweep (test_startup)
            from rich.console import Console

            from netprobe.render import print_report
            out_console = Console(highlight=False, soft_wrap=False)
            print_report(out_console, stdout.kept, outcome.counts, outcome.vantage, notes, outcome.findings,
                         details=self.options["details"], summary=summary)
            return
        if fmt == "json":
            sys.stdout.write(stdout.json_text())
        if self.err_console is not None:
            # lazy: render 65 ms; TCP-only sweep (test_startup)
            from netprobe.render import print_report
            print_report(self.err_console, [], outcome.counts, outcome.vantage, notes, outcome.findings,
                         summary=summary)
        else:
            sys.stderr.write("".join(line + "\n" for line in closing_lines(
                outcome.counts, outcome.vantage, notes, outcome.findings, summary)))

    # --- what the engine calls -------------------------------------------------------------

    def started(self, loop, stop) -> None:
        """The engine's loop, and what stops it, before the first probe."""
        self.loop, self.stop_loop = loop, stop

    def emit(self, result) -> None:
        """One record to the sink (and the progress bar) the moment it exists."""
        record = encode(result, self.info)
        if result.probe == "summary" and self.summary is None:
            self.summary = record
        try:
            self.sink.write(record)
        except OutputError as exc:
            self.interrupt(failure=exc)
        if self.progress is not None:
            self.progress.advance(self.progress_task)
        if self.flush_timer is None and self.sink.pending:
            # Batched lines wait at most FLUSH_INTERVAL_S, also when no further record comes.
            self.flush_timer = self.loop.call_later(FLUSH_INTERVAL_S, self.flush)

    def flush(self) -> None:
        self.flush_timer = None
        try:
            self.sink.flush()
        except OutputError as exc:
            self.interrupt(failure=exc)

    def signalled(self, signum: int) -> None:
        """A signal (the engine stops its loop itself): noted, the first one decides the exit."""
        if self.signum is None:
            self.signum = signum

    # --- ending early ---------------------------------------------------------------------

    def failed(self, exc: OutputError) -> None:
        if self.failure is None:
            self.failure = str(exc)

    def interrupt(self, failure: OutputError) -> None:
        """An output failed during the run: noted, and the run stops (what it wrote stays)."""
        self.failed(failure)
        self.stop_loop()
