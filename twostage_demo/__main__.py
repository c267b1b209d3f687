import sys

from twostage_demo.demo import main

sys.exit(main(prog="python -m twostage_demo"))
