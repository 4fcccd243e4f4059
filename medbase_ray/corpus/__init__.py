"""Corpus formats: readers (readers.py), writers, the language registry (languages.py),
rejects (rejects.py) and the bundled sample data (data/)."""
