"""Synthetic trial logs in the tune_selcopy.trial_logs schema, and the published attn_act runs,
for the analysis tests."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tune_selcopy.trial_logs import METRIC_COLUMNS as METRICS

FIXTURES = Path(__file__).parent / "fixtures"

# The published attn_act summary table, verbatim strings.
PUBLISHED_HEADER = [
    "qkv", "attn", "attnact", "validation loss", "validation_mask_error%", "validation_sample_error%",
    "(min)", "(max)", "(std)", "model params", "train time (minutes)", "throughput",
]
PUBLISHED_ROWS = [
    ["QK", "0,0,T", "elu+1", "0.00131346", "0.142118", "0.676752", "0.199045", "1.05494", "0.346975",
     "229,632", "1.51", "11,066/s"],
    ["QK", "0,0,T", "dpfp", "0.000896075", "0.119029", "0.597134", "0.17914", "1.23408", "0.54615",
     "229,632", "1.69", "9,871/s"],
]
# The published individual runs (trial, attnact, loss, mask error, sample error), verbatim.
PUBLISHED_INDIVIDUAL = [
    (2, "dpfp", 0.00161164, 0.248806, 1.23408),
    (5, "dpfp", 0.00167819, 0.230892, 1.15446),
    (5, "elu+1", 0.00170212, 0.222930, 1.05494),
    (2, "elu+1", 0.00170096, 0.191083, 0.88574),
    (1, "elu+1", 0.00159251, 0.163217, 0.79617),
    (3, "elu+1", 0.00101384, 0.095541, 0.44785),
    (1, "dpfp", 0.00042169, 0.045780, 0.22890),
    (4, "elu+1", 0.00055788, 0.037818, 0.19904),
    (4, "dpfp", 0.00034492, 0.035828, 0.18909),
    (3, "dpfp", 0.00042392, 0.033837, 0.17914),
]

# The config columns of every synthetic row (the published attn_act settings).
BASE_CONFIG = {
    "attn": "0,0,T", "qkv": "QK", "attnact": "elu+1", "num_layers": 3, "channels": 64, "kernel_size": 13,
    "dilation": "3,5,1", "activation": "gelu", "num_items": 26, "input_length": 5, "num_operations": "1,3",
    "val_num_operations": 3, "val_count": 10000, "batch_size": 64, "lr": 5e-4, "weight_decay": 0.01,
    "warmup_steps": 0, "max_inputs": 1_000_000,
}


def write_trial(root: Path, experiment: str, space: str, varied: list[str], config: dict, seed: int,
                final: dict, *, num_validations: int = 10, upto: int | None = None,
                trial_id: str | None = None, diverged: bool = False) -> str:
    """Write validation-001..upto Parquet files of one trial; the last validation has ``final``
    metrics (earlier ones are larger, a decaying curve). ``diverged``: the rows get the
    ``diverged`` column, true in the last one (other trials' rows go without it, as logs
    written before the column have none). Returns the trial id."""
    cfg = {**BASE_CONFIG, **config}
    setting = " ".join(f"{k}={cfg[k]}" for k in varied)
    trial_id = trial_id or f"{experiment}_{'_'.join(str(cfg[k]) for k in varied)}_s{seed}".replace(",", "")
    folder = root / experiment / "logs" / trial_id
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(1, (upto or num_validations) + 1):
        factor = 1 + 20 * (num_validations - k) / num_validations
        row = {
            "experiment": experiment, "space": space, "trial_id": trial_id, "setting": setting,
            "seed": seed, "varied_keys": ",".join(varied), **cfg, "num_validations": num_validations,
            "validation_index": k, "num_inputs": k * cfg["max_inputs"] // num_validations,
            "step": k * cfg["max_inputs"] // num_validations // 64, "learning_rate": 1e-4,
        }
        for m in METRICS:
            row[m] = float(final.get(m, 1.0)) * factor
        row["model_params"] = int(final.get("model_params", 229_632))
        row["train_time_s"] = float(final.get("train_time_s", 90.0)) * k / num_validations
        row["throughput"] = float(final.get("throughput", 11_000.0))
        row.update(device="cpu", hostname="test", timestamp=1.7e9 + k)
        if diverged:
            row["diverged"] = k == (upto or num_validations)
        pq.write_table(pa.Table.from_pylist([row]), folder / f"validation-{k:03d}.parquet")
    return trial_id


def published_fixture(root: Path) -> Path:
    lines = [ln for ln in (FIXTURES / "attn_act_published.csv").read_text().splitlines() if not ln.startswith("#")]
    for r in csv.DictReader(lines):
        final = {m: 1.0 for m in METRICS}
        final.update({k: float(r[k]) for k in ("validation_loss", "validation_mask_error%",
                                                 "validation_sample_error%", "train_sample_error%",
                                                 "train_time_s", "throughput")})
        write_trial(root, "attn_act", "attn_act", ["qkv", "attn", "attnact"], {"attnact": r["attnact"]},
                    int(r["trial"]), final)
    return root


def separated_fixture(root: Path, n: int = 10, experiment: str = "sep") -> Path:
    """Three settings of n seeds: A (best), B (close to A), C (clearly worse)."""
    rng = np.random.default_rng(1)
    centers = {"elu+1": 1.0, "dpfp": 1.05, "softmax": 5.0}
    for act, c in centers.items():
        for seed in range(n):
            v = c + 0.1 * rng.standard_normal()
            write_trial(root, experiment, "attn_act", ["attnact"], {"attnact": act}, seed,
                        {"validation_sample_error%": v}, num_validations=3)
    return root


def parse_pipe_tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """All markdown pipe tables in text as (header cells, body rows)."""
    tables, block = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            block.append([c.strip() for c in line.strip().strip("|").split("|")])
        elif block:
            tables.append((block[0], block[2:]))
            block = []
    return tables
