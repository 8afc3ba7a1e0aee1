"""``python -m prunetune.benchmark SPEC.json RESULT.json``: one benchmark run (see :mod:`.worker`)."""

import sys

from prunetune.benchmark.worker import main

sys.exit(main())
