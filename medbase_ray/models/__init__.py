"""Models: the embedded tiny default (tiny.py), loading any HF checkpoint (loading.py),
chat formats (chat.py)."""
