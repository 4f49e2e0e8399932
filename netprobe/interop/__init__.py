"""Other tools' data as netprobe records: OONI (`ooni`) and RIPE Atlas (`atlas`, its API
client `atlas_api`, its state file `atlas_state`, and `chaincheck` for the certificates
Atlas probes report).

Each reader turns a measurement into `records.Result`s judged by `vantage`, with no
exception for imported data (peer flags are anomalies, never confirmations); hostile
input is read through `netprobe.bounded_input`.  Nothing here is imported by `netprobe
run` unless it writes `--format ooni`: the commands import these modules inside their
functions.
"""


class Skip(Exception):
    """A value (an OONI measurement, an Atlas result) that gives no records: `why` (also its
    message) is counted and shown; `unparseable` when it could not be read at all."""

    def __init__(self, why: str, unparseable: bool = False):
        super().__init__(why)
        self.why = why
        self.unparseable = unparseable
