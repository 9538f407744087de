"""What the server (the worker) and the load generator (runners/loadgen/) share, standard
library only: the wire format and the clock (wire.py), the arrival schedule (schedule.py)
and the latency, SLO and goodput arithmetic over per-request timestamps (slo.py)."""
