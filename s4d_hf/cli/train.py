"""``s4d-hf train`` (also ``python -m s4d_hf.train``): fine-tune S4D on audio, images, time series or text.

    s4d-hf train --task time-series-classification --dataset data.npz --output-dir my-model --epochs 20
    accelerate launch --multi_gpu --num_processes 2 -m s4d_hf.train --backend accelerate ...   # data parallel

Every flag value is checked as it is parsed, and everything else that can be wrong with the input (task, data file,
labels, input_dim, folders) before the first training step and before any folder is created: exit code 2, one line
(see :mod:`s4d_hf.cli.common`). Ctrl-C (or SIGTERM) saves a checkpoint after the current step and exits with code
130; the same command with ``--resume`` continues from it. The result is a Hub-ready folder: see
:mod:`s4d_hf.training.output`.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import zipfile

from s4d_hf.cli.common import CommandFailed, UsageError, check_data_file, check_model_folder, one_line
from s4d_hf.cli.options import (
    COUNT,
    NON_NEGATIVE,
    NON_NEGATIVE_NUMBER,
    POSITIVE,
    KeyValues,
    add_dataset_arguments,
    integer,
    key_value,
    number,
)
from s4d_hf.hub.train_upload import TrainedUploadFailed, check_hub_target, push_trained_folder
from s4d_hf.modeling.configuration_s4d import _CHOICES
from s4d_hf.training.data.core import TASKS
from s4d_hf.training.folders import clear_for_start, remove_work_folder
from s4d_hf.training.job import any_process, no_accelerator
from s4d_hf.training.tasks import prepare_job, write_output


def _image_size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW, e.g. 28x28; got {text!r}") from None
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError(f"expected a positive HxW, e.g. 28x28; got {text!r}")
    return height, width


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_argument_group("what to train")
    what.add_argument("--task", required=True, choices=TASKS + ("self-pretraining",))
    what.add_argument("--dataset", required=True, metavar="SPEC",
                      help="a built-in dataset name, or a path: .npz (X, y[, X_test, y_test, X_val, y_val, lengths, "
                           "groups, label_names]), a folder of class sub-folders (audio/images), a .csv (one series "
                           "per row, a 'label' column), a .txt (causal-lm); or a 🤗 Datasets source (see below)")
    what.add_argument("--dataset-option", action=KeyValues, type=key_value, metavar="KEY=VALUE",
                      help="an option of a built-in dataset loader (repeatable)")
    what.add_argument("--output-dir", required=True, help="the Hub-ready folder to write at the end")
    what.add_argument("--checkpoint-dir", help="where checkpoints go (default: <output-dir>-checkpoints)")
    what.add_argument("--backend", choices=("trainer", "accelerate"), default="trainer")
    what.add_argument("--model", metavar="DIR", help="start from this saved S4D model instead of a fresh one")
    what.add_argument("--init-from", metavar="FOLDER",
                      help="a pretrained S4D backbone (own --task self-pretraining output or converted): a fresh task "
                           "model with its architecture, every matching backbone weight loaded, a new head")
    what.add_argument("--reset-head", action="store_true",
                      help="with --model: a new classifier/regression head when the labels differ")
    what.add_argument("--block-size", type=integer(2),
                      help="causal-lm: tokens (bytes) per training sequence (default 256)")
    what.add_argument("--image-size", type=_image_size, metavar="HxW",
                      help="resize images (of a folder or a 🤗 Datasets Image column) to HxW")

    spt = parser.add_argument_group("self-pretraining (--task self-pretraining; labels are ignored)")
    spt.add_argument("--data-task", choices=TASKS, help="the task whose data format --dataset is read in (default: "
                     "the built-in dataset's, causal-lm for .txt, time-series-classification for .npz/.csv)")
    spt.add_argument("--spt-objective", choices=("auto", "causal", "masked"), default="auto",
                     help="causal: predict the next input; masked: denoise masked inputs [auto: masked for "
                          "--bidirectional, else causal]")
    spt.add_argument("--spt-loss", choices=("l2", "l1"), default="l2", help="continuous inputs [l2]")
    spt.add_argument("--spt-mask-ratio", type=number(0, 1, above=True, below=True), default=0.15, help="masked: fraction of positions [0.15]")

    length = parser.add_argument_group("how long")
    length.add_argument("--max-steps", type=COUNT, help="optimizer steps (overrides --epochs)")
    length.add_argument("--epochs", type=POSITIVE, help="passes over the train split (default 10)")
    length.add_argument("--eval-steps", type=COUNT,
                        help="evaluate and checkpoint every N steps (default: at the end of each epoch)")
    length.add_argument("--patience", type=NON_NEGATIVE, default=0,
                        help="early stopping: stop after N evaluations without improvement (0: never)")
    length.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    length.add_argument("--overwrite", action="store_true",
                        help="replace the output folder/checkpoints of an earlier s4d-hf train run (never a folder "
                             "it did not create)")
    length.add_argument("--keep-checkpoints", action="store_true", help="keep the checkpoint folder at the end")

    size = parser.add_argument_group("model size (fresh models; defaults in brackets)")
    size.add_argument("--d-model", type=COUNT, help="features H [64]")
    size.add_argument("--n-layers", type=COUNT, help="S4D blocks [4]")
    size.add_argument("--d-state", type=COUNT, help="state size N [64]")
    size.add_argument("--init", choices=_CHOICES["init"], help="A initialisation [legs]")
    size.add_argument("--disc", choices=_CHOICES["disc"], help="discretisation [zoh]")
    size.add_argument("--bidirectional", action=argparse.BooleanOptionalAction, default=None,
                      help="two-sided kernel (classification only) [no]")
    size.add_argument("--prenorm", action=argparse.BooleanOptionalAction, default=None, help="pre-norm blocks [no]")
    size.add_argument("--norm", choices=_CHOICES["norm"], help="[layer]")
    size.add_argument("--dropout", type=number(0, 1, below=True), help="[0.0]; may also be changed with --model")
    size.add_argument("--pooling", choices=_CHOICES["pooling"], help="sequence pooling for classification [mean]")

    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--lr", type=NON_NEGATIVE_NUMBER, default=1e-2, help="learning rate of everything but dt, A, B [1e-2]")
    optim.add_argument("--ssm-lr", type=NON_NEGATIVE_NUMBER, default=None,
                       help="learning rate of dt, A, B (no weight decay) [1e-3, or the --model's config]")
    optim.add_argument("--weight-decay", type=NON_NEGATIVE_NUMBER, default=0.01, help="AdamW weight decay [0.01]")
    optim.add_argument("--warmup", type=NON_NEGATIVE_NUMBER, default=0.1,
                       help="linear warmup before the cosine decay: steps (>= 1) or a fraction of all steps [0.1]")
    optim.add_argument("--batch-size", type=COUNT, default=32, help="per process [32]")
    optim.add_argument("--eval-batch-size", type=COUNT, help="per process [--batch-size]")
    optim.add_argument("--grad-accum", type=COUNT, default=1, help="gradient accumulation steps [1]")
    optim.add_argument("--max-grad-norm", type=NON_NEGATIVE_NUMBER, default=1.0,
                       help="gradient clipping (0: off) [1.0]")
    optim.add_argument("--seed", type=NON_NEGATIVE, default=0, help="model init, data splits and order [0]")
    optim.add_argument("--data-seed", type=NON_NEGATIVE, default=None,
                       help="data splits and generated data only (default: --seed); fix it to compare init seeds "
                            "on the same splits")
    optim.add_argument("--mixed-precision", choices=("no", "bf16", "fp16"), default="no",
                       help="autocast for the dense layers; the SSM kernel stays float32 [no]")

    logs = parser.add_argument_group("logging")
    logs.add_argument("--logging-steps", type=COUNT, default=10, help="[10]")
    logs.add_argument("--no-progress", action="store_true", help="no progress bars")
    # tests: deliver SIGINT to ourselves after this optimizer step (exercises the Ctrl-C path deterministically)
    logs.add_argument("--interrupt-after-steps", type=COUNT, help=argparse.SUPPRESS)
    add_data_arguments(parser)


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    """The 🤗 Datasets options of ``--dataset`` (:func:`s4d_hf.cli.options.add_dataset_arguments`; recorded in
    training_args.json, so ``evaluate``/``release`` re-make the same splits) and the upload at the end of the run
    (:mod:`s4d_hf.hub.train_upload`)."""
    add_dataset_arguments(parser)
    hub = parser.add_argument_group("upload (checked before training: HF_TOKEN or the stored login)")
    hub.add_argument("--push-to-hub", action="store_true",
                     help="upload the output folder at the end, through the checks of `s4d-hf push`")
    hub.add_argument("--hub-model-id", metavar="NAME",
                     help="'namespace/name' or 'name' [<the token's user>/<output-dir name>]")
    hub.add_argument("--hub-private-repo", action="store_true", help="create the repository as private")


def _command_line(args) -> str:
    argv = getattr(args, "_argv", None)  # set by s4d_hf_cli.main: the arguments after "train"
    if argv is None:
        argv = sys.argv[sys.argv.index("train") + 1:] if "train" in sys.argv else sys.argv[1:]
    return "s4d-hf train " + " ".join(shlex.quote(str(a)) for a in argv if a != "--debug")


def check_inputs(args: argparse.Namespace) -> None:
    """The input files and model folders the flags name, before prepare_job reads them (one line each)."""
    if not getattr(args, "data_dir", None):  # with --data-dir, --dataset names a 🤗 datasets builder or file in it
        check_data_file(args.dataset, "--dataset")
    for flag, folder in (("--model", args.model), ("--init-from", args.init_from)):
        if folder is not None:
            check_model_folder(folder, flag)


def run(args: argparse.Namespace) -> int:
    """Check everything, train with the chosen backend, write the Hub-ready folder. Returns 0 (done) or 130
    (interrupted: a checkpoint was saved; rerun with --resume); bad input raises UsageError (exit code 2) before
    any folder is created."""
    from accelerate import PartialState

    if args.no_progress:
        from transformers.utils import logging

        logging.disable_progress_bar()
    state = PartialState(cpu=no_accelerator())  # joins the process group under accelerate launch / torchrun
    job = error = None
    if not state.is_main_process:  # the main process goes first (it fills any dataset cache)
        state.wait_for_everyone()
    try:
        # --push-to-hub: token, access and repository id before any data is read (main process: it uploads)
        hub = check_hub_target(args, args.output_dir) if state.is_main_process else None
        check_inputs(args)
        job = prepare_job(args, is_main=state.is_main_process, command=_command_line(args))
    except (ValueError, TypeError, KeyError, ImportError, OSError, EOFError, zipfile.BadZipFile) as e:
        error = e  # OSError: e.g. --model is not a saved model; the others: a malformed data file
    if state.is_main_process:
        state.wait_for_everyone()
    if any_process(error is not None):  # every process stops, or none does
        _finish(state)
        if error is None:
            raise UsageError("another process failed to prepare")
        if isinstance(error, UsageError):
            raise error
        text = one_line(error.args[0] if isinstance(error, KeyError) and error.args else error)
        raise UsageError(text or type(error).__name__) from error
    work = None
    if state.is_main_process:  # every process has checked the folders before the main one touches them
        work = clear_for_start(job)
    state.wait_for_everyone()

    # a documented lazy load: only the chosen backend is imported (transformers' Trainer or accelerate's loop)
    if args.backend == "trainer":
        from s4d_hf.training.trainer_backend import train
    else:
        from s4d_hf.training.accelerate_backend import train
    try:  # a run that fails puts the work folder back as it found it (see s4d_hf.training.folders.WorkFolder)
        result = train(job)
        if result.interrupted:
            if work is not None:
                work.succeeded()
                print(f"s4d-hf train: stopped after step {result.global_step}; checkpoint in {job.work_dir}. Run the "
                      "same command with --resume to continue.", file=sys.stderr)
            _finish(state)
            return 130
        if work is not None:
            out = write_output(job, result)
            work.succeeded()
    except BaseException:
        if work is not None:
            work.failed()
        raise
    if state.is_main_process:
        if not args.keep_checkpoints:
            remove_work_folder(job)  # only a folder carrying the run marker
        summary = {k: v for k, v in result.test_metrics.items() if isinstance(v, float)}
        print(f"s4d-hf train: wrote {out}; " + " ".join(f"{k}={v:.4g}" for k, v in summary.items()), flush=True)
        if hub is not None:
            try:
                pushed = push_trained_folder(hub, out)
            except TrainedUploadFailed as e:
                _finish(state)
                raise CommandFailed(str(e)) from None  # from None: the chained error may quote the token
            print(f"s4d-hf train: uploaded {len(pushed.files)} file(s) to {pushed.url}", flush=True)
    _finish(state)
    return 0


def _finish(state) -> None:
    """Leave the process group cleanly (without it, about 1 in 5 two-process runs abort at exit)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def main(argv: list[str] | None = None) -> int:
    """``s4d-hf train ARGV`` (what ``python -m s4d_hf.train`` runs): the whole CLI's error handling included."""
    from s4d_hf_cli import main as cli_main

    return cli_main(["train", *(sys.argv[1:] if argv is None else argv)])
