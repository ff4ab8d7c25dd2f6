"""Fleet: `servegate up --workers N`, N gateway processes on the same HTTP and gRPC ports.

One gateway process is one Python interpreter on one core. With `--workers N` the process
that `servegate up` starts becomes the primary: it supervises the runners (as one gateway
would) and N worker processes, each a whole gateway (its own batchers, runner connections
and event loop) bound to the same ports with SO_REUSEPORT, so the kernel spreads
connections over them. The primary serves no request; it keeps the workers agreeing:

- runner states and endpoints go from the supervisor to every worker (control.py);
- a worker that finds a runner hung tells the primary, whose supervisor restarts it;
- a change asked of any worker (load, unload, routing, faults) is done by the primary,
  for every worker, before that worker answers; a worker that starts later (a restart)
  is given the same state;
- a worker that dies is started again (backoff), like a runner;
- metrics are prometheus-client's multiprocess files, summed on every scrape.

primary.py is the primary, worker.py a worker's entry point, wire.py their messages.
"""
