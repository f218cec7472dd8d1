"""`import s4d_hf` and `s4d-hf --help` stay cheap, and the deferred registration still happens in time.

No timings are asserted (the test machines are shared); the modules a fresh process has imported are the
deterministic proxy: `import s4d_hf` imports neither transformers' modeling_utils nor its pipelines, nor the torch
modules of s4d_hf, and the first S4DConfig registers everything else. Progress of `s4d-hf evaluate` goes to stderr,
as plain lines when stderr is a file.
"""

import json
import pathlib
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).parent.parent
HEAVY = ["transformers.modeling_utils", "transformers.pipelines", "transformers.processing_utils",
         "s4d_hf.modeling.modeling_s4d", "s4d_hf.modeling.ssm_s4d", "s4d_hf.pipelines",
         "s4d_hf.processing.image_processing_s4d", "s4d_hf.processing.tokenization_s4d", "s4d_hf.streaming", "s4d_hf.train",
         "s4d_hf.cli", "s4d_hf.training", "s4d_hf.hub", "s4d_hf.conversion"]


def python(code: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True, text=True,
                            cwd=ROOT, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_import_is_light_and_the_first_config_registers_everything():
    out = python(f"""
        import json, sys
        import s4d_hf
        light = [m for m in {HEAVY!r} if m in sys.modules]
        assert s4d_hf.S4DConfig.model_type == "s4d"  # the config is eager (AutoConfig needs it)
        from transformers import AutoConfig
        assert type(AutoConfig.for_model("s4d", input_dim=3)) is s4d_hf.S4DConfig  # ... and registers the rest
        from transformers.models.auto import modeling_auto as m
        from transformers.models.auto.feature_extraction_auto import FEATURE_EXTRACTOR_MAPPING
        from transformers.models.auto.tokenization_auto import TOKENIZER_MAPPING
        from transformers.pipelines import PIPELINE_REGISTRY
        from s4d_hf.modeling.modeling_s4d import S4DForCausalLM, S4DForSequenceClassification, S4DModel
        from s4d_hf.modeling.configuration_s4d import S4DConfig
        mapped = {{name: getattr(m, name)[S4DConfig].__name__ for name in (
            "MODEL_MAPPING", "MODEL_FOR_CAUSAL_LM_MAPPING", "MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING",
            "MODEL_FOR_AUDIO_CLASSIFICATION_MAPPING", "MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING")}}
        mapped["feature extractor"] = FEATURE_EXTRACTOR_MAPPING[S4DConfig].__name__
        if "S4DByteTokenizer" in s4d_hf.__all__:
            tokenizer = TOKENIZER_MAPPING[S4DConfig]  # a class, or (slow, fast) in older transformers
            mapped["tokenizer"] = (tokenizer[0] if isinstance(tokenizer, tuple) else tokenizer).__name__
        tasks = PIPELINE_REGISTRY.get_supported_tasks()
        print(json.dumps({{"light": light, "mapped": mapped, "task": "time-series-classification" in tasks,
                          "names": [n for n in s4d_hf.__all__ if getattr(s4d_hf, n, "missing") == "missing"]}}))
    """)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["light"] == [], f"import s4d_hf imported {report['light']}"
    mapped = report.pop("mapped")
    assert mapped.pop("MODEL_MAPPING") == "S4DModel" and mapped.pop("MODEL_FOR_CAUSAL_LM_MAPPING") == "S4DForCausalLM"
    assert mapped.pop("feature extractor") == "S4DFeatureExtractor"
    assert mapped.pop("tokenizer", "S4DByteTokenizer") == "S4DByteTokenizer"
    assert set(mapped.values()) == {"S4DForSequenceClassification"}
    assert report["task"], "time-series-classification is not registered after the first S4DConfig"
    assert report["names"] == [], f"s4d_hf.__all__ names that do not resolve: {report['names']}"


@pytest.fixture(scope="module")
def ts_folder(tmp_path_factory):
    from s4d_hf import S4DConfig, S4DForSequenceClassification, S4DTimeSeriesProcessor

    folder = tmp_path_factory.mktemp("lazy") / "ts"
    config = S4DConfig(input_dim=2, d_model=8, n_layers=1, d_state=4, num_labels=3)
    S4DForSequenceClassification(config).save_pretrained(folder)
    S4DTimeSeriesProcessor(feature_size=2).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("code", [
    "import s4d_hf\nfrom transformers import AutoModel\nmodel = AutoModel.from_pretrained(folder)",
    "from s4d_hf import S4DForSequenceClassification\nfrom transformers import AutoModelForSequenceClassification\n"
    "model = AutoModelForSequenceClassification.from_pretrained(folder)",
    "from s4d_hf.modeling import S4DForSequenceClassification\n"
    "from transformers import AutoModelForSequenceClassification\n"
    "model = AutoModelForSequenceClassification.from_pretrained(folder)",
    "import s4d_hf, numpy as np\nfrom transformers import pipeline\n"
    "pipe = pipeline('time-series-classification', model=folder)\nassert len(pipe(np.zeros((20, 2)))) == 3\n"
    "model = pipe.model",
], ids=["import-AutoModel", "class-AutoModelForSequenceClassification", "modeling-AutoModelForSequenceClassification",
        "import-pipeline"])
def test_a_fresh_process_loads_a_folder_through_the_auto_classes(ts_folder, code):
    out = python("import sys\nfolder = sys.argv[1]\n" + code + "\nprint(type(model).__module__)", str(ts_folder))
    assert out.stdout.strip().splitlines()[-1] == "s4d_hf.modeling.modeling_s4d"  # the installed classes, no remote code


def modules_imported(*argv: str) -> set[str]:
    """sys.modules after a fresh process ran ``s4d-hf ARGV`` (the console script's module ``s4d_hf_cli``), or just
    ``import s4d_hf`` when ARGV is empty."""
    out = python("""
        import json, runpy, sys
        argv = sys.argv[1:]
        if argv:
            sys.argv = ["s4d-hf", *argv]
            try:
                runpy.run_module("s4d_hf_cli", run_name="__main__")
            except SystemExit as e:
                assert e.code == 0, e.code
        else:
            import s4d_hf
        print(json.dumps(sorted(sys.modules)))
    """, *argv)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_help_imports_no_sub_command():
    help_all = modules_imported("--help")
    assert not {m for m in help_all if m.startswith(("s4d_hf", "torch", "transformers"))}, \
        "s4d-hf --help must not import s4d_hf (its import registers with transformers, which imports torch)"
    help_evaluate = modules_imported("evaluate", "--help")
    assert {"s4d_hf.cli.evaluate", "s4d_hf.hub.evaluation"} <= help_evaluate
    # no other sub-command's module (evaluate reads the data and computes the metrics with the training package's
    # data and metric modules, but never imports the training run itself)
    other_commands = {"s4d_hf.train", "s4d_hf.cli.train", "s4d_hf.cli.push", "s4d_hf.cli.release",
                      "s4d_hf.cli.convert", "s4d_hf.cli.remote_code", "s4d_hf.training.tasks", "s4d_hf.training.job",
                      "s4d_hf.training.trainer_backend", "s4d_hf.training.accelerate_backend", "s4d_hf.conversion", "s4d_hf.hub.push",
                      "s4d_hf.hub.release"}
    assert not help_evaluate & other_commands, help_evaluate & other_commands
    assert not {m for m in help_evaluate if m.startswith("s4d_hf.conversion")}


def test_cli_parser_still_builds_every_sub_command():
    from s4d_hf.cli import COMMANDS, build_parser

    args = build_parser().parse_args(["evaluate", "some/folder", "--max-samples", "3"])
    assert (args.command, args.folder, args.max_samples, args._module) == ("evaluate", "some/folder", 3,
                                                                           COMMANDS["evaluate"][0])


def test_evaluate_logs_plain_progress_lines_to_a_file(tmp_path):
    folder = ROOT / "checkpoints" / "s4d-tecator"
    log = tmp_path / "stderr.log"
    with open(log, "w") as err:
        result = subprocess.run([sys.executable, "-m", "s4d_hf.cli", "evaluate", str(folder), "--max-samples", "5"],
                                stdout=subprocess.PIPE, stderr=err, text=True, cwd=ROOT, timeout=300)
    text = log.read_text()
    if result.returncode != 0 and "not installed" in text:
        pytest.skip(text.strip().splitlines()[-1])
    assert result.returncode == 0, text[-3000:]
    assert set(json.loads(result.stdout.strip().splitlines()[-1])) == {"mae", "mse", "rmse"}
    assert "\x1b" not in text and "\r" not in text, repr(text[-500:])
    lines = text.splitlines()
    assert any(line.startswith("s4d-hf: loading") for line in lines), text
    assert "s4d-hf: scoring: 0/5 examples" in lines and any(l.startswith("s4d-hf: scoring: 5/5 examples") for l in lines)


def test_progress_writes_plain_lines_when_stderr_is_not_a_terminal(capsys, monkeypatch):
    from s4d_hf.hub import evaluation as evaluate

    monkeypatch.setattr(evaluate, "PLAIN_PROGRESS_EVERY", 0.0)
    with evaluate.progress(3, "scoring") as update:
        for _ in range(3):
            update(1)
    lines = capsys.readouterr().err.splitlines()
    assert lines[:3] == ["s4d-hf: scoring: 0/3 examples", "s4d-hf: scoring: 1/3 examples",
                         "s4d-hf: scoring: 2/3 examples"]
    assert len(lines) == 4 and lines[3].startswith("s4d-hf: scoring: 3/3 examples in ")
