"""The wiring guard checks every space that can run: where the sweep has no two settings
that differ only in a key, it builds the pair itself; it refuses only a key that no valid
pair can isolate, and says why."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest

from tune_selcopy import run
from tune_selcopy.errors import UserError
from tune_selcopy.science.trial import TrialConfig
from tune_selcopy.sweeps.space_sources import load_space
from tune_selcopy.sweeps.wiring import _built_pair, check_wiring

# two settings picked by hand: attn and qkv both vary, but never one without the other
DIAGONAL = """\
name: diagonal
seeds: 1
grid:
  attn: ["0,0,4", "0,0,8"]
  qkv: [QV, KV]
exclude:
  - {attn: "0,0,4", qkv: KV}
  - {attn: "0,0,8", qkv: QV}
"""
# the number of layers and the per-layer settings can only change together
LAYERS_WITH_DILATIONS = """\
name: layers
seeds: 1
grid:
  num_layers: [3, 4]
  dilation: [[3, 5, 1], [1, 3, 5, 1]]
  attn: ["0,0,T", "0,0,0,T"]
"""


def resolved(tmp_path: Path, text: str):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return load_space(str(path)).resolve({"max_inputs": 1280, "val_count": 64})


def test_a_diagonal_space_is_checked_with_pairs_the_guard_builds(tmp_path):
    space = resolved(tmp_path, DIAGONAL)
    assert [(s["attn"], s["qkv"]) for s in space.settings] == [("0,0,4", "QV"), ("0,0,8", "KV")]
    assert space.varied_keys == ["attn", "qkv"]
    # attn: the first setting, and it again with only attn changed
    pair = _built_pair(space.settings, "attn")
    assert [(s["attn"], s["qkv"]) for s in pair.values()] == [("0,0,4", "QV"), ("0,0,8", "QV")]
    assert [(s["attn"], s["qkv"]) for s in _built_pair(space.settings, "qkv").values()] == [
        ("0,0,4", "QV"), ("0,0,4", "KV")]
    check_wiring(space.settings, space.varied_keys)  # every key reaches the model: no error


def test_a_built_pair_still_catches_a_key_that_reaches_nothing(tmp_path, monkeypatch):
    space = resolved(tmp_path, DIAGONAL)
    original = TrialConfig.model_config
    monkeypatch.setattr(TrialConfig, "model_config",
                        lambda self: dataclasses.replace(original(self), invention="QV"))
    with pytest.raises(UserError, match=r"miswired search space: key 'qkv' changes nothing \(qkv=QV and qkv=KV"):
        check_wiring(space.settings, space.varied_keys)


def test_a_key_no_valid_pair_can_isolate_is_refused_with_the_reason(tmp_path):
    space = resolved(tmp_path, LAYERS_WITH_DILATIONS)
    assert [(s["num_layers"], s["dilation"], s["attn"]) for s in space.settings] == [
        (3, "3,5,1", "0,0,T"), (4, "1,3,5,1", "0,0,0,T")]
    with pytest.raises(UserError) as exc:
        check_wiring(space.settings, space.varied_keys)
    assert str(exc.value) == (
        "search-space key 'num_layers' cannot be checked: no two settings differ only in it, and changing only "
        "num_layers in any setting makes an invalid config (num_layers=4 instead of 3: invalid model config: "
        "dilation has 3 entries for 4 layers; attention has 3 entries for 4 layers; num_layers=3 instead of 4: "
        "invalid model config: dilation has 4 entries for 3 layers; attention has 4 entries for 3 layers), so no "
        "pair of trials can show that it reaches the model"
    )


def test_the_diagonal_space_runs(tmp_path, capsys):
    """The space that used to end in 'no two settings differ only in it, so it cannot be
    checked' is guarded and swept."""
    space = tmp_path / "diagonal.yaml"
    space.write_text(DIAGONAL)
    store = tmp_path / "store"
    rc = run.main([str(space), "--max-inputs", "1280", "--val-count", "64", "--storage", str(store), "--name", "d"])
    out, err = capsys.readouterr()
    assert rc == 0, err[-3000:]
    df = pd.read_parquet(store / "d" / "logs")
    assert sorted(df.groupby("trial_id")["setting"].first()) == ["attn=0,0,4 qkv=QV", "attn=0,0,8 qkv=KV"]
    assert "cannot be checked" not in out + err
