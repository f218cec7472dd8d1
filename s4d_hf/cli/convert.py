"""``s4d-hf convert SRC OUT``: a state-spaces/s4 S4D checkpoint -> a verified Hugging Face folder
(:func:`s4d_hf.conversion.convert`).

Exit codes: 2 when SRC, --config or a flag cannot be converted faithfully or safely (the refusals of
:class:`~s4d_hf.conversion.ConversionError`) or OUT exists; 1 when the conversion ran but its verification failed
(``--force`` writes anyway) or writing the folder failed. Nothing is left behind on any error.
"""

import argparse

from s4d_hf.cli.common import CommandFailed, UsageError, one_line
from s4d_hf.cli.options import COUNT, NON_NEGATIVE_NUMBER
from s4d_hf.conversion import ConversionError, convert
from s4d_hf.conversion.keys import FORMATS
from s4d_hf.conversion.options import DECODER_MODES, FLAG_NAMES, TASKS
from s4d_hf.modeling.configuration_s4d import _CHOICES


def _labels(text: str) -> list[str]:
    labels = [s.strip() for s in text.split(",")]
    if not all(labels):
        raise argparse.ArgumentTypeError(f"--labels expects comma-separated class names; got {text!r}")
    return labels


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", metavar="SRC", help="checkpoint: example.py ckpt.pth, an S4Block model's state dict, "
                        "a Lightning .ckpt or its .pt state dict")
    parser.add_argument("out", metavar="OUT", help="folder to create (save_pretrained layout + README.md)")
    parser.add_argument("--format", choices=("auto", *FORMATS), default="auto",
                        help="example (example.py + s4d.py), s4block (example.py-style + s4.py S4Block), lightning "
                        "(the training framework); default: detect from the key names")
    parser.add_argument("--config", metavar="PATH", help="the framework run's .hydra/config.yaml or hparams.yaml "
                        "(needed for a lightning .pt; overrides a .ckpt's hyper_parameters)")
    group = parser.add_argument_group("options not stored in the weights (default: the config, else the reference's "
                                      "default for the format)")
    group.add_argument("--disc", choices=_CHOICES["disc"], help="discretization (S4Block default zoh)")
    group.add_argument("--dt-transform", choices=_CHOICES["dt_transform"],
                       help="dt = transform(inv_dt) (S4Block default exp; framework preset softplus)")
    group.add_argument("--real-transform", choices=_CHOICES["real_transform"],
                       help="Re A = -transform(A_real) (default exp)")
    group.add_argument("--prenorm", action=argparse.BooleanOptionalAction, default=None,
                       help="example-style models: pre-norm blocks (example.py default: post-norm)")
    group.add_argument("--final-act", choices=_CHOICES["final_act"], help="activation after output_linear, when the "
                       "weights map H -> H features (glu is read from the shapes)")
    group.add_argument("--decoder-mode", choices=tuple(DECODER_MODES), help="framework SequenceDecoder mode: mean "
                       "over the sequence, or its last position")
    group.add_argument("--l-max", type=COUNT, help="kernel length limit (framework model.layer.l_max)")
    group.add_argument("--task", choices=tuple(TASKS),
                       help="problem type of the head (framework: from task.loss)")
    group.add_argument("--num-labels", type=COUNT, help="check: number of decoder outputs")
    group.add_argument("--labels", type=_labels, help="comma-separated class names (id2label)")
    parser.add_argument("--tolerance", type=NON_NEGATIVE_NUMBER, default=1e-4,
                        help="verification tolerance, relative to max(1, max |reference|) (default 1e-4)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT")
    parser.add_argument("--force", action="store_true", help="write even if verification fails (the card says so)")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="unpickle SRC without restrictions; CAN EXECUTE CODE from the file: trusted files only")


def run(args: argparse.Namespace) -> int:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # stdout reports the conversion; stderr is kept for the one-line errors
    flags = {name: getattr(args, name) for name in FLAG_NAMES}
    try:
        convert(args.src, args.out, format=args.format, config=args.config, overwrite=args.overwrite,
                force=args.force, trust_pickle=args.trust_pickle, tolerance=args.tolerance, **flags)
    except ConversionError as e:
        failed = str(e).startswith("verification failed") or "appeared during the conversion" in str(e)
        raise (CommandFailed if failed else UsageError)(one_line(e)) from e
    except (OSError, RuntimeError) as e:  # writing OUT failed (disk full, permissions): nothing was left behind
        raise CommandFailed(f"writing {args.out} failed: {type(e).__name__}: {one_line(e)}") from e
    return 0
