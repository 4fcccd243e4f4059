"""The tune stage: Ray Tune sweeps the language mixing ratios.

config.py  TuneConfig (the `tune:` section)
space.py   each trial's config, the ranking and the table (no Ray)
sweep.py   the Ray layer: run_tune, one Tune trial = one Ray Train run + dev eval
"""
