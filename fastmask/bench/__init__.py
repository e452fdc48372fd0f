"""The benchmark harness: cases (fastmask against its peers on the same inputs), timers, the CSV
of results and the `fastmask-bench` CLI (`python -m fastmask.bench`)."""
