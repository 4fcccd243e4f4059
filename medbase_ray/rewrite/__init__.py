"""The rewrite stage: raw medical text -> conversations through a teacher LLM.

from medbase_ray.rewrite.pipeline import run_rewrite
summary = run_rewrite(cfg)              # or run_rewrite(cfg, dry_run=True)
"""
