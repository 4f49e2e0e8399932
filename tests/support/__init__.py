

def observed_reason(record) -> str | None:
    """What the probe itself saw, for tests of probes run from files that name no control of the
    stage: such a failure is judged `STAGE.no_control` (inconclusive) with the observation kept
    in evidence.observed_reason (netprobe/vantage.py).  Works on a Result or a decoded record."""
    reason = record["reason"] if isinstance(record, dict) else record.reason
    evidence = record["evidence"] if isinstance(record, dict) else record.evidence
    if reason and reason.endswith(".no_control"):
        return evidence["observed_reason"]
    return reason
