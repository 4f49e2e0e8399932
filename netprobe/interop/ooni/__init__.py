"""OONI measurements <-> netprobe records: pure conversions, no I/O.

Import reads OONI's `telegram` (ts-020) and `web_connectivity` (ts-017)
measurements as netprobe records, one per (probe, target) per measurement and a
summary last, so that `netprobe report` draws OONI's history on the same rows, in
the same vocabulary and with the same diagnosis as netprobe's own runs.

Each record first gets the reason of what the probe observed (its failure
string, mapped by classify.ooni_reason at the stage OONI recorded it).  Then it
is judged by netprobe's one rule, which has no exception for other people's
data: `blocked` and `reset` need a control through the same path, or an answer
that shows the block by itself.  OONI's flags are anomalies, not confirmations.

- Confirmed (kept `blocked`, `evidence.confirmed_by`): a DNS answer OONI's DNS
  fingerprints name, a known blockpage anywhere in the redirect chain, or OONI's
  pipeline's own `confirmed: true` (API answers only).
- telegram: the test has no control at all - everything it contacts is
  Telegram's - so any other failure is `STAGE.no_control`.
- web_connectivity: OONI's test helper measured from elsewhere; it says whether
  the site is up, not what the probe's path does, so any other failure is
  `STAGE.unconfirmed` (`no_control` where the helper failed).
The observed reason and verdict stay in the evidence.

Export writes one netprobe run as one measurement in OONI's base data format
(df-000) with test_keys in the shape of OONI's telegram test, and netprobe's
own records under test_keys.netprobe; import reads those back unchanged.

The package, one module a job: `read` (OONI's format, hostile values read into
Ooni* values), `judge` (the shared rule), `telegram` and `web_connectivity` (one
OONI test each), `measurement` (one measurement -> records, summary last) and
`write` (a run -> OONI's format).  The names commands and tests use are here.
"""

from netprobe.interop import Skip
from netprobe.interop.ooni.measurement import records_from_measurement, run_id_of
from netprobe.interop.ooni.read import Meta, measurements_in
from netprobe.interop.ooni.write import is_record, measurement_from_run, runs_as_ooni, runs_of

__all__ = ["Meta", "Skip", "is_record", "measurement_from_run", "measurements_in", "records_from_measurement",
           "run_id_of", "runs_as_ooni", "runs_of"]
