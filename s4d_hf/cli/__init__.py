"""The ``s4d-hf`` commands: one module per command, each ``add_arguments(parser)`` (argparse) plus ``run(args)``
(one library call). ``python -m s4d_hf.cli`` runs the whole CLI.

    info          versions and registered classes           train         s4d_hf.training (prepare, train, write)
    evaluate      s4d_hf.hub.evaluation.evaluate_folder     release       s4d_hf.hub.release.release
    push          s4d_hf.hub.push.push_folder               convert       s4d_hf.conversion.convert
    remote-code   s4d_hf.hub.remote_code.make_portable       baseline      s4d_hf.training.transformer_baseline

:mod:`.common` holds the exit-code convention (0 done, 1 failed while running, 2 usage error) and the input checks
several commands share; :mod:`.options` the argument types. The entry point and the command table are the
top-level module ``s4d_hf_cli`` (outside the package, so that ``s4d-hf --help`` does not import torch).
"""

from s4d_hf_cli import COMMANDS, build_parser, main

__all__ = ["COMMANDS", "build_parser", "main"]
