"""The serve stage: an OpenAI-compatible endpoint for any checkpoint, on Ray Serve.

from medbase_ray.serve.app import start_server
base_url = start_server("runs/tiny/train/final", cfg)
"""
