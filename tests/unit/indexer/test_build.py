"""Index building without models: search parameters that do not fit the factory are a build error."""

from __future__ import annotations

import numpy as np
import pytest

from indexer.build import BuildError, make_faiss_index


def test_search_parameters_that_do_not_fit_the_factory_are_a_build_error() -> None:
    vectors = np.random.default_rng(0).standard_normal((64, 8)).astype(np.float32)
    with pytest.raises(BuildError, match="do not apply"):
        make_faiss_index(vectors, "Flat", "nprobe=8")
    with pytest.raises(BuildError, match="does not know the index factory"):
        make_faiss_index(vectors, "NoSuchIndex", "")
    assert make_faiss_index(vectors, "HNSW8", "efSearch=40").hnsw.efSearch == 40
