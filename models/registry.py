"""Versioned model artifacts on disk: one champion, any number of challengers.

Layout: ``<root>/<name>/v<N>/forest.npz`` (numbers only: loaded without unpickling) and
``metadata.json`` (features, training window, metrics, the file's sha256), plus
``<root>/<name>/CHAMPION`` and ``CHALLENGERS`` naming versions. A malformed artifact is
refused with ``ArtifactError`` and whatever was serving keeps serving.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from models.exceptions import ArtifactError
from models.features import FEATURE_NAMES
from models.forest import ARRAY_NAMES, CompiledForest

FORMAT = "compiled-forest/1"
ARTIFACT_BYTES_MAX = 512 * 1024 * 1024


@dataclass(frozen=True)
class Artifact:
    name: str
    version: int
    metadata: dict[str, Any]
    model: CompiledForest


class Registry:
    def __init__(self, root: Path) -> None:
        self.root = root

    def versions(self, name: str) -> list[int]:
        folder = self.root / name
        if not folder.is_dir():
            return []
        return sorted(
            int(p.name[1:])
            for p in folder.iterdir()
            if p.is_dir() and p.name[:1] == "v" and p.name[1:].isdigit()
        )

    def save(self, name: str, model: CompiledForest, metadata: dict[str, Any]) -> Artifact:
        version = (self.versions(name) or [0])[-1] + 1
        folder = self.root / name / f"v{version}"
        folder.mkdir(parents=True)
        forest_path = folder / "forest.npz"
        np.savez_compressed(forest_path, **model.arrays)
        full = {
            **metadata,
            "name": name,
            "version": version,
            "format": FORMAT,
            "features": list(model.feature_names),
            "created_at": datetime.now(UTC).isoformat(),
            "sha256": _sha256(forest_path),
        }
        (folder / "metadata.json").write_text(json.dumps(full, indent=2, default=str))
        if self.champion_version(name) is None:
            self.promote(name, version)
        return Artifact(name, version, full, model)

    def load(self, name: str, version: int) -> Artifact:
        folder = self.root / name / f"v{version}"
        if not folder.is_dir():
            raise ArtifactError(f"model {name!r} has no version v{version} in {self.root}")
        try:
            metadata = json.loads((folder / "metadata.json").read_text())
        except (OSError, ValueError) as error:
            raise ArtifactError(f"{folder}: metadata.json unreadable: {error}") from None
        if metadata.get("format") != FORMAT:
            raise ArtifactError(f"{folder}: format {metadata.get('format')!r}, expected {FORMAT}")
        forest_path = folder / "forest.npz"
        if not forest_path.exists() or forest_path.stat().st_size > ARTIFACT_BYTES_MAX:
            raise ArtifactError(f"{forest_path}: missing or larger than {ARTIFACT_BYTES_MAX} B")
        if _sha256(forest_path) != metadata.get("sha256"):
            raise ArtifactError(f"{forest_path}: sha256 does not match metadata.json")
        if tuple(metadata.get("features", ())) != FEATURE_NAMES:
            raise ArtifactError(
                f"{folder}: trained on features {metadata.get('features')}, "
                f"this build computes {list(FEATURE_NAMES)}: re-train it"
            )
        try:
            with np.load(forest_path, allow_pickle=False) as arrays:
                model = CompiledForest(
                    {k: arrays[k] for k in ARRAY_NAMES if k in arrays}, FEATURE_NAMES
                )
        except (OSError, ValueError, KeyError) as error:
            raise ArtifactError(f"{forest_path}: not a forest archive: {error}") from None
        return Artifact(name, version, metadata, model)

    def champion_version(self, name: str) -> int | None:
        pointer = self.root / name / "CHAMPION"
        text = pointer.read_text().strip() if pointer.exists() else ""
        return int(text[1:]) if text[:1] == "v" and text[1:].isdigit() else None

    def champion(self, name: str) -> Artifact:
        version = self.champion_version(name)
        if version is None:
            raise ArtifactError(f"no champion for model {name!r} in {self.root}")
        return self.load(name, version)

    def challengers(self, name: str) -> list[int]:
        path = self.root / name / "CHALLENGERS"
        if not path.exists():
            return []
        return [int(line[1:]) for line in path.read_text().split() if line[1:].isdigit()]

    def promote(self, name: str, version: int) -> None:
        """Make ``version`` the champion, after checking that it loads."""
        self.load(name, version)
        _write_atomically(self.root / name / "CHAMPION", f"v{version}\n")
        self.set_challengers(name, [v for v in self.challengers(name) if v != version])

    def set_challengers(self, name: str, versions: list[int]) -> None:
        """Score ``versions`` in shadow beside the champion (which cannot be one of them)."""
        champion = self.champion_version(name)
        for version in versions:
            if version == champion:
                raise ArtifactError(f"{name} v{version} is the champion, not a challenger")
            self.load(name, version)
        _write_atomically(self.root / name / "CHALLENGERS", "".join(f"v{v}\n" for v in versions))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
