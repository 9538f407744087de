"""The load-generator process of `workload=serve`: started by the worker (the server), one
per serve.generators, each sending its share of the seeded arrival schedule over its end
of a socket pair (runners/serving/wire.py) and recording every request's timestamps.
Standard library only: it must start fast and never compete with the model for a core
longer than it has to."""
