import sys

from prunetune.cli import main

sys.exit(main())
