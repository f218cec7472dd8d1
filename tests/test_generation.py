"""generate() through the recurrent state gives what running the whole sequence through forward() gives."""

import pytest
import torch
from transformers import DynamicCache

from s4d_hf import S4DConfig, S4DForCausalLM


@pytest.fixture(scope="module")
def lm() -> S4DForCausalLM:
    torch.manual_seed(0)
    config = S4DConfig(vocab_size=40, d_model=16, n_layers=2, d_state=8, init="lin", prenorm=True, channels=2)
    model = S4DForCausalLM(config).eval()
    with torch.no_grad():  # sharper next-token distributions, so that greedy/beam choices are not ties
        model.lm_head.weight.mul_(8)
    return model


def full_forward_greedy(model, prompt, new_tokens):
    seq = prompt
    for _ in range(new_tokens):
        with torch.no_grad():
            nxt = model(seq, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
        seq = torch.cat([seq, nxt], 1)
    return seq


def test_greedy_equals_full_forward_argmax(lm):
    prompt = torch.randint(0, 40, (3, 7))
    out = lm.generate(prompt, max_new_tokens=12, do_sample=False)
    assert torch.equal(out, full_forward_greedy(lm, prompt, 12))


def test_sampling_and_beam_search_equal_the_no_cache_path(lm):
    """The no-cache path recomputes the whole sequence by convolution at every step."""
    prompt = torch.randint(0, 40, (2, 5))
    torch.manual_seed(3)
    cached = lm.generate(prompt, max_new_tokens=10, do_sample=True, top_k=0, temperature=1.5)
    torch.manual_seed(3)
    recomputed = lm.generate(prompt, max_new_tokens=10, do_sample=True, top_k=0, temperature=1.5, use_cache=False)
    assert torch.equal(cached, recomputed)
    beams = lm.generate(prompt, max_new_tokens=8, num_beams=3, num_return_sequences=2, do_sample=False,
                        output_scores=True, return_dict_in_generate=True)
    beams_nc = lm.generate(prompt, max_new_tokens=8, num_beams=3, num_return_sequences=2, do_sample=False,
                           use_cache=False, output_scores=True, return_dict_in_generate=True)
    assert torch.equal(beams.sequences, beams_nc.sequences)
    assert torch.allclose(beams.sequences_scores, beams_nc.sequences_scores, atol=1e-5)


def test_prefix_with_cache_plus_one_step_equals_full_forward(lm):
    x = torch.randint(0, 40, (2, 33))
    with torch.no_grad():
        full = lm(x).logits
        prefix = lm(x[:, :-1], use_cache=True)
        assert isinstance(prefix.cache, DynamicCache)
        step = lm(x[:, -1:], cache=prefix.cache, attention_mask=torch.ones(2, 33)).logits
    assert (prefix.logits - full[:, :-1]).abs().max() < 1e-5
    assert (step[:, 0] - full[:, -1]).abs().max() < 1e-5


def test_state_after_prefill_is_the_recurrent_state(lm):
    """Prefill (FFT + state forwarding) leaves exactly the state that token-by-token stepping reaches."""
    x = torch.randint(0, 40, (2, 20))
    with torch.no_grad():
        by_conv = lm(x, use_cache=True).cache
        by_step = lm(x[:, :1], use_cache=True).cache
        for t in range(1, 20):
            lm(x[:, t : t + 1], cache=by_step, attention_mask=torch.ones(2, t + 1))
    for i in range(2):
        a, b = by_conv.get_recurrent_state(i), by_step.get_recurrent_state(i)
        assert (a - b).abs().max() < 1e-5


def test_left_padded_batch_generates_as_each_row_alone(lm):
    short, long = torch.randint(3, 40, (1, 5)), torch.randint(3, 40, (1, 9))
    batch = torch.cat([torch.cat([torch.zeros(1, 4, dtype=torch.long), short], 1), long])
    mask = torch.tensor([[0] * 4 + [1] * 5, [1] * 9])
    out = lm.generate(batch, attention_mask=mask, max_new_tokens=8, do_sample=False, pad_token_id=0)
    assert torch.equal(out[0, 9:], lm.generate(short, max_new_tokens=8, do_sample=False)[0, 5:])
    assert torch.equal(out[1], lm.generate(long, max_new_tokens=8, do_sample=False)[0])
    with torch.no_grad():
        padded = lm(batch, attention_mask=mask).logits[0, 4:]
        alone = lm(short).logits[0]
    assert (padded - alone).abs().max() < 1e-5


def test_continuing_generation_from_a_returned_cache(lm):
    prompt = torch.randint(0, 40, (1, 6))
    first = lm.generate(prompt, max_new_tokens=5, do_sample=False, return_dict_in_generate=True)
    more = lm.generate(first.sequences, cache=first.cache, max_new_tokens=5, do_sample=False)
    assert torch.equal(more, lm.generate(prompt, max_new_tokens=10, do_sample=False))


def test_decoding_cost_does_not_grow_with_the_context(lm):
    """O(1) per token: the cached state has the same size after 10 and after 500 tokens."""
    sizes = []
    for n in (10, 500):
        cache = lm(torch.randint(0, 40, (1, n)), use_cache=True).cache
        sizes.append(sum(cache.get_recurrent_state(i).numel() for i in range(2)))
    assert sizes[0] == sizes[1] == 2 * 16 * 4


def test_generation_refuses_a_bidirectional_model():
    with pytest.raises(ValueError, match="bidirectional"):
        S4DForCausalLM(S4DConfig(vocab_size=10, d_model=8, n_layers=1, d_state=4, bidirectional=True))
