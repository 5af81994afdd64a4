"""Training and evaluation for handseg models; they call the handseg package, never the reverse."""

import os
from pathlib import Path

#: Where the repository's commands, tests and benchmarks read data unless told otherwise: $HANDSEG_DATA,
#: else ../shared/data beside the checkout.
DEFAULT_DATA = Path(os.environ.get("HANDSEG_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
