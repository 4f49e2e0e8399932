"""`netprobe report`: history over result archives.

reading.py   archives and lines (tolerant), filters, the order records are folded in
fold.py      the pure, streaming fold: per-run observations, counters, change points
spill.py     an external sort, for records out of order and long change lists
views.py     rows from a fold: state, changes, techniques, timeline, shares, diagnoses
terminal.py  rich tables and the character timeline
html.py      the self-contained page that leads with the answer
machine.py   csv, json, jsonl
command.py   what one request needs, and writing it (the click command is netprobe.commands.report)
"""
