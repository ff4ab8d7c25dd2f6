"""Router: decides which variant of a model serves a request, and runs that decision.

selection.py   pins (parameter, header, `model@variant` alias) and the default
config.py      model.yaml's routing / circuit / faults models (imported by gateway.config)
plan.py        Plan, Policy, Send: what a policy returns and how the engine calls a variant
policies/      one module per policy; make_policy(config, rng)
stats.py       per-variant EWMA, latency window, outstanding calls, recent errors
circuit.py     per-variant circuit breakers
engine.py      Router: route(request, deadline, pin=, key=) -> Routed
hedging.py     the hedge race and its budget
shadows.py     mirror copies off the critical path; parity.py compares their answers
metrics.py     RouterMetrics hooks and their Prometheus collectors
faults.py      fault injection (delay / abort per variant)

This file imports nothing: gateway.config imports gateway.router.config, which imports no
gateway module, so importing the package never pulls the engine into the config layer.
"""
