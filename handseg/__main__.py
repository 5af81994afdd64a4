import sys

from handseg.cli import main

sys.exit(main())
