"""Export round trips: torch.export with a dynamic length, ONNX (classifier and recurrent LM step) through
onnxruntime, and torch.compile without a recompilation per new length. ONNX tests skip without onnx/onnxruntime."""

import numpy as np
import pytest
import torch

from s4d_hf import S4DConfig, S4DForCausalLM, S4DForSequenceClassification
from s4d_hf.export import export_onnx, export_program, initial_state


def classifier(**options) -> S4DForSequenceClassification:
    torch.manual_seed(0)
    config = dict(input_dim=2, d_model=16, n_layers=2, d_state=8, num_labels=3)
    return S4DForSequenceClassification(S4DConfig(**{**config, **options})).eval()


def lm() -> S4DForCausalLM:
    torch.manual_seed(0)
    return S4DForCausalLM(S4DConfig(vocab_size=40, d_model=16, n_layers=2, d_state=8, channels=2)).eval()


@pytest.mark.parametrize("options", [dict(), dict(vocab_size=30, input_dim=None, bidirectional=True, pooling="last")],
                         ids=["values", "tokens-bidirectional"])
def test_torch_export_with_a_dynamic_length_equals_eager(options):
    model = classifier(**options)
    program = export_program(model, example_length=100)
    for length in (9, 257, 1000):
        x = (torch.randn(3, length, 2) if model.config.input_dim else torch.randint(0, 30, (3, length)))
        with torch.no_grad():
            expected = model(**{"input_values" if model.config.input_dim else "input_ids": x}).logits
            got = program.module()(x)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_torch_export_with_an_attention_mask():
    model = classifier()
    program = export_program(model, example_length=64, attention_mask=True)
    x, mask = torch.randn(2, 50, 2), torch.ones(2, 50, dtype=torch.long)
    mask[1, 30:] = 0
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x, mask), model(input_values=x, attention_mask=mask).logits,
                                   atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("training", [False, True], ids=["inference", "training"])
def test_compile_does_not_recompile_for_every_new_length(training):
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    model = classifier().train(training)
    compiled = torch.compile(model, backend="eager")  # the dynamo front end; no C++ compiler needed
    for length in (20, 33, 47, 64, 90):
        x = torch.randn(2, length, 2)
        with torch.set_grad_enabled(training):
            got, expected = compiled(input_values=x).logits, model(input_values=x).logits
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        if training:  # the loss outside the model: the heads' label checks read values (a graph break)
            torch.nn.functional.cross_entropy(got, torch.tensor([0, 2])).backward()
    graphs = counters["stats"]["unique_graphs"]
    assert graphs <= 2, f"{graphs} graphs for 5 lengths"  # static first, then one dynamic graph


try:
    import onnxruntime
    import onnxscript  # noqa: F401
except ImportError:
    onnxruntime = None
needs_onnx = pytest.mark.skipif(onnxruntime is None,
                                reason="onnxruntime/onnxscript not installed (pip install 's4d-hf[export]')")


@needs_onnx
@pytest.mark.parametrize("options", [dict(), dict(bidirectional=True, channels=2)], ids=["causal", "bidirectional"])
def test_onnx_classifier_equals_pytorch(tmp_path, options):
    model = classifier(**options)
    path = export_onnx(model, tmp_path / "classifier.onnx")
    session = onnxruntime.InferenceSession(str(path))
    for batch, length in ((1, 5), (3, 64), (2, 300)):
        x = torch.randn(batch, length, 2)
        with torch.no_grad():
            expected = model(input_values=x).logits.numpy()
        (got,) = session.run(None, {"input_values": x.numpy()})
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


@needs_onnx
def test_onnx_decoder_step_equals_the_full_forward(tmp_path):
    model = lm()
    path = export_onnx(model, tmp_path / "step.onnx")
    session = onnxruntime.InferenceSession(str(path))
    ids = torch.randint(0, 40, (2, 10))
    with torch.no_grad():
        expected = model(ids).logits.numpy()
    state = initial_state(model, 2).numpy()
    for t in range(ids.shape[1]):
        logits, state = session.run(None, {"input_ids": ids[:, t : t + 1].numpy(), "state": state})
        np.testing.assert_allclose(logits, expected[:, t], atol=1e-4, rtol=1e-4)
