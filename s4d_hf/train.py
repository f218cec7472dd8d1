"""``python -m s4d_hf.train ARGS`` = ``s4d-hf train ARGS`` (accelerate launch and torchrun run a module: see the
README). The command is :mod:`s4d_hf.cli.train`."""

import sys

from s4d_hf.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
