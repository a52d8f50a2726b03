"""`augur demo` and what it runs: real Prometheus and Alertmanager processes, a workload.

`stack` starts and stops everything; `config` holds what it runs (queries, rules, routing);
`workload` is the service whose metrics the demo scores; `receiver` prints the enriched alerts;
`procs` launches the real binaries, for the demo and for the tests and benchmarks alike.
"""
