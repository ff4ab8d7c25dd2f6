"""JAX runner: a v2 gRPC server (runners.host) over `jax.export` artifacts, GPU when present."""
