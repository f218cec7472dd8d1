"""The fast decoding step (``S4DLayer.decode_step`` / ``ssm_kernels_s4d.fused_step``, used by generate()) against the
convolution and the plain step: the same numbers, refused where the plain step refuses, and never stale after a
parameter update."""

import pytest
import torch
from transformers import DynamicCache

from s4d_hf import S4DConfig, S4DForCausalLM
from s4d_hf.modeling.ssm_kernels_s4d import DecodeCache, real_step, step_tensors
from s4d_hf.modeling.ssm_s4d import S4DLayer


def layer(**options) -> S4DLayer:
    torch.manual_seed(0)
    layer = S4DLayer(6, d_state=8, dt_min=0.01, dt_max=0.3, **options)
    layer.kernel.reset_parameters()
    with torch.no_grad():
        layer.D.normal_()
        for p in layer.kernel.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return layer.eval()


@pytest.mark.parametrize("options", [dict(), dict(disc="bilinear", channels=2), dict(is_real=True, init="real"),
                                     dict(n_ssm=2, dt_tie=False)], ids=["zoh", "bilinear-2ch", "real", "nssm-untied"])
@pytest.mark.parametrize("rate", [1.0, 0.5])
def test_fast_step_equals_convolution_and_step(options, rate):
    s4d = layer(**options)
    u = torch.randn(3, 20, 6)
    with torch.no_grad():
        y_conv, _ = s4d(u, rate=rate)
        state = s4d.default_state(3)
        slow_state = state.clone()
        store = DecodeCache()
        for t in range(u.shape[1]):
            y_fast = s4d.decode_step(u[:, t], state, store, rate)  # state updated in place
            y_slow, slow_state = s4d.step(u[:, t], slow_state, rate)
            torch.testing.assert_close(y_fast, y_conv[:, t], atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(y_fast, y_slow, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(state, slow_state, atol=1e-6, rtol=1e-6)


def test_real_step_equals_fused_step():
    s4d = layer(channels=2)
    with torch.no_grad():
        dA, dB, W = step_tensors(*s4d.kernel.step_parameters())
        state = torch.randn(2, 6, 4, dtype=torch.complex64)
        u = torch.randn(2, 6)
        y_real, next_real = real_step(u, torch.view_as_real(state), torch.view_as_real(dA), dB, W)
        y_slow, next_slow = s4d.step(u, state)
        y_real = s4d._output(torch.addcmul(y_real, s4d.D, u[:, None]).flatten(1), u.dtype)
    torch.testing.assert_close(y_real, y_slow, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(torch.view_as_complex(next_real), next_slow, atol=1e-6, rtol=1e-6)


def test_bidirectional_layer_is_not_stepped():
    s4d = layer(bidirectional=True)
    with pytest.raises(ValueError, match="bidirectional"):
        s4d.step(torch.randn(1, 6), s4d.default_state(1))
    with pytest.raises(ValueError, match="bidirectional"):
        S4DForCausalLM(S4DConfig(vocab_size=10, d_model=8, n_layers=1, d_state=4, bidirectional=True))


def lm() -> S4DForCausalLM:
    torch.manual_seed(0)
    return S4DForCausalLM(S4DConfig(vocab_size=30, d_model=16, n_layers=2, d_state=8, prenorm=True)).eval()


def test_generation_uses_the_fast_step_and_matches_the_full_forward():
    model = lm()
    prompt = torch.randint(0, 30, (2, 5))
    with torch.no_grad():
        out = model(prompt, use_cache=True)
        cache = out.cache
        token = out.logits[:, -1:].argmax(-1)
        seq = torch.cat([prompt, token], 1)
        for _ in range(6):
            step = model(token, cache=cache, use_cache=True)
            full = model(seq, use_cache=False).logits[:, -1]
            torch.testing.assert_close(step.logits[:, -1], full, atol=1e-5, rtol=1e-5)
            token = step.logits[:, -1:].argmax(-1)
            seq = torch.cat([seq, token], 1)
    assert all(isinstance(layer.__dict__.get("s4d_decode"), DecodeCache) for layer in cache.layers)


def test_parameter_updates_between_decoding_calls_are_seen():
    """A training step between generate() calls, and an optimizer step in the middle of one cache's decoding."""
    model = lm()
    prompt = torch.randint(0, 30, (2, 6))
    model.generate(prompt, max_new_tokens=3, do_sample=False)  # fills the inference caches

    def train_step():
        model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        loss = model(torch.randint(0, 30, (2, 12)), labels=torch.randint(0, 30, (2, 12))).loss
        loss.backward()
        optimizer.step()
        model.eval()

    train_step()
    generated = model.generate(prompt, max_new_tokens=4, do_sample=False)
    seq = prompt
    for _ in range(4):
        with torch.no_grad():
            seq = torch.cat([seq, model(seq, use_cache=False).logits[:, -1:].argmax(-1)], 1)
    assert torch.equal(generated, seq)

    with torch.no_grad():  # same cache, parameters changed between two steps
        cache = model(prompt, use_cache=True).cache
        token = torch.randint(0, 30, (2, 1))
        model(token, cache=cache, use_cache=True)
    train_step()
    with torch.no_grad():
        # the reference: the prefix state under the new parameters is not the cached one, so compare one step
        # against the plain step on the same cached state
        states = [cache.get_recurrent_state(i).clone() for i in range(len(model.s4d.layers))]
        block = model.s4d.layers[0]
        u = block.norm(model.s4d.embeddings(token))[:, 0]
        expected, _ = block.mixer.step(u, states[0])
        store = cache.layers[0].__dict__["s4d_decode"]
        got = block.mixer.decode_step(u, states[0].clone(), store)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-6)


def test_decoding_under_autograd_takes_the_plain_step():
    model = lm()
    prompt = torch.randint(0, 30, (1, 4))
    cache = DynamicCache(config=model.config)
    model(prompt, cache=cache, use_cache=True)
    out = model(torch.randint(0, 30, (1, 1)), cache=cache, use_cache=True)
    assert out.logits.requires_grad  # the differentiable step ran, not the in-place one
    assert "s4d_decode" not in cache.layers[0].__dict__


def sharp_lm(**options) -> S4DForCausalLM:
    torch.manual_seed(0)
    config = dict(vocab_size=30, d_model=16, n_layers=2, d_state=8, prenorm=True, dt_min=0.01, dt_max=0.3)
    model = S4DForCausalLM(S4DConfig(**{**config, **options})).eval()
    with torch.no_grad():  # sharper next-token distributions: no near-ties between two greedy paths
        model.lm_head.weight.mul_(8)
        for layer in model.s4d.layers:
            layer.mixer.D.normal_()
            if isinstance(layer.norm, torch.nn.BatchNorm1d):  # running statistics that are not the identity
                layer.norm.running_mean.normal_(0, 0.3)
                layer.norm.running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize("options", [dict(), dict(prenorm=False, norm="batch", channels=2, final_act="id"),
                                     dict(disc="bilinear", init="lin", final_norm=False)],
                         ids=["prenorm-layernorm", "postnorm-batchnorm-2ch-id", "bilinear"])
@pytest.mark.parametrize("batch", [1, 3])
def test_generate_with_the_fast_step_equals_the_convolution_forward(options, batch):
    """generate() (prefill by convolution, then S4DBlock._decode per token) against the whole sequence run through
    the convolution at every step (use_cache=False): the same greedy tokens, and every step's logits to 1e-5."""
    model = sharp_lm(**options)
    prompt = torch.randint(0, 30, (batch, 6))
    out = model.generate(prompt, max_new_tokens=10, do_sample=False, output_logits=True, return_dict_in_generate=True)
    assert all(isinstance(layer.__dict__.get("s4d_decode"), DecodeCache) for layer in out.cache.layers)
    with torch.no_grad():
        full = model(out.sequences[:, :-1], use_cache=False).logits[:, prompt.shape[1] - 1:]
    torch.testing.assert_close(torch.stack(out.logits, 1), full, atol=1e-5, rtol=1e-5)
    assert torch.equal(out.sequences[:, prompt.shape[1]:], full.argmax(-1))


def test_decoding_after_a_cache_reset_equals_the_convolution_forward():
    """One cache reused for a second sequence, reset explicitly or by passing a whole new sequence (transformers'
    restart rule): its kept step tensors stay valid, its state restarts from zero."""
    model = sharp_lm()
    first, second = torch.randint(0, 30, (2, 5)), torch.randint(0, 30, (2, 7))
    cache = DynamicCache(config=model.config)
    with torch.no_grad():
        model(first, cache=cache, use_cache=True)
        for _ in range(3):
            model(torch.randint(0, 30, (2, 1)), cache=cache, use_cache=True)
        for reset in (cache.reset, lambda: None):  # explicit reset, then the restart rule (L > 1, no mask)
            reset()
            step = model(second, cache=cache, use_cache=True).logits[:, -1:].argmax(-1)
            seq = torch.cat([second, step], 1)
            for _ in range(4):
                logits = model(step, cache=cache, use_cache=True).logits[:, -1]
                torch.testing.assert_close(logits, model(seq, use_cache=False).logits[:, -1], atol=1e-5, rtol=1e-5)
                step = logits.argmax(-1, keepdim=True)
                seq = torch.cat([seq, step], 1)
    assert all(isinstance(layer.__dict__.get("s4d_decode"), DecodeCache) for layer in cache.layers)


def test_decoding_with_a_mask_equals_the_masked_convolution_forward():
    """A mask that is not all ones reaches every block of the fast step (a padded new position zeroes the layers'
    inputs, as in the convolution), and its values are still checked."""
    model = sharp_lm()
    seq = torch.randint(0, 30, (2, 9))
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[0, :3] = 0  # left padding
    mask[1, -1] = 0  # a padded new position
    with torch.no_grad():
        full = model(seq, attention_mask=mask).logits[:, -1]
        cache = model(seq[:, :-1], attention_mask=mask[:, :-1], use_cache=True).cache
        step = model(seq[:, -1:], attention_mask=mask, cache=cache, use_cache=True).logits[:, -1]
        torch.testing.assert_close(step, full, atol=1e-5, rtol=1e-5)
        assert isinstance(cache.layers[0].__dict__.get("s4d_decode"), DecodeCache)
        mask[0, -1] = 2
        with pytest.raises(ValueError, match="only 0 and 1"):
            model(seq[:, -1:], attention_mask=mask, cache=cache, use_cache=True)


def test_decoding_a_bfloat16_model_takes_the_fast_step(tmp_path):
    """A model loaded with dtype=bfloat16 (SSM parameters kept float32) decodes through the fast step, whose GELU
    then runs in bfloat16 like the convolution's: its logits follow the full forward's to bfloat16 precision."""
    sharp_lm().save_pretrained(tmp_path)
    model = S4DForCausalLM.from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
    assert model.s4d.layers[0].mixer.output_linear.weight.dtype == torch.bfloat16
    seq = torch.randint(0, 30, (2, 9))
    with torch.no_grad():
        full = model(seq).logits[:, -1].float()
        cache = model(seq[:, :-1], use_cache=True).cache
        step = model(seq[:, -1:], cache=cache, use_cache=True).logits[:, -1].float()
    assert isinstance(cache.layers[0].__dict__.get("s4d_decode"), DecodeCache)
    torch.testing.assert_close(step, full, atol=0.03 * full.abs().max().item(), rtol=0)
