"""A fitted scikit-learn forest as flat arrays, scored one event in microseconds.

scikit-learn's ``predict_proba`` costs milliseconds for one row (input validation, thread
dispatch); the stream scores one transaction at a time. The trees are copied into flat
arrays once and walked by a numba-compiled loop: the same splits and leaf values, so the
same scores (``tests`` compare them with ``predict_proba``). Arrays also make the artifact
format safe: an ``.npz`` of numbers loads without unpickling code.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numba import njit

from models.exceptions import ArtifactError

ARRAY_NAMES = ("roots", "left", "right", "feature", "threshold", "leaf_value")


#: One tree node in 16 bytes, so a step of the walk touches one cache line: the children
#: (``left`` is -1 at a leaf), the feature, and the threshold as float32 (see ``_packed``).
NODE_DTYPE = np.dtype(
    [("left", np.int32), ("right", np.int32), ("feature", np.int32), ("threshold", np.float32)]
)


@njit(cache=True, nogil=True)
def _score(x, roots, nodes, leaf_value):  # type: ignore[no-untyped-def]
    """The mean leaf value over trees; ``x`` is float32, as scikit-learn compares it."""
    total = 0.0
    for tree in range(roots.shape[0]):
        node = roots[tree]
        while nodes[node].left != -1:
            if x[nodes[node].feature] <= nodes[node].threshold:
                node = nodes[node].left
            else:
                node = nodes[node].right
        total += leaf_value[node]
    return total / roots.shape[0]


def _packed(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """The node arrays interleaved into ``NODE_DTYPE`` records.

    scikit-learn casts inputs to float32 and tests ``x <= threshold`` with a float64
    threshold. For a float32 ``x`` that holds exactly when ``x <= t32``, where ``t32`` is
    the largest float32 not above the threshold: so thresholds are rounded down, never to
    nearest, and the walk in float32 takes the same branch as scikit-learn's.
    """
    threshold = np.asarray(arrays["threshold"], dtype=np.float64)
    down = threshold.astype(np.float32)
    above = down.astype(np.float64) > threshold
    down[above] = np.nextafter(down[above], np.float32(-np.inf))
    nodes = np.empty(len(threshold), dtype=NODE_DTYPE)
    nodes["left"] = arrays["left"]
    nodes["right"] = arrays["right"]
    nodes["feature"] = arrays["feature"]
    nodes["threshold"] = down
    return nodes


class CompiledForest:
    """Scores in [0, 1]: the mean over trees of the fraud share at the leaf reached."""

    def __init__(self, arrays: Mapping[str, np.ndarray], feature_names: Sequence[str]) -> None:
        missing = [name for name in ARRAY_NAMES if name not in arrays]
        if missing:
            raise ArtifactError(f"forest arrays lack {missing}")
        self.arrays = {name: np.ascontiguousarray(arrays[name]) for name in ARRAY_NAMES}
        self.feature_names = tuple(feature_names)
        self._check()
        self._roots = self.arrays["roots"]
        self._nodes = _packed(self.arrays)
        self._leaf_value = self.arrays["leaf_value"].astype(np.float64)
        self._row_of = operator.itemgetter(*self.feature_names)
        self.score_row([0.0] * len(self.feature_names))  # compile before serving

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
        if nodes >= 2**31:
            raise ArtifactError("forest has more nodes than the packed walk indexes (2**31)")
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
        x = np.array(row, dtype=np.float32)
        if x.shape != (len(self.feature_names),):
            raise ValueError(f"a row of {len(self.feature_names)} features, not {x.shape}")
        return float(_score(x, self._roots, self._nodes, self._leaf_value))

    def score_one(self, x: Mapping[str, float]) -> float:
        # One C call gathers the row in the forest's feature order.
        row = self._row_of(x) if len(self.feature_names) > 1 else (x[self.feature_names[0]],)
        return float(
            _score(np.array(row, dtype=np.float32), self._roots, self._nodes, self._leaf_value)
        )

    def learn_one(self, x: Mapping[str, float], y: bool | None = None) -> None:
        """A batch model: it learns when re-trained offline, not from single events."""
