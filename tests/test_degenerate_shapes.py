"""Empty sequences (L = 0), empty batches and empty prompts raise a ValueError naming the argument and its shape;
nothing loops on a degenerate size (issue 13, shapes). Each case runs under an alarm, so a hang fails in seconds."""


import pytest
import torch

from s4d_hf import S4DConfig, S4DForCausalLM, S4DForSequenceClassification, S4DModel
from s4d_hf.modeling.ssm_kernels_s4d import fast_fft_length
from s4d_hf.modeling.ssm_s4d import S4DLayer

TINY = dict(d_model=8, n_layers=1, d_state=4)


pytestmark = pytest.mark.usefixtures("fail_if_it_hangs")  # conftest.py: a hang fails after 60 s


def continuous(head=S4DModel, **extra):
    return head(S4DConfig(input_dim=1, num_labels=2, **TINY, **extra)).eval()


def tokens(head=S4DModel, **extra):
    return head(S4DConfig(vocab_size=20, pad_token_id=0, eos_token_id=1, num_labels=2, **TINY, **extra)).eval()


@pytest.mark.parametrize("head", [S4DModel, S4DForSequenceClassification])
@pytest.mark.parametrize("shape, what", [((2, 0, 1), "length 0"), ((0, 5, 1), "batch size 0"), ((2, 0), "length 0"),
                                         ((0, 0, 1), "batch size 0")])
def test_empty_input_values(head, shape, what):
    with pytest.raises(ValueError, match=rf"input_values has shape \({', '.join(map(str, shape))},?\).*{what}"):
        continuous(head)(input_values=torch.zeros(shape))


@pytest.mark.parametrize("head", [S4DModel, S4DForSequenceClassification, S4DForCausalLM])
@pytest.mark.parametrize("shape, what", [((2, 0), "length 0"), ((0, 5), "batch size 0")])
def test_empty_input_ids(head, shape, what):
    with pytest.raises(ValueError, match=rf"input_ids has shape \({shape[0]}, {shape[1]}\).*{what}"):
        tokens(head)(input_ids=torch.zeros(shape, dtype=torch.long))


def test_empty_pixel_values_and_inputs_embeds():
    with pytest.raises(ValueError, match=r"pixel_values has shape \(2, 1, 0, 4\).*length 0"):
        continuous(S4DForSequenceClassification)(pixel_values=torch.zeros(2, 1, 0, 4))
    with pytest.raises(ValueError, match=r"inputs_embeds has shape \(2, 0, 8\).*length 0"):
        continuous()(inputs_embeds=torch.zeros(2, 0, 8))


def test_bidirectional_and_training_mode_too():
    model = continuous(S4DForSequenceClassification, bidirectional=True).train()
    with pytest.raises(ValueError, match=r"input_values has shape \(2, 0, 1\)"):
        model(input_values=torch.zeros(2, 0, 1), labels=torch.tensor([0, 1]))


def test_generate_on_an_empty_prompt_raises():
    model = tokens(S4DForCausalLM)
    assert model.config.bos_token_id is None
    with pytest.raises(ValueError, match=r"input_ids has shape \(1, 0\).*length 0"):
        model.generate(input_ids=torch.zeros(1, 0, dtype=torch.long), max_new_tokens=3, do_sample=False)
    with pytest.raises(ValueError, match=r"input_ids has shape \(1, 0\)"):
        model.generate(input_ids=torch.zeros(1, 0, dtype=torch.long), attention_mask=torch.zeros(1, 0, dtype=torch.long),
                       max_new_tokens=3, do_sample=False)


def test_generate_without_a_prompt_starts_from_bos_when_there_is_one():
    """transformers builds a BOS-only prompt when no input_ids are given and bos_token_id is set; an explicitly empty
    prompt is still refused."""
    model = tokens(S4DForCausalLM, bos_token_id=2)
    out = model.generate(max_new_tokens=3, do_sample=False)
    assert out.shape == (1, 4) and out[0, 0] == 2
    with pytest.raises(ValueError, match=r"input_ids has shape \(1, 0\)"):
        model.generate(input_ids=torch.zeros(1, 0, dtype=torch.long), max_new_tokens=3, do_sample=False)


def test_layer_and_kernel_refuse_length_0():
    layer = S4DLayer(8, d_state=4)
    with pytest.raises(ValueError, match=r"hidden_states .*got \(2, 0, 8\)"):
        layer(torch.zeros(2, 0, 8))
    with pytest.raises(ValueError, match=r"hidden_states .*got \(0, 5, 8\)"):
        layer(torch.zeros(0, 5, 8))
    with pytest.raises(ValueError, match="L=0"):
        layer.kernel.kernel(0)
    with pytest.raises(ValueError, match="got 0"):
        fast_fft_length(0)
    assert fast_fft_length(1) == 1 and fast_fft_length(7) == 8 and fast_fft_length(11) == 12


def test_length_1_still_works():
    assert continuous(S4DForSequenceClassification)(input_values=torch.zeros(1, 1, 1)).logits.shape == (1, 2)
    assert tokens(S4DForCausalLM)(input_ids=torch.ones(1, 1, dtype=torch.long)).logits.shape == (1, 1, 20)
