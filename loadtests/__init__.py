"""Load tests and benchmarks: Locust users, the comparison report, sequential latency probes."""
