"""``s4d-hf train --push-to-hub [--hub-model-id NAME] [--hub-private-repo]``: upload the
finished output folder through :func:`s4d_hf.hub.push.push_folder`, the checked path of ``s4d-hf push``.

Everything the upload needs is checked BEFORE training (:func:`check_hub_target`), so a run does not train for an
hour and then fail: uploads allowed (not ``HF_HUB_OFFLINE``), a token (``HF_TOKEN`` or the stored login; there is no
token flag: the command line is recorded in the card and training_args.json) that the Hub accepts (``whoami``) and that may write, and the repository id (default
``<the token's user>/<output folder name>``, as transformers' Trainer names it). After training,
:func:`push_trained_folder` runs the folder checks and uploads; a failed upload leaves the folder in place and says
how to retry with ``s4d-hf push``. No message ever shows the token (:func:`s4d_hf.hub.push.scrub`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from .push import REPO_ID, PushResult, push_folder, scrub

@dataclasses.dataclass
class HubTarget:
    """Where a run's folder goes: the checked repository id, the token (never printed) and the visibility."""

    repo_id: str
    token: str = dataclasses.field(repr=False)
    private: bool = False

    def push_command(self, folder) -> str:
        return f"s4d-hf push {folder} --repo-id {self.repo_id}" + (" --private" if self.private else "")


def check_hub_target(args, output_dir) -> HubTarget | None:
    """The upload target of a run (None without ``--push-to-hub``), checked before training; ValueError (one line,
    scrubbed of the token) when the upload could not succeed.

    args: the parsed train arguments (``push_to_hub``, ``hub_model_id``, ``hub_private_repo``).
    """
    get = lambda key: getattr(args, key, None)  # noqa: E731
    if not get("push_to_hub"):
        given = [f"--{k.replace('_', '-')}" for k in ("hub_model_id", "hub_private_repo") if get(k)]
        if given:
            raise ValueError(f"{', '.join(given)} without --push-to-hub: add --push-to-hub to upload the result")
        return None
    from huggingface_hub import HfApi, constants, get_token

    token = get_token()
    repo_id = get("hub_model_id")
    if repo_id is not None and "/" in repo_id and not REPO_ID.fullmatch(repo_id):
        raise ValueError(f"--hub-model-id {repo_id!r}: expected 'name' or 'namespace/name'")
    if constants.is_offline_mode():
        raise ValueError("--push-to-hub: HF_HUB_OFFLINE is set: unset it (or set it to 0) to upload, or drop "
                         "--push-to-hub and run `s4d-hf push` later")
    if not token:
        raise ValueError("--push-to-hub: no Hub token: set HF_TOKEN or log in with `hf auth login`")
    try:
        me = HfApi(token=token).whoami()
    except Exception as e:  # noqa: BLE001 - 401, network: one line, never the token
        raise ValueError(f"--push-to-hub: the Hub does not accept the token ({type(e).__name__}: "
                         f"{scrub(e, token)})") from None
    role = ((me.get("auth") or {}).get("accessToken") or {}).get("role")
    if role == "read":
        raise ValueError("--push-to-hub: the token is read-only; use a token with write access")
    if repo_id is None or "/" not in repo_id:
        user = me.get("name")
        if not user:
            raise ValueError("--push-to-hub: the Hub did not name the token's user; pass --hub-model-id "
                             "namespace/name")
        repo_id = f"{user}/{repo_id or Path(output_dir).name}"
    if not REPO_ID.fullmatch(repo_id):
        raise ValueError(f"--hub-model-id {repo_id!r}: expected 'namespace/name' (letters, digits, '-', '_', '.')")
    return HubTarget(repo_id, token, bool(get("hub_private_repo")))


class TrainedUploadFailed(RuntimeError):
    """The run succeeded and its folder is written, but the upload failed (the message says how to retry)."""


def push_trained_folder(target: HubTarget, folder, report=print) -> PushResult:
    """Check and upload a finished run's ``folder`` to ``target`` (:func:`~s4d_hf.hub.push.push_folder`).
    Raises :class:`TrainedUploadFailed` (scrubbed of the token) naming the ``s4d-hf push`` command to retry with."""
    try:
        return push_folder(folder, target.repo_id, token=target.token, private=target.private, report=report)
    except Exception as e:  # noqa: BLE001 - CheckFailed, UploadFailed, offline: the folder stays; say how to retry
        raise TrainedUploadFailed(f"trained and wrote {folder}, but the upload to {target.repo_id} failed: "
                                  f"{scrub(e, target.token)}; retry with `{target.push_command(folder)}`") from None
