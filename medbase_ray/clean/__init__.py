"""The clean stage: benchmark decontamination and exact / near deduplication on Ray Data.

Config in `config.py`, the pure core in `text.py` (normalisation, n-gram hashes),
`index.py` (the benchmark index), `minhash.py` (signatures, LSH bands), `dedup.py`
(keep one per bucket) and `report.py`; the Ray layer is `pipeline.py` (`run_clean`).
"""
