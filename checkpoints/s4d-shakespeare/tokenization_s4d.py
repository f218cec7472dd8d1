"""The byte tokenizer of S4D language models: transformers' ``ByT5Tokenizer`` ids, without an end-of-text token
appended to every encoded text.

Ids: ``<pad>`` 0, ``</s>`` 1, ``<unk>`` 2, then UTF-8 byte b -> b + 3 (vocabulary 259 with ``extra_ids=0``). Nothing to
download or train.

Why a subclass: ``ByT5Tokenizer`` appends ``</s>`` whenever it encodes with special tokens, which is the default of
``tokenizer(text)``, of the text-generation pipeline and of most user code. For a language model a prompt that ends
in end-of-text asks for the start of a new document, so ``generate()`` on ``tokenizer(prompt)`` and the pipeline
continued a different text than the prompt. ``S4DByteTokenizer`` appends ``</s>`` only when ``add_eos=True``
(saved in ``tokenizer_config.json``), so every caller gets the same ids for a prompt: one byte id per byte.
Training data that wants document boundaries adds the ``eos_token_id`` itself.

This module imports nothing from s4d_hf: saved next to a model, it loads as remote code (``trust_remote_code=True``).
"""

from transformers import ByT5Tokenizer


class S4DByteTokenizer(ByT5Tokenizer):
    r"""
    ``ByT5Tokenizer(extra_ids=0)`` whose encodings carry no special tokens unless ``add_eos=True``.

    Args:
        add_eos (`bool`, defaults to False): append ``</s>`` to each encoded sequence (ByT5's behaviour).
        extra_ids (`int`, defaults to 0): sentinel tokens after the 256 bytes (ByT5 pretraining uses 125).
        Other arguments as ``ByT5Tokenizer``.

    ```python
    >>> tokenizer = S4DByteTokenizer()
    >>> tokenizer("To be")["input_ids"]
    [87, 114, 35, 101, 104]
    ```
    """

    def __init__(self, add_eos: bool = False, extra_ids: int = 0, **kwargs):
        self.add_eos = add_eos
        super().__init__(extra_ids=extra_ids, add_eos=add_eos, **kwargs)

    def build_inputs_with_special_tokens(self, token_ids_0: list[int], token_ids_1: list[int] | None = None) -> list[int]:
        if self.add_eos:
            return super().build_inputs_with_special_tokens(token_ids_0, token_ids_1)
        return token_ids_0 if token_ids_1 is None else token_ids_0 + token_ids_1

    def get_special_tokens_mask(self, token_ids_0, token_ids_1=None, already_has_special_tokens: bool = False):
        if self.add_eos or already_has_special_tokens:
            return super().get_special_tokens_mask(token_ids_0, token_ids_1, already_has_special_tokens)
        return [0] * (len(token_ids_0) + (len(token_ids_1) if token_ids_1 is not None else 0))

    def create_token_type_ids_from_sequences(self, token_ids_0, token_ids_1=None) -> list[int]:
        return [0] * len(self.build_inputs_with_special_tokens(token_ids_0, token_ids_1))


__all__ = ["S4DByteTokenizer"]
