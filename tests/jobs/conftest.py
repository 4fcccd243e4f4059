"""A Ray cluster of its own for the `ray job submit` tests: `ray start --head` on this
machine with token authentication, its own ports and temp dir, stopped without
`ray stop` (tests/cluster/ray_start.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..cluster.ray_start import RayHead, ray_start_head


@pytest.fixture(scope="module")
def ray_head() -> Iterator[RayHead]:
    with ray_start_head(num_cpus=4) as head:
        yield head
