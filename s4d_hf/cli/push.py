"""``s4d-hf push FOLDER --repo-id NAME [--private] [--dry-run] [--token TOKEN]``: check a checkpoint folder, then
upload it to the Hugging Face Hub (:func:`s4d_hf.hub.push.push_folder`; the checks are listed there).

Before anything is read: the ``--repo-id`` and, for an upload, a token (``--token``, else ``HF_TOKEN`` or the stored
login). A refused folder, a bad flag or the Hub's offline mode exit with code 2; a failed upload with 1. The token is
never printed: every error line is scrubbed of it.
"""

import argparse
from pathlib import Path

from s4d_hf.cli.common import CommandFailed, UsageError
from s4d_hf.hub.push import COMMIT_MESSAGE, REPO_ID, UploadFailed, push_folder, scrub


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", help="checkpoint folder (config.json, model.safetensors, processor, README.md)")
    parser.add_argument("--repo-id", required=True, help="Hub repository, e.g. 'user/s4d-fashion-mnist'")
    parser.add_argument("--private", action="store_true",
                        help="create the repository as private (an existing repository keeps its visibility)")
    parser.add_argument("--dry-run", action="store_true", help="run the checks and list the files, upload nothing")
    parser.add_argument("--token", default=None,
                        help="Hub token (default: HF_TOKEN or the stored login). Prefer HF_TOKEN: a command-line "
                             "argument is visible to other users of the machine")
    parser.add_argument("--commit-message", default=COMMIT_MESSAGE)


def run(args: argparse.Namespace) -> int:
    from huggingface_hub import get_token

    token = args.token or get_token()  # first, so that every error message can be scrubbed of it
    if not REPO_ID.fullmatch(args.repo_id):
        raise UsageError(f"--repo-id {args.repo_id!r}: expected 'namespace/name'")
    if not args.dry_run and not token:
        raise UsageError("no Hub token: pass --token, set HF_TOKEN or log in with `hf auth login` (--dry-run needs "
                         "none)")
    if not Path(args.folder).is_dir():
        raise UsageError(f"FOLDER {args.folder}: no such folder")
    try:
        result = push_folder(args.folder, args.repo_id, token=token, private=args.private, dry_run=args.dry_run,
                             commit_message=args.commit_message)
    except UploadFailed as e:
        raise CommandFailed(scrub(e, token)) from None  # from None: the chained error may quote the token
    except ValueError as e:  # CheckFailed (a refused folder), offline mode
        raise UsageError(scrub(e, token)) from None
    except Exception as e:  # noqa: BLE001 - unexpected, but never with the token or a traceback holding headers
        raise CommandFailed(f"unexpected {type(e).__name__}: {scrub(e, token)}") from None
    if args.dry_run:
        print(f"dry run: would upload {len(result.files)} file(s) to {args.repo_id}"
              f"{' (private)' if args.private else ''}:")
        for f in result.files:
            print(f"  {f}  ({(Path(args.folder) / f).stat().st_size:,} bytes)")
        return 0
    print(f"uploaded {len(result.files)} file(s) to {result.url}")
    print(f"commit: {result.commit_url}")
    return 0
