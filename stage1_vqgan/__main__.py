import sys

from stage1_vqgan.cli import main

sys.exit(main(prog="python -m stage1_vqgan"))
