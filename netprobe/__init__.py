"""netprobe: evidence of whether, and how, a service is blocked from this network."""

__version__ = "0.1.0"
