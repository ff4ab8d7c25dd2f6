"""`python -m runners.jax --repository DIR --port 0 --port-file F`."""

from runners.host import main
from runners.jax.engine import JaxEngine

main(JaxEngine)
