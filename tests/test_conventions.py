"""Conventions every transformers model keeps: a config that constructs from its defaults (and says when a keyword
is probably misspelt), the deprecated ``cache_params`` name, and ``output_attentions`` on an attention-free model."""

import json
import logging
import pathlib

import pytest
import torch
from transformers import AutoConfig

from s4d_hf import S4DConfig, S4DForCausalLM, S4DForSequenceClassification, S4DModel

CHECKPOINTS = pathlib.Path(__file__).resolve().parent.parent / "checkpoints"
TINY = dict(d_model=16, n_layers=2, d_state=8)


def without_name(config: S4DConfig) -> dict:
    d = config.to_dict()
    d.pop("_name_or_path", None)
    return d


# -- a config from its defaults ----------------------------------------------------------------------------------


def test_default_config_reads_one_continuous_channel():
    config = S4DConfig()
    assert config.vocab_size is None and config.input_dim == 1
    assert "input_dim becomes 1" in S4DConfig.__doc__
    model = S4DModel(S4DConfig(**TINY)).eval()
    assert model.embeddings is None and model.input_proj.in_features == 1
    assert model(input_values=torch.randn(2, 10)).last_hidden_state.shape == (2, 10, 16)


def test_setting_only_vocab_size_keeps_token_inputs_only():
    config = S4DConfig(vocab_size=10)
    assert config.input_dim is None
    assert S4DModel(S4DConfig(vocab_size=10, **TINY)).input_proj is None


def test_auto_config_for_model_and_to_diff_dict():
    config = AutoConfig.for_model("s4d")
    assert isinstance(config, S4DConfig) and config.to_dict() == S4DConfig().to_dict()
    diff = config.to_diff_dict()
    assert diff["model_type"] == "s4d" and diff["input_dim"] == 1 and diff["vocab_size"] is None
    assert S4DConfig(vocab_size=10).to_diff_dict()["input_dim"] is None


def test_default_config_round_trips(tmp_path):
    config = S4DConfig()
    config.save_pretrained(tmp_path)  # adds auto_map (the classes are registered for remote code)
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert isinstance(loaded, S4DConfig) and without_name(loaded) == without_name(config)
    assert loaded.input_dim == 1 and loaded.vocab_size is None


def test_saved_input_dim_null_stays_none(tmp_path):
    saved = S4DConfig(vocab_size=259).to_dict()
    assert saved["input_dim"] is None
    (tmp_path / "config.json").write_text(json.dumps(saved))
    loaded = AutoConfig.from_pretrained(tmp_path)
    assert loaded.vocab_size == 259 and loaded.input_dim is None


@pytest.mark.parametrize("folder", sorted(p.parent.name for p in CHECKPOINTS.glob("*/config.json")))
def test_shipped_checkpoint_configs_load_unchanged(folder):
    raw = json.loads((CHECKPOINTS / folder / "config.json").read_text())
    config = AutoConfig.from_pretrained(CHECKPOINTS / folder)
    assert isinstance(config, S4DConfig)
    assert (config.vocab_size, config.input_dim) == (raw["vocab_size"], raw["input_dim"])
    diff = config.to_diff_dict()
    assert (diff["vocab_size"], diff["input_dim"]) == (raw["vocab_size"], raw["input_dim"])


@pytest.mark.parametrize("kwargs,field", [
    (dict(vocab_size=0), "vocab_size"),
    (dict(input_dim=0), "input_dim"),
    (dict(d_state=7), "d_state"),
    (dict(init="hippo"), "init"),
    (dict(pooling="max"), "pooling"),
    (dict(dropout=1.0), "dropout"),
    (dict(n_ssm=3), "n_ssm"),
])
def test_invalid_values_still_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        S4DConfig(**kwargs)


# -- misspelt keywords -------------------------------------------------------------------------------------------


def warnings_logged(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "keyword" in r.getMessage()]


@pytest.mark.parametrize("typo,field", [
    ("d_modle", "d_model"),  # two letters swapped
    ("d_mode", "d_model"),  # one deleted
    ("d_modell", "d_model"),  # one inserted
    ("ssm_lt", "ssm_lr"),  # one replaced
    ("num_lables", "num_labels"),  # a transformers field
    ("hiden_size", "hidden_size"),  # an alias (attribute_map)
])
def test_misspelt_keyword_names_the_field_and_is_kept(caplog, typo, field):
    with caplog.at_level(logging.WARNING):
        config = S4DConfig(**{typo: 3})
    (message,) = warnings_logged(caplog)
    assert f"`{typo}`" in message and f"`{field}`" in message
    assert getattr(config, typo) == 3  # kept as an attribute, as transformers does


def test_transformers_keys_and_far_unknown_keys_are_not_reported(caplog, tmp_path):
    extras = dict(auto_map={"AutoConfig": "configuration_s4d.S4DConfig"}, architectures=["S4DModel"],
                  id2label={0: "a", 1: "b"}, custom_pipelines={}, transformers_version="5.24.0", dtype="float32",
                  torch_dtype="float32", model_type="s4d", name_or_path="somewhere", my_own_note="kept")
    with caplog.at_level(logging.WARNING):
        config = S4DConfig(**extras)
        config.save_pretrained(tmp_path)
        loaded = AutoConfig.from_pretrained(tmp_path)
    assert warnings_logged(caplog) == []
    assert loaded.my_own_note == "kept" and loaded.architectures == ["S4DModel"]


def test_a_saved_misspelling_is_reported_again_on_load(caplog, tmp_path):
    S4DConfig(d_modle=16).save_pretrained(tmp_path)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        AutoConfig.from_pretrained(tmp_path)
    assert any("`d_model`" in m for m in warnings_logged(caplog))


# -- the deprecated cache_params ---------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [S4DModel, S4DForCausalLM])
def test_cache_params_is_the_deprecated_name_of_cache(cls):
    model = cls(S4DConfig(vocab_size=20, **TINY)).eval()
    ids = torch.randint(0, 20, (2, 7))
    output = "logits" if cls is S4DForCausalLM else "last_hidden_state"
    with torch.no_grad():
        full = getattr(model(ids), output)[:, -1]
        prefill = model(ids[:, :-1], use_cache=True)
        with pytest.warns(FutureWarning, match="`cache_params` is deprecated") as record:
            old = model(ids[:, -1:], cache_params=prefill.cache, attention_mask=torch.ones(2, 7))
        assert "`cache`" in str(record[0].message)
        prefill = model(ids[:, :-1], use_cache=True)
        new = model(ids[:, -1:], cache=prefill.cache, attention_mask=torch.ones(2, 7))
    torch.testing.assert_close(getattr(old, output)[:, -1], full, atol=1e-5, rtol=0)
    torch.testing.assert_close(getattr(old, output), getattr(new, output), atol=0, rtol=0)
    assert old.cache is not None


@pytest.mark.parametrize("cls", [S4DModel, S4DForCausalLM])
def test_cache_and_cache_params_together_are_refused(cls):
    model = cls(S4DConfig(vocab_size=20, **TINY)).eval()
    with pytest.raises(ValueError, match="cache_params"):
        model(torch.randint(0, 20, (1, 3)), cache=None, cache_params=None)


# -- output_attentions on an attention-free model ----------------------------------------------------------------


@pytest.mark.parametrize("cls", [S4DModel, S4DForSequenceClassification, S4DForCausalLM])
def test_output_attentions_is_accepted_and_returns_no_attentions(cls):
    model = cls(S4DConfig(vocab_size=20, **TINY)).eval()
    ids = torch.randint(0, 20, (2, 5))
    with torch.no_grad():
        plain = model(ids)
        asked = model(ids, output_attentions=True)
        as_tuple = model(ids, output_attentions=True, return_dict=False)
        model.config.output_attentions = True
        from_config = model(ids)
    for out in (asked, from_config):
        assert out.attentions is None and "attentions" not in out and list(out.keys()) == list(plain.keys())
    assert len(as_tuple) == len(plain.to_tuple())


def test_generate_with_output_attentions():
    model = S4DForCausalLM(S4DConfig(vocab_size=20, **TINY)).eval()
    ids = torch.randint(0, 20, (2, 5))
    for num_beams in (1, 2):
        out = model.generate(ids, max_new_tokens=3, num_beams=num_beams, do_sample=False, output_attentions=True,
                             return_dict_in_generate=True)
        assert out.sequences.shape == (2, 8) and all(a is None for a in out.attentions)
