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

from netprobe.commands.common import ExitCode, UserError, default_format
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


def execute_plan(plan, options) -> int:
    """Run the plan, stream records to their sinks, print the report; the exit code."""
    import asyncio
    import dataclasses
    import signal

    from rich.console import Console

    from netprobe.engine import Runner, Settings, default_deadline
    from netprobe.output import AppendFile, OutputError, StdoutWriter
    from netprobe.records import RunInfo, encode, to_json_line
    from netprobe.render import print_report

    no_color = bool(os.environ.get("NO_COLOR"))
    fmt = default_format(options["fmt"])
    quiet = options["quiet"]
    archive = None
    if options["output"]:
        try:
            archive = AppendFile(options["output"])
        except OutputError as exc:
            raise UserError(str(exc)) from None
    stdout = None if quiet else StdoutWriter(fmt)
    run = RunInfo(label=options["label"])
    total = len(plan)
    settings = Settings(timeout=options["timeout"], concurrency=options["concurrency"], rate=options["rate"],
                        ca_bundle=options["ca_bundle"])
    settings = dataclasses.replace(settings, deadline=options["deadline"]
                                   or default_deadline(total, settings, plan.stages))
    err_console = Console(stderr=True, no_color=no_color, highlight=False)
    progress = None
    if err_console.is_terminal and not quiet and not no_color:
        from rich.progress import Progress
        progress = Progress(console=err_console, transient=True)
        progress_task = progress.add_task("probing", total=total)
        progress.start()
    failure: list[str] = []

    summary: list[dict] = []

    def emit(result):
        record = encode(result, run)
        if result.probe == "summary":
            summary.append(record)
        if archive is not None and not failure:
            try:
                archive.append(to_json_line(record))
            except OutputError as exc:
                failure.append(str(exc))
                main_task.cancel()
        if stdout is not None:
            stdout.write(record)
        if progress is not None:
            progress.advance(progress_task)

    received: list[int] = []
    runner = Runner(plan, settings, emit)

    async def main():
        nonlocal main_task
        main_task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        loop.set_default_executor(daemon_executor())
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda s=sig: (received.append(s), main_task.cancel()))
        return await runner.run()

    main_task = None
    try:
        asyncio.run(main())
    except asyncio.CancelledError:
        pass
    finally:
        if progress is not None:
            progress.stop()
        if archive is not None:
            archive.close()
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
    if stdout is not None and fmt == "ooni":  # the run as one OONI measurement (netprobe.ooni)
        from netprobe.ooni import runs_as_ooni
        sys.stdout.write(runs_as_ooni(stdout.kept, options.get("probe_cc"), options.get("probe_asn")))
    if stdout is not None:
        out_console = Console(no_color=no_color, highlight=False, soft_wrap=False)
        if fmt == "table":
            print_report(out_console, stdout.kept, outcome.counts, outcome.vantage, notes, outcome.findings,
                         details=options["details"], summary=summary[0] if summary else None)
        else:
            if fmt == "json":
                sys.stdout.write(stdout.json_text())
            print_report(err_console, [], outcome.counts, outcome.vantage, notes, outcome.findings,
                         summary=summary[0] if summary else None)
    if received:
        name = signal.Signals(received[0]).name
        if archive is not None:
            kept = f"; finished results were kept in {one_line(options['output'])}"
        else:
            kept = "; finished results were shown" if stdout is not None else ""
        click.echo(f"netprobe: interrupted by {name}{kept}", err=True)
        return 128 + received[0]
    return ExitCode.OK


