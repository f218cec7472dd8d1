"""``python -m s4d_hf.cli ARGS`` = ``s4d-hf ARGS``."""

import sys

from s4d_hf_cli import main

sys.exit(main())
