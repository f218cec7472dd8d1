"""Fine-tuning S4D (``s4d-hf train``): data (``data``, ``collate``), the built-in offline datasets (``datasets``) and
classic baselines (``baselines``), metrics (``evaluation`` and the local metric modules in ``metrics/``), the run
(``job``), the two backends (``trainer_backend``, ``accelerate_backend``) and the Hub-ready output folder
(``output``). The command itself is :mod:`s4d_hf.train`."""
