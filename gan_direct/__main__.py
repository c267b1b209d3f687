import sys

from gan_direct.cli import main

sys.exit(main(prog="python -m gan_direct"))
