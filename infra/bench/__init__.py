"""Herald's benchmark (``make bench``): honest throughput figures from one run on this machine.

Phases, in this order: the broker ceiling on a broker of its own; then, on a fresh broker with
every service running, the pipeline end to end, the gateway's HTTP ceiling and the gateway under
load. Results are printed as a table and written to ``var/bench/results.json``.
"""
