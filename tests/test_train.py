"""Training (docs/science.md, "Training"): metrics, learning-rate schedule, a short real run,
reproducibility, checkpoint/resume and the command line. All on 1 CPU thread."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import tune_selcopy.science.trial as trial_module
from test_data import batches
from tune_selcopy.errors import UserError
from tune_selcopy.science.task import SwapStream, validation_texts
from tune_selcopy.science.trial import (
    CHECKPOINT_FILE,
    DEFAULT_TF32,
    STAT_FIELDS,
    TF32_MODES,
    Trial,
    TrialConfig,
    batch_stats,
    lr_factor,
    metrics_from_stats,
    run_environment,
    set_tf32,
    tf32_flags,
)

ROOT = Path(__file__).resolve().parents[1]
TIMING_KEYS = {"train_time_s", "throughput"}
SMALL = TrialConfig(max_inputs=3000, num_validations=5, val_count=200)  # 5 epochs of 600 inputs
CLI_ARGS = ["--max-inputs", "5000", "--val-count", "200", "--threads", "1"]


def without_timing(row: dict) -> dict:
    return {k: v for k, v in row.items() if k not in TIMING_KEYS}


def run_cli(*args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "tune_selcopy.train", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout,
    )


# --- metrics ---------------------------------------------------------------------------


def hand_made_batch():
    """2 samples x 4 positions, vocabulary 3. Predictions are wrong at (0, 1) and (0, 3);
    masked positions (input 0) are (0, 2), (0, 3) and (1, 3)."""
    torch.manual_seed(0)
    targets = torch.tensor([[1, 2, 1, 2], [2, 2, 1, 1]])
    predicted = torch.tensor([[1, 0, 1, 0], [2, 2, 1, 1]])
    inputs = torch.tensor([[65, 66, 0, 0], [65, 66, 67, 0]])
    logits = 0.3 * torch.randn(2, 4, 3) + 4.0 * F.one_hot(predicted, 3)
    return logits, targets, inputs


def test_batch_stats_and_metrics_on_known_answers():
    logits, targets, inputs = hand_made_batch()
    stats = dict(zip(STAT_FIELDS, batch_stats(logits, targets, inputs).tolist()))
    assert stats["positions"] == 8 and stats["wrong"] == 2
    assert stats["masked"] == 3 and stats["masked_wrong"] == 1
    assert stats["samples"] == 2 and stats["samples_wrong"] == 1
    metrics = metrics_from_stats(stats, "validation")
    assert set(metrics) == {"validation_loss", "validation_error%", "validation_mask_error%", "validation_sample_error%"}
    assert metrics["validation_error%"] == 25.0
    assert metrics["validation_mask_error%"] == pytest.approx(100 / 3)
    assert metrics["validation_sample_error%"] == 50.0
    expected_loss = F.cross_entropy(logits.reshape(8, 3), targets.reshape(8)).item()  # over all positions
    assert metrics["validation_loss"] == pytest.approx(expected_loss, rel=1e-6)


def test_metrics_sum_over_batches_to_the_whole_set_mean():
    logits, targets, inputs = hand_made_batch()
    perfect = 8.0 * F.one_hot(targets, 3).float()
    both = batch_stats(logits, targets, inputs) + batch_stats(perfect, targets, inputs)
    metrics = metrics_from_stats(dict(zip(STAT_FIELDS, both.tolist())), "train")
    assert metrics["train_error%"] == 12.5 and metrics["train_sample_error%"] == 25.0
    assert metrics["train_mask_error%"] == pytest.approx(100 / 6)
    whole = F.cross_entropy(torch.cat([logits, perfect]).reshape(16, 3), torch.cat([targets, targets]).reshape(16))
    assert metrics["train_loss"] == pytest.approx(whole.item(), rel=1e-6)
    # no masked position at all: mask error 0, not a division by zero
    no_mask = metrics_from_stats(dict(zip(STAT_FIELDS, batch_stats(perfect, targets, targets + 1).tolist())), "x")
    assert no_mask["x_mask_error%"] == 0.0 and no_mask["x_loss"] < 1e-3


# --- learning-rate schedule ------------------------------------------------------------------


def test_lr_factor_is_plain_cosine_from_1_to_0():
    total = 15_625
    assert lr_factor(0, total) == 1.0
    assert lr_factor(total // 2, total) == pytest.approx(0.5 * (1 + math.cos(math.pi * (total // 2) / total)))
    assert lr_factor(total, total) == pytest.approx(0.0, abs=1e-15)
    assert lr_factor(total + 5, total) == pytest.approx(0.0, abs=1e-15)  # stays at 0, no restart
    values = [lr_factor(s, total) for s in range(0, total + 1, 25)]
    assert all(a >= b for a, b in zip(values, values[1:]))
    for step in (1, 1000, 2000, 7000, 15_000):
        assert lr_factor(step, total) == pytest.approx(0.5 * (1 + math.cos(math.pi * step / total)))
    # an explicit warm-up multiplies linearly; without one step 0 is the full rate
    assert lr_factor(0, total, 10) == pytest.approx(0.1)
    assert lr_factor(9, total, 10) == pytest.approx(lr_factor(9, total))


def test_trial_schedule_has_no_warmup_by_default():
    assert TrialConfig().warmup_steps == 0
    trial = Trial(TrialConfig(max_inputs=6400, val_count=10), threads=1)
    assert trial.optimizer.param_groups[0]["lr"] == 5e-4
    assert trial.optimizer.defaults["weight_decay"] == 0.01
    assert trial.optimizer.defaults["betas"] == (0.9, 0.999)
    warm = Trial(TrialConfig(max_inputs=6400, val_count=10, warmup_steps=10), threads=1)
    assert warm.optimizer.param_groups[0]["lr"] == pytest.approx(5e-5)


# --- a short real run -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def short_run():
    torch.set_num_threads(1)
    trial = Trial(TrialConfig(max_inputs=20_000, val_count=500, seed=1), threads=1)
    trial.run()
    return trial


def test_short_run_learns(short_run):
    (rows,) = short_run.history  # one seed
    assert len(rows) == 10
    assert [r["validation_index"] for r in rows] == list(range(1, 11))
    assert [r["num_inputs"] for r in rows] == [2000 * i for i in range(1, 11)]
    assert rows[-1]["step"] == 10 * 32  # 31 batches of 64 and one of 16 per epoch
    first, last = rows[0], rows[-1]
    assert last["validation_loss"] < 0.8 * first["validation_loss"], (first, last)
    assert last["validation_error%"] < first["validation_error%"]
    assert last["train_loss"] < first["train_loss"]
    assert last["model_params"] == 229_632
    assert last["throughput"] == pytest.approx(20_000 / last["train_time_s"])
    for row in rows:
        assert row["learning_rate"] == pytest.approx(5e-4 * lr_factor(row["step"], 20_000 // 64), abs=1e-15)
        for key in ("loss", "error%", "mask_error%", "sample_error%"):
            assert math.isfinite(row[f"train_{key}"]) and math.isfinite(row[f"validation_{key}"])
        assert 0 <= row["validation_mask_error%"] <= 100
    assert last["learning_rate"] == 0.0  # cosine reached 0 at step 312


def test_validation_is_the_whole_validation_prefix(short_run):
    assert short_run.val_inputs.shape == (500, 23)
    assert int((short_run.val_inputs == 0).sum()) == 500 * 5  # 5 masked answer characters each
    (again,) = short_run.validate()
    last = short_run.history[0][-1]
    assert again == {k: v for k, v in last.items() if k.startswith("validation_") and k != "validation_index"}


@pytest.fixture(scope="module")
def small_reference():
    torch.set_num_threads(1)
    trial = Trial(SMALL, threads=1)
    trial.run()
    return trial.history[0]


def test_same_seed_gives_identical_metrics(small_reference):
    again = Trial(SMALL, threads=1)
    again.run()
    assert [without_timing(r) for r in again.history[0]] == [without_timing(r) for r in small_reference]
    (other,) = Trial(TrialConfig(**{**SMALL.__dict__, "seed": 2}), threads=1).run()
    assert other["validation_loss"] != small_reference[-1]["validation_loss"]


@pytest.mark.parametrize("stop_after", [1, 3])
def test_save_load_resume_is_bit_identical(small_reference, tmp_path, stop_after):
    first = Trial(SMALL, threads=1)
    for (row,) in first.validations():
        if row["validation_index"] == stop_after:
            break
    first.save(tmp_path)
    assert (tmp_path / CHECKPOINT_FILE).exists() and Trial.has_checkpoint(tmp_path)
    del first
    second = Trial(SMALL, threads=1)
    second.load(tmp_path)
    assert second.validation_index == stop_after and len(second.history[0]) == stop_after
    (final,) = second.run()
    assert final == second.history[0][-1]
    # every row, the resumed ones and the ones from the checkpoint, equals the uninterrupted run
    assert [without_timing(r) for r in second.history[0]] == [without_timing(r) for r in small_reference]
    assert second.train_time_s >= second.history[0][stop_after - 1]["train_time_s"]


def test_cpu_trials_flush_subnormal_floats():
    """Subnormal floats made a trained model's CPU step ~7x slower (bench/denormals.py):
    a CPU trial turns flushing them to zero on for its process."""
    torch.set_flush_denormal(False)
    subnormal = torch.tensor([1e-39])
    assert (subnormal * 1.0).item() != 0.0
    Trial(SMALL, threads=1)
    assert (subnormal * 1.0).item() == 0.0


def test_load_rejects_other_config_and_broken_files(tmp_path):
    trial = Trial(SMALL, threads=1)
    trial.save(tmp_path)
    other = Trial(TrialConfig(**{**SMALL.__dict__, "lr": 1e-3}), threads=1)
    with pytest.raises(UserError, match="checkpoint belongs to another config"):
        other.load(tmp_path)
    other_seed = Trial(TrialConfig(**{**SMALL.__dict__, "seed": 9}), threads=1)
    with pytest.raises(UserError, match=r"checkpoint belongs to seeds \[1\], not \[9\]"):
        other_seed.load(tmp_path)
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read checkpoint"):
        trial.load(tmp_path)


def test_trial_config_errors():
    with pytest.raises(UserError, match="val_count 0 must be in 1..10000"):
        TrialConfig(val_count=0)
    with pytest.raises(UserError, match="unknown invention"):
        TrialConfig(qkv="XY")
    with pytest.raises(UserError, match="unknown trial config keys"):
        TrialConfig.from_dict({"nope": 1})
    config = TrialConfig.from_dict({"attn": "0,0,4", "dilation": "3,5,1", "num_operations": 3})
    assert config.attn == (0, 0, 4) and config.num_operations == (3, 3)
    assert config.flat()["attn"] == "0,0,4"


def test_configs_a_generator_could_never_fill_are_refused():
    """The generators draw until they have enough distinct questions: with too few in the
    space they would never stop (5 letters of 5, one swap: 5! x 20 = 2,400 questions)."""
    with pytest.raises(UserError, match="only 2,400 distinct training questions .* an epoch of 10,000"):
        TrialConfig(num_items=5, num_operations=(1, 1), max_inputs=100_000)
    with pytest.raises(UserError, match="only 2,400 distinct validation questions .* the validation set is 10,000"):
        TrialConfig(num_items=5, val_num_operations=1, max_inputs=1_000)
    TrialConfig(num_items=5, max_inputs=100_000)  # 5! x (20 + 400 + 8,000) = 1,010,400: room enough
    with pytest.raises(UserError, match="max_inputs 10 must be >= batch_size 64"):
        TrialConfig(max_inputs=10)  # the cosine spans max_inputs // batch_size steps: none


# --- command line -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_reference():
    out = run_cli(*CLI_ARGS)
    assert out.returncode == 0, out.stderr
    return out


def last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_cli_ends_with_a_json_line(cli_reference):
    result = last_json(cli_reference.stdout)
    for key in ("model_params", "throughput", "train_time_s", "validation_loss", "validation_error%",
                "validation_mask_error%", "validation_sample_error%", "train_loss"):
        assert key in result, key
    assert result["model_params"] == 229_632
    assert result["num_inputs"] == 5000 and result["validation_index"] == 10
    assert result["attn"] == "0,0,T" and result["qkv"] == "QK" and result["max_inputs"] == 5000
    assert result["throughput"] > 0 and result["train_time_s"] > 0
    progress = [line for line in cli_reference.stdout.splitlines() if line.startswith("[")]
    assert len(progress) == 10


def test_cli_cuda_on_cpu_machine_is_a_one_line_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = run_cli(*CLI_ARGS, "--device", "cuda")
    assert out.returncode != 0
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "cuda" in lines[0]


def test_cli_resumes_from_checkpoint_dir(cli_reference, tmp_path):
    # Train the CLI's config in-process up to validation 4 and leave the checkpoint ...
    config = TrialConfig(max_inputs=5000, val_count=200)
    trial = Trial(config, threads=1)
    for (row,) in trial.validations():
        if row["validation_index"] == 4:
            break
    trial.save(tmp_path)
    # ... then let the CLI finish it: same final metrics as the uninterrupted CLI run.
    out = run_cli(*CLI_ARGS, "--checkpoint-dir", str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert f"resumed from {tmp_path} after validation 4" in out.stdout
    assert len([line for line in out.stdout.splitlines() if line.startswith("[")]) == 6
    resumed, reference = last_json(out.stdout), last_json(cli_reference.stdout)
    assert without_timing(resumed) == without_timing(reference)
    # A finished checkpoint: nothing left to train, the same final line again.
    again = run_cli(*CLI_ARGS, "--checkpoint-dir", str(tmp_path))
    assert again.returncode == 0, again.stderr
    assert "after validation 10" in again.stdout
    assert without_timing(last_json(again.stdout)) == without_timing(reference)


def test_nan_loss_stops_with_a_clear_error():
    from tune_selcopy.science.trial import TrainingDiverged

    trial = Trial(TrialConfig(max_inputs=640, num_validations=2, val_count=50))
    with torch.no_grad():
        trial.net.module.embedding.weight.fill_(float("nan"))  # every logit, hence the loss, is NaN
    (row,) = next(trial.validations())  # the seed's last row says it diverged
    assert row["diverged"] and math.isnan(row["train_loss"]) and row["validation_index"] == 1
    assert trial.finished and trial.training == []
    assert trial.diverged[0].startswith("training diverged: train_loss is nan after 320 inputs")
    assert list(trial.validations()) == []  # nothing left to train
    assert issubclass(TrainingDiverged, UserError)  # the trainable raises it: one line, exit 2


def test_cli_reports_a_diverged_seed_as_one_error_line(tmp_path):
    # lr 1e6 makes the loss infinite within the first epoch
    out = run_cli("--max-inputs", "640", "--val-count", "50", "--threads", "1", "--set", "lr=1000000")
    assert out.returncode == 2, out.stdout
    assert not [line for line in out.stdout.splitlines() if line.startswith("{")]
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: training diverged: "), out.stderr


# --- GPU-ready: checkpoints, data stream and row columns on any device --------------------


@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter")
@pytest.mark.parametrize("seeds", [(1,), (1, 2)])
def test_checkpoint_loads_onto_the_cpu_and_adamw_steps_stay_there(tmp_path, seeds):
    """The meta device stands in for a GPU. A checkpoint read with map_location=<the
    trial's device> leaves AdamW's `step` tensors on that device, and foreach AdamW reads
    each back to the host on every step (on meta it cannot: `.item()` fails)."""
    config = TrialConfig(max_inputs=640, num_validations=2, val_count=50)
    trained = Trial(config, threads=1, seeds=seeds)
    next(trained.validations())
    trained.save(tmp_path)
    # torch's behaviour, the reason for the fix: a checkpoint read onto meta keeps `step` there
    state = torch.load(tmp_path / CHECKPOINT_FILE, map_location="meta", weights_only=True)
    assert {s["step"].device.type for s in state["optimizer"]["state"].values()} == {"meta"}

    gpu = Trial(config, threads=1, seeds=seeds)
    for param in gpu.net.parameters():  # to meta in place, as .to("cuda") moves a model:
        # the same objects (the optimizer's, the tied head's), now on the other device
        torch.utils.swap_tensors(param, torch.nn.Parameter(param.detach().to("meta")))
    gpu.device = torch.device("meta")
    gpu.load(tmp_path)
    for param in gpu.net.parameters():
        assert param.device.type == "meta"
        moments = gpu.optimizer.state[param]
        assert moments["exp_avg"].device.type == moments["exp_avg_sq"].device.type == "meta"
        assert moments["step"].device.type == "cpu" and moments["step"].item() == trained.step
        param.grad = torch.zeros_like(param)
    gpu.optimizer.step()  # foreach AdamW reads `step` on the host: fine from the CPU
    assert {gpu.optimizer.state[p]["step"].item() for p in gpu.net.parameters()} == {trained.step + 1}


def test_a_seeds_stream_is_the_same_on_every_device():
    """Drawn with a CPU generator, then moved: the batches on another device are the CPU
    ones. The lazy (TorchScript) device is a non-CPU device that holds values on a CPU-only
    machine; before, the stream drew with a generator on the device itself (CUDA's yields
    other numbers for a seed, and lazy has none)."""
    lazy = pytest.importorskip("torch._lazy.ts_backend")
    lazy.init()
    stream = SwapStream(3, exclude=validation_texts())
    epoch = stream.epoch(0, 300)
    assert epoch.letters.device.type == "cpu"  # whatever trains on it
    on_cpu = list(batches(epoch, 64))
    on_lazy = list(batches(epoch, 64, device="lazy"))
    assert len(on_lazy) == len(on_cpu) == 5
    for (inputs, targets), (cpu_inputs, cpu_targets) in zip(on_lazy, on_cpu):
        assert inputs.device.type == "lazy"
        assert torch.equal(inputs.cpu(), cpu_inputs) and torch.equal(targets.cpu(), cpu_targets)


def test_rows_record_where_they_were_computed():
    trial = Trial(TrialConfig(max_inputs=640, num_validations=1, val_count=50), threads=1)
    (row,) = next(trial.validations())
    assert row["device"] == "cpu" and row["device_name"]  # the CPU's model name
    assert row["torch_version"] == torch.__version__ and type(row["torch_version"]) is str
    assert row["cuda_version"] == torch.version.cuda  # the build's, None for a CPU build
    assert row["tf32_matmul"] is False and row["tf32_conv"] is False  # no TF32 on a CPU
    assert row["diverged"] is False


@pytest.mark.parametrize("capability, in_effect", [((8, 0), True), ((7, 5), False)])
def test_tf32_is_in_effect_only_on_gpus_that_have_it(monkeypatch, capability, in_effect):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: capability)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "a GPU")
    try:
        for mode, (matmul, conv) in TF32_MODES.items():
            set_tf32(mode)
            assert tf32_flags() == (matmul, conv)
            env = run_environment(torch.device("cuda"))
            assert env["device_name"] == "a GPU"
            assert (env["tf32_matmul"], env["tf32_conv"]) == (matmul and in_effect, conv and in_effect)
    finally:
        set_tf32(DEFAULT_TF32)
    assert TF32_MODES[DEFAULT_TF32] == (False, True)  # PyTorch's own default since 1.12
    with pytest.raises(UserError, match="unknown TF32 mode 'on'"):
        set_tf32("on")


def test_tf32_modes_with_the_flags_of_torch_before_2_9():
    """torch < 2.9 has only the allow_tf32 flags (2.9 and later refuse to mix them with
    the per-operator settings, so this runs in a process of its own)."""
    script = (
        "import tune_selcopy.science.trial as t\n"
        "t._per_op_tf32_api = lambda: False\n"
        "for mode in t.TF32_MODES:\n"
        "    t.set_tf32(mode)\n"
        "    assert t.tf32_flags() == t.TF32_MODES[mode], mode\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


class EveryStepStats(Trial):
    """The train metrics of every step, as before they were kept only where read."""

    def train_step(self, inputs, targets, widths=None, stats=True):
        super().train_step(inputs, targets, widths, stats=True)


def test_train_metrics_only_where_a_validation_reads_them(monkeypatch):
    # epochs of 25 steps (window 16) and of 10 steps (shorter than the window), two seeds
    for config in (TrialConfig(max_inputs=3200, num_validations=2, val_count=50),
                   TrialConfig(max_inputs=1280, num_validations=2, val_count=50)):
        for seeds in ((1,), (1, 2)):
            calls = []
            real = trial_module.batch_stats
            monkeypatch.setattr(trial_module, "batch_stats", lambda *a: calls.append(1) or real(*a))
            lean = Trial(config, threads=1, seeds=seeds)
            lean.run()
            monkeypatch.setattr(trial_module, "batch_stats", real)
            full = EveryStepStats(config, threads=1, seeds=seeds)
            full.run()
            # one call per step kept (a stack's seeds in one vmapped call), one per validation chunk
            steps = math.ceil(config.max_inputs / config.num_validations / config.batch_size)
            assert len(calls) == 2 * min(steps, lean.window) + 2  # 50 validation samples: one chunk
            assert [[without_timing(r) for r in rows] for rows in lean.history] == \
                [[without_timing(r) for r in rows] for rows in full.history]  # bitwise
            assert torch.equal(lean.recent, full.recent)
