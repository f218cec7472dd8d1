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
