"""OONI measurements <-> netprobe records (see judge.py); this package keeps
`netprobe.interop.ooni` importable with the names commands and tests use."""

from netprobe.interop.ooni.judge import (  # noqa: F401 (re-exported)
    Meta, Skip, is_record, measurement_from_run, measurements_in, records_from_measurement, run_id_of, runs_as_ooni,
    runs_of,
)
