"""Every private part of scikit-learn the behaviour model uses, in one place.

The model scores small batches by walking the IsolationForest's trees in plain Python (much
faster than scikit-learn's per-call overhead for a handful of vectors); that needs the forest's
per-node path lengths and its normaliser, which scikit-learn keeps in private attributes, and the
skops type of a fitted tree, which lives in a private module. Importing this module with another
scikit-learn than `TESTED` raises RuntimeError (pipeline/dependency_pins.py): re-check the walk
(tests/ml compare it with `score_samples`) before moving the pin here and in pyproject.toml.
"""

from __future__ import annotations

from typing import Any

from pipeline.dependency_pins import require_tested

TESTED = {"scikit-learn": "1.9.1"}
require_tested(TESTED, __name__)

#: The types, beyond skops' defaults, that a fitted forest's artifact builds.
TREE_TYPES: frozenset[str] = frozenset({"sklearn.tree._tree.Tree"})


def forest_path_lengths(forest: Any) -> tuple[list[list[float]], float]:
    """Per tree, the path length a sample reaching each node scores (its depth plus the average
    path length of the samples left there, minus one), and the forest's normaliser (the trees
    times the average path length of `max_samples`): the score is 2 ** -(sum / normaliser)."""
    from sklearn.ensemble._iforest import _average_path_length

    per_tree = [
        (forest._decision_path_lengths[i] + forest._average_path_length_per_tree[i] - 1.0).tolist()
        for i in range(len(forest.estimators_))
    ]
    denominator = len(forest.estimators_) * float(_average_path_length([forest._max_samples])[0])
    return per_tree, denominator
