"""`python -m handseg.ray ...`: the same as `handseg ray ...` (`handseg.cli.ray`)."""

import sys

from handseg.cli import main

if __name__ == "__main__":
    sys.exit(main(["ray", *sys.argv[1:]]))
