"""Search spaces declared three ways (module, YAML space file, reference experiment file)
resolve to the same plain data; values are checked; --set; nothing is ever evaluated."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml

from tune_selcopy import run, train
from tune_selcopy.errors import UserError
from tune_selcopy.sweeps import folder as sweep_folder
from tune_selcopy.sweeps.space_sources import load_space
from tune_selcopy.sweeps.spaces import ResolvedSpace, coerce, parse_sets

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "search_spaces" / "reference"


def trial_multiset(space: ResolvedSpace) -> Counter:
    return Counter(json.dumps(trial, sort_keys=True) for trial in space.trials())


@pytest.mark.parametrize("name", ["attn_invent", "attn_act"])
def test_reference_fixture_resolves_to_the_module(name):
    module = load_space(name).resolve()
    reference = load_space(str(REFERENCE / f"{name}.yml")).resolve()
    assert trial_multiset(reference) == trial_multiset(module)
    assert len(reference.trials()) == {"attn_invent": 160, "attn_act": 10}[name]
    # The same table columns, in the same order, and the same keys for the wiring guard.
    assert reference.columns == module.columns
    assert reference.varied_keys == module.varied_keys
    assert [reference.setting_label(s) for s in reference.settings] == [
        module.setting_label(s) for s in reference.settings
    ]


def test_attn_invent_fixture_drops_the_combinations_its_filter_would():
    """4 attn x 4 qkv x 3 dil = 48 combinations; only dil 3,5,1 fits l=3: 32 dropped."""
    notes = load_space(str(REFERENCE / "attn_invent.yml")).resolve().notes
    dropped = [n for n in notes if n.startswith("dropped")]
    assert dropped == [
        "dropped 32 of 48 combinations whose config is invalid: "
        "16 x invalid model config: dilation has 4 entries for 3 layers; "
        "16 x invalid model config: dilation has 6 entries for 3 layers"
    ]
    assert "dilation is 3,5,1 in every setting left, so it is not a column" in notes
    assert any(n.startswith("ignored (code strings") and "model" in n and "train_set" in n for n in notes)


def reference_file(tmp_path: Path, edit=None) -> str:
    data = yaml.safe_load((REFERENCE / "attn_act.yml").read_text())
    if edit:
        edit(data)
    path = tmp_path / "exp.yml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def test_filter_and_code_strings_are_never_evaluated(tmp_path):
    marker = tmp_path / "evaluated"
    effect = f"__import__('pathlib').Path({str(marker)!r}).touch()"

    def edit(data):
        data["matrix"]["$filter"] = f"{effect} or True"
        data["model"] = data["train_set"] = data["trainer"] = effect

    resolved = load_space(reference_file(tmp_path, edit)).resolve()
    assert len(resolved.settings) == 2
    assert not marker.exists()


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["matrix"].update(posemb=[1]),
         "matrix key 'posemb': 1 cannot be honoured: the model has no position embedding"),
        (lambda d: d["matrix"].update(opt=["SGD"]), "matrix key 'opt': 'SGD' cannot be honoured: training uses AdamW"),
        (lambda d: d["matrix"].update(norm=["batch"]), "matrix key 'norm' is not one of the published short names"),
        (lambda d: d["matrix"].update(act=["tanh"]), "matrix key 'act': 'tanh' cannot be used"),
        (lambda d: d["matrix"].update(ch=64), "matrix key 'ch': expected a non-empty list of values, got 64"),
        (lambda d: d["matrix"].update(trial=[3, 4]), "matrix key 'trial' must list the seeds 1..N"),
        (lambda d: d.update(batch_size=32), "batch_size: 32 would leave matrix key 'bs' reaching nothing"),
        (lambda d: d.update(learnrate="${ch}"), "learnrate: ${ch} cannot be used here: it takes ${lr} or a value"),
        (lambda d: d.update(scheduler="StepLR"), "scheduler: 'StepLR' cannot be honoured"),
    ],
)
def test_reference_values_that_cannot_be_honoured(tmp_path, edit, message):
    path = reference_file(tmp_path, edit)
    with pytest.raises(UserError) as info:
        load_space(path).resolve()
    assert str(info.value).startswith(f"space file {path}: {message}")
    assert "\n" not in str(info.value)


def test_reference_varied_layers_and_one_value_for_every_layer(tmp_path):
    """Varying l keeps the per-layer lists that fit; ``dil: 1`` is dilation 1 in every layer."""

    def edit(data):
        data["matrix"].update(
            l=[3, 4], dil=[[3, 5, 1], [1, 3, 5, 1]], attn=[[0, 0, True], [0, 0, 0, True]], attnact=["elu+1"]
        )

    resolved = load_space(reference_file(tmp_path, edit)).resolve()
    assert {(s["num_layers"], s["dilation"], s["attn"]) for s in resolved.settings} == {
        (3, "3,5,1", "0,0,T"), (4, "1,3,5,1", "0,0,0,T")
    }
    assert resolved.columns == ["num_layers", "dilation", "qkv", "attn", "attnact"]
    one_value = load_space(reference_file(tmp_path, lambda d: d["matrix"].update(dil=[[3, 5, 1], 2]))).resolve()
    assert {s["dilation"] for s in one_value.settings} == {"3,5,1", "2,2,2"}
    with pytest.raises(UserError, match="matrix key 'dil': 2 for every layer needs a single value of l"):
        load_space(reference_file(tmp_path, lambda d: d["matrix"].update(l=[3, 4], dil=[2])))


def test_yaml_space_file_example():
    resolved = load_space(str(ROOT / "search_spaces" / "attn_invent_small.yaml")).resolve()
    assert resolved.columns == ["attn", "qkv"] and resolved.seeds == 3
    assert len(resolved.settings) == 10  # 3 x 4 less the two excluded pairs
    assert ("0,0,T", "QV") not in {(s["attn"], s["qkv"]) for s in resolved.settings}
    assert {s["channels"] for s in resolved.settings} == {32}
    assert resolved.notes == ["excluded 2 of 12 combinations"] and resolved.warnings == []


def test_exclude_matching_nothing_is_a_warning(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("seeds: 1\ngrid: {qkv: [QK, QKV]}\nexclude:\n  - {qkv: KV}\n")
    resolved = load_space(str(path)).resolve()
    assert resolved.name == "s" and len(resolved.settings) == 2
    assert resolved.warnings == [f"space file {path}: exclude entry 1 (qkv=KV) matches no combination"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("seeds: 1\ngrid:\n  qkv: [QK, QV\n  attnact: [dpfp]\n",
         "is not valid YAML: line 4, column 10: expected ',' or ']', but got ':'"),
        ("seeds: 1\ngrid: {qkv: [QK]}\nsteps: 3\n", "unknown key steps; known: name, description, seeds, grid"),
        ("seeds: 1\ngrid: {qkv: QK}\n", "grid qkv: expected a non-empty list of values, got 'QK'"),
        ("seeds: 1\ngrid: {chanels: [32]}\n", "grid chanels: not a trial-config key a space can set"),
        ("seeds: 1\ngrid: {channels: [32, 3.5]}\n", "grid channels: 3.5 is not an integer"),
        ("seeds: 1\ngrid: {qkv: [QK]}\nfixed: {num_layers: 4}\n", "no setting left to run: dropped 1 of 1"),
        ("seeds: 0\ngrid: {qkv: [QK]}\n", "seeds must be an integer >= 1, got 0"),
        ("seeds: 1\ngrid: {qkv: [QK]}\nexclude: [{attn: '0,0,T'}]\n", "exclude entry 1: attn not a grid key"),
    ],
)
def test_space_file_errors(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        load_space(str(path)).resolve()
    assert message in str(info.value) and str(info.value).startswith(f"space file {path}")
    assert "\n" not in str(info.value)


def test_missing_space_file(tmp_path):
    with pytest.raises(UserError, match=r"^space file .*/nope.yaml does not exist$"):
        load_space(str(tmp_path / "nope.yaml"))


def test_values_are_typed_and_checked_on_their_own():
    assert coerce("lr", "5e-4") == 5e-4  # YAML 1.1 reads 5e-4 as a string
    assert coerce("attn", [0, 0, True]) == "0,0,T" and coerce("attn", [0, 0, 1]) == "0,0,1"
    assert coerce("dilation", [1, 3, 5, 1]) == "1,3,5,1"  # judged with 4 layers, not the default 3
    assert coerce("num_operations", 2) == "2,2"
    for key, value, message in [
        ("channels", True, "channels: True is not an integer"),
        ("channels", 32.5, "channels: 32.5 is not an integer"),
        ("qkv", "XY", "qkv: 'XY' cannot be used: invalid model config: unknown invention 'XY'"),
        ("seed", 1, "seed: not a trial-config key a space can set"),
    ]:
        with pytest.raises(UserError, match=f"^{message}".replace("(", r"\(")):
            coerce(key, value)


def test_set_replaces_fixed_values_only():
    assert parse_sets(["channels=32", "dilation=1,2,3", "lr=1e-3"]) == {
        "channels": 32, "dilation": "1,2,3", "lr": 1e-3
    }
    space = load_space("attn_act")
    resolved = space.resolve(parse_sets(["channels=32", "dilation=1,2,3"]))
    assert {(s["channels"], s["dilation"]) for s in resolved.settings} == {(32, "1,2,3")}
    with pytest.raises(UserError, match=r"^space attn_act: attnact: a grid key cannot be set; settable: num_layers"):
        space.resolve(parse_sets(["attnact=dpfp"]))
    with pytest.raises(UserError, match=r"^--set channels: 'many' is not an integer$"):
        parse_sets(["channels=many"])
    with pytest.raises(UserError, match=r"^--set chanels: not a trial-config key a space can set; those are: attn"):
        parse_sets(["chanels=32"])
    with pytest.raises(UserError, match=r"^--set 'channels': use KEY=VALUE"):
        parse_sets(["channels"])


def test_resolved_space_is_plain_data():
    resolved = load_space(str(REFERENCE / "attn_invent.yml")).resolve({"max_inputs": 640}, seeds=2)
    again = ResolvedSpace.from_data(json.loads(json.dumps(resolved.to_data())))
    assert again == resolved and len(again.trials()) == 32
    with pytest.raises(UserError, match="^not a saved search space"):
        ResolvedSpace.from_data({"name": "x"})


# --- the command line: one-line errors, exit 2 ---------------------------------------------


def cli(capsys, *args: str) -> tuple[int, str, str]:
    rc = run.main([*args, "--dry-run"])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize(
    "text, message",
    [
        ("seeds: 1\ngrid:\n  qkv: [QK, QV\n  attnact: [dpfp]\n", "is not valid YAML: line 4, column 10"),
        ("seeds: 1\ngrid: {qkv: [QK]}\nsteps: 3\n", "unknown key steps"),
        ("seeds: 1\ngrid: {qkv: QK}\n", "grid qkv: expected a non-empty list of values"),
        (None, "does not exist"),
    ],
)
def test_space_file_errors_on_the_command_line(capsys, tmp_path, text, message):
    path = tmp_path / "space.yaml"
    if text is not None:
        path.write_text(text)
    rc, out, err = cli(capsys, str(path))
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"error: space file {path}") and message in err


def test_exclude_matching_nothing_warns_on_the_command_line(capsys, tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("seeds: 2\ngrid: {qkv: [QK, QKV]}\nexclude: [{qkv: KV}]\n")
    rc, out, err = cli(capsys, str(path))
    assert rc == 0 and "2 settings, 4 trials" in out
    assert err == f"warning: space file {path}: exclude entry 1 (qkv=KV) matches no combination\n"


@pytest.mark.parametrize(
    "sets, message",
    [
        (["attnact=dpfp"], "error: space attn_act: attnact: a grid key cannot be set; settable: num_layers, channels"),
        (["chanels=32"], "error: --set chanels: not a trial-config key a space can set; those are: attn, qkv"),
        (["channels=3.5"], "error: --set channels: '3.5' is not an integer"),
        (["max_inputs=640"], "error: max_inputs given both by --set and by its own flag"),
    ],
)
def test_set_errors_on_the_command_line(capsys, sets, message):
    rc, out, err = cli(capsys, "attn_act", *(a for s in sets for a in ("--set", s)), "--max-inputs", "640")
    assert rc == 2 and out == "" and err.count("\n") == 1 and err.startswith(message)


def test_dry_run_of_a_reference_file_says_what_it_dropped_and_ignored(capsys):
    rc, out, err = cli(capsys, str(REFERENCE / "attn_invent.yml"), "--set", "channels=32")
    assert rc == 0 and err == ""
    assert "note: dropped 32 of 48 combinations whose config is invalid" in out
    assert "note: ignored (code strings and settings this tool does not read): experiment_name, trainer" in out
    assert "16 settings, 160 trials" in out and "model params    61,568  x 10 seeds" in out


def test_train_takes_set(capsys):
    args = ["--set", "channels=32", "--set", "num_validations=1", "--max-inputs", "64", "--val-count", "16"]
    assert train.main(args) == 0
    out = capsys.readouterr().out
    assert " channels=32 " in out and "model params 61,568" in out
    assert train.main(["--set", "channels=x"]) == 2
    assert capsys.readouterr().err == "error: --set channels: 'x' is not an integer\n"


def test_resume_takes_only_set_values_the_sweep_has(tmp_path, capsys):
    """--resume runs the saved space: a --set given again must match every saved setting."""
    saved = load_space("attn_act").resolve({"channels": 32})
    sweep_folder.claim_sweep(sweep_folder.SweepSettings(
        space="attn_act", name="s", storage=str(tmp_path), trials=None, max_inputs=None, val_count=None,
        cpus_per_trial=1.0, gpus_per_trial=0.0, max_concurrent=None, resolved_space=saved.to_data(),
    ))
    resume = ["--resume", "--name", "s", "--storage", str(tmp_path), "--local-cpus", "2"]
    assert run.main([*resume, "--set", "channels=16"]) == 2
    assert "contradict: --set channels=16 (the sweep has 32)" in capsys.readouterr().err
    assert run.main([*resume, "--set", "channels=32"]) == 2  # accepted; then no Ray state to resume
    assert "nothing to resume at" in capsys.readouterr().err
