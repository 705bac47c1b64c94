"""`walletpipe demo --train-model` serves a registry champion: trained once on simulated
history when the registry has none, reused by later demos; without one the online scorer
decides."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from models.registry import Registry
from walletpipe.cli import _ensure_champion


def test_the_demo_trains_a_champion_once_and_reuses_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"STREAMS_MODELS_DIR": str(tmp_path / "models")}
    args = argparse.Namespace(users=60, merchants=6, seed=7)
    _ensure_champion(env, args, train=False)
    assert "the online scorer decides" in capsys.readouterr().out
    assert Registry(tmp_path / "models").champion_version("fraud") is None
    _ensure_champion(env, args)
    registry = Registry(tmp_path / "models")
    assert registry.champion_version("fraud") == 1
    champion = registry.champion("fraud")  # loads: checksum, features of this build
    assert champion.metadata["training_window"]["label_delay_days"] == 7
    _ensure_champion(env, args, train=False)  # a champion there decides, trained or not
    _ensure_champion(env, args)
    assert registry.versions("fraud") == [1]  # not trained again
    assert capsys.readouterr().out.count("fraud v1 (the registry's champion) decides") == 3
