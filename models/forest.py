"""A fitted scikit-learn forest as flat arrays, scored one event in microseconds.

scikit-learn's ``predict_proba`` costs milliseconds for one row (input validation, thread
dispatch); the stream scores one transaction at a time. The trees are copied into flat
arrays once and walked by a numba-compiled loop: the same splits and leaf values, so the
same scores (``tests`` compare them with ``predict_proba``). Arrays also make the artifact
format safe: an ``.npz`` of numbers loads without unpickling code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numba import njit

from models.exceptions import ArtifactError

ARRAY_NAMES = ("roots", "left", "right", "feature", "threshold", "leaf_value")


@njit(cache=True, nogil=True)
def _score(x, roots, left, right, feature, threshold, leaf_value):  # type: ignore[no-untyped-def]
    total = 0.0
    for tree in range(roots.shape[0]):
        node = roots[tree]
        while left[node] != -1:
            if x[feature[node]] <= threshold[node]:
                node = left[node]
            else:
                node = right[node]
        total += leaf_value[node]
    return total / roots.shape[0]


class CompiledForest:
    """Scores in [0, 1]: the mean over trees of the fraud share at the leaf reached."""

    def __init__(self, arrays: Mapping[str, np.ndarray], feature_names: Sequence[str]) -> None:
        missing = [name for name in ARRAY_NAMES if name not in arrays]
        if missing:
            raise ArtifactError(f"forest arrays lack {missing}")
        self.arrays = {name: np.ascontiguousarray(arrays[name]) for name in ARRAY_NAMES}
        self.feature_names = tuple(feature_names)
        self._check()
        self._args = tuple(self.arrays[name] for name in ARRAY_NAMES)
        _score(np.zeros(len(self.feature_names)), *self._args)  # compile before serving

    @classmethod
    def from_estimator(cls, estimator: Any, feature_names: Sequence[str]) -> CompiledForest:
        """From a fitted RandomForestClassifier / ExtraTreesClassifier (classes 0 and 1)."""
        if list(getattr(estimator, "classes_", [])) != [0, 1]:
            raise ArtifactError("the forest must be a binary classifier with classes 0 and 1")
        roots, left, right, feature, threshold, leaf_value = [], [], [], [], [], []
        offset = 0
        for tree in (member.tree_ for member in estimator.estimators_):
            counts = tree.value[:, 0, :]
            share = counts[:, 1] / np.maximum(counts.sum(axis=1), 1e-300)
            is_leaf = tree.children_left == -1
            roots.append(offset)
            left.append(np.where(is_leaf, -1, tree.children_left + offset))
            right.append(np.where(is_leaf, -1, tree.children_right + offset))
            feature.append(np.where(is_leaf, 0, tree.feature))
            threshold.append(tree.threshold)
            leaf_value.append(share)
            offset += tree.node_count
        arrays = {
            "roots": np.array(roots, dtype=np.int64),
            "left": np.concatenate(left).astype(np.int64),
            "right": np.concatenate(right).astype(np.int64),
            "feature": np.concatenate(feature).astype(np.int64),
            "threshold": np.concatenate(threshold).astype(np.float64),
            "leaf_value": np.concatenate(leaf_value).astype(np.float64),
        }
        return cls(arrays, feature_names)

    def _check(self) -> None:
        a = self.arrays
        nodes = len(a["left"])
        if (
            not (
                len(a["right"])
                == len(a["feature"])
                == len(a["threshold"])
                == len(a["leaf_value"])
                == nodes
            )
            or len(a["roots"]) == 0
        ):
            raise ArtifactError("forest arrays have inconsistent lengths")
        inner = a["left"] != -1
        for name in ("left", "right"):
            targets = a[name][inner]
            if targets.size and (targets.min() < 0 or targets.max() >= nodes):
                raise ArtifactError(f"forest array {name!r} points outside the trees")
        if a["roots"].min() < 0 or a["roots"].max() >= nodes:
            raise ArtifactError("forest roots point outside the trees")
        if inner.any() and (
            a["feature"][inner].max() >= len(self.feature_names) or a["feature"][inner].min() < 0
        ):
            raise ArtifactError("forest splits on a feature it does not name")
        if not np.all(np.isfinite(a["leaf_value"])):
            raise ArtifactError("forest leaf values are not finite")
        # Every inner node must point forward, or a malformed file could loop forever.
        ids = np.arange(nodes)
        if np.any(a["left"][inner] <= ids[inner]) or np.any(a["right"][inner] <= ids[inner]):
            raise ArtifactError("forest arrays do not form trees")

    def score_row(self, row: Sequence[float]) -> float:
        # scikit-learn compares float32 inputs with its thresholds: do the same.
        x = np.asarray(row, dtype=np.float32).astype(np.float64)
        return float(_score(x, *self._args))

    def score_one(self, x: Mapping[str, float]) -> float:
        return self.score_row([x[name] for name in self.feature_names])

    def learn_one(self, x: Mapping[str, float], y: bool | None = None) -> None:
        """A batch model: it learns when re-trained offline, not from single events."""
