"""The eval stage: the XMedBench-format benchmark, three scoring modes, a report.

    from medbase_ray.eval.runner import run_eval
    report = run_eval(cfg, model_path="runs/tiny/train/final")            # in-process
    report = run_eval(cfg, base_url="http://127.0.0.1:8000/v1")           # any endpoint

config.py (the `eval:` section), extract.py, prompts.py, scoring.py, report.py and lm.py
are the pure core; runner.py drives it, remote.py runs it in a Ray actor.
"""
