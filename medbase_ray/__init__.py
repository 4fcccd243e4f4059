"""medbase-ray: the Apollo / Medbase multilingual medical LLM pipeline on Ray.

Stages (each a subpackage with a pure core and a thin Ray layer): rewrite, prepare,
train, tune, serve, eval. See README.md and DESIGN.md.
"""

__version__ = "0.1.0"
