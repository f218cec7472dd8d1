"""Fine-tuning S4D (``s4d-hf train``; the command itself is :mod:`s4d_hf.train`).

* ``data/``: the data, by role: ``core`` (container, task names, byte ids, splits, checks, normalisation),
  ``user_files`` (``--dataset PATH``), ``audio`` (the audio-file reader), ``builtin/`` (the built-in offline
  datasets, one module per family, and their registry), ``loading`` (``--dataset SPEC`` -> splits);
* ``tasks``: one object per ``--task`` (model, collator, metrics, output writer) and ``prepare_job``;
* ``models``: the model a run starts from (fresh, ``--model``, ``--init-from``) and the regression target scale;
* ``spt``: self-pretraining (its model, collator, metrics, task object and backbone folder);
* ``collate``: batching; ``task_metrics``: the metrics (with the local ``evaluate`` modules in ``metrics/``), also
  used by ``s4d-hf evaluate`` and ``release``; ``baselines``: classic same-split baselines;
* ``job``: the prepared run, the graceful stop and the result both backends hand back; ``folders``: the run's
  folders and what it may replace; ``trainer_backend`` / ``accelerate_backend``: the two training loops;
* ``output``: the Hub-ready folder of a task model (and what its card says about the run).
"""
