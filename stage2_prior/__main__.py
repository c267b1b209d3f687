import sys

from stage2_prior.cli import main

sys.exit(main(prog="python -m stage2_prior"))
