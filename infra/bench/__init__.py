"""Herald's benchmark (``make bench``): honest throughput figures from one run on this machine.

Phases, in this order: the broker ceiling on a broker of its own; then, on a fresh broker, database and
SMTP sink, the SMTP client's wire ceiling and the Celery + Redis baseline (before Herald's services
start), and with every service running, the pipeline end to end, the priority lanes, the gateway's HTTP
ceiling and the gateway under load. Results are printed as a table, written to
``var/bench/results.json`` and drawn, per second, in ``var/bench/bench.png``.
"""
