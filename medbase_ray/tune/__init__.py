"""The tune stage: a mixture optimizer over the language mixing ratios (docs/tune.md).

config.py      TuneConfig (the `tune:` section)
space.py       each trial's config, realised shares, the ranking and the table (no Ray)
baselines.py   the named mixtures: equal, natural, temperature, unimax (no Ray)
regression.py  mixture -> accuracy fits, leave-one-out, the proposal, floors, Pareto (no Ray)
analysis.py    what a finished sweep means: fits, proposal, best under floors (no Ray)
outputs.py     results, best mixture, plots and the Markdown report (no Ray)
sweep.py       the Ray layer: run_tune; one Tune trial = one Ray Train run streaming its reports
"""
