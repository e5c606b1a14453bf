"""Reproduction check: our seeds against a reference table (a paper's, or an earlier sweep's).

A reference is a CSV file keyed by grid columns (docs/analysis.md, "Reproduction check"):

- **individual runs**: one row per seed; the key columns, then the metric under its log
  name (``validation_sample_error%``) or its table name (``validation loss``); optional
  ``seed`` or ``trial`` and further metric columns.
- **summary rows**: one row per setting; the key columns, ``<metric>`` (the mean),
  ``<metric> (std)`` (sample standard deviation, ddof 1), ``trials`` or ``n`` (the seed
  count), optionally ``<metric> (min)`` and ``<metric> (max)``.

Lines starting with ``#`` are comments. Key values are written as the table shows them
(``0,0,T``, ``elu+1``; numbers compare as numbers). The published attn_act runs ship as
``search_spaces/reference/attn_act.csv``; ``--reference attn_act`` names it.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from tune_selcopy.analysis import evidence
from tune_selcopy.analysis.formats import display_value, fmt_p, join_names, plural
from tune_selcopy.analysis.results import EVIDENCE_METRICS, TABLE_COLUMNS, ExperimentResult, Setting
from tune_selcopy.analysis.sentences import detectable_clause
from tune_selcopy.errors import UserError, one_line

ONLY_OURS = "only in ours"
ONLY_REFERENCE = "only in the reference"
SUMMARY = "summary rows"
RUNS = "individual runs"
_COUNT_COLUMNS = ("trials", "n")
_SEED_COLUMNS = ("seed", "trial")
_SPREAD = ("(std)", "(min)", "(max)")


@dataclass
class Reference:
    """A parsed reference file: per setting key, its seeds or its summary."""

    source: str  # the file as given, for display
    kind: str  # RUNS or SUMMARY
    keys: list[str]  # key columns, in file order
    metric: str
    settings: dict[tuple[str, ...], np.ndarray | evidence.Summary]  # normalized key values -> data
    shown: dict[tuple[str, ...], tuple[str, ...]] = field(default_factory=dict)  # normalized -> as written


def shipped(name: str) -> Path | None:
    """The reference shipped with the search spaces under ``name`` (e.g. ``attn_act``), or None."""
    ref = resources.files("tune_selcopy.search_spaces") / "reference" / f"{name}.csv"
    return Path(str(ref)) if ref.is_file() else None


def shipped_names() -> list[str]:
    """The names ``--reference`` takes for the references shipped with the search spaces."""
    folder = resources.files("tune_selcopy.search_spaces") / "reference"
    return sorted(Path(str(f)).stem for f in folder.iterdir() if str(f).endswith(".csv"))


def _aliases(metric: str) -> list[str]:
    """The column names a reference may use for ``metric``: its log name and table name."""
    return [metric] + [c.name for c in TABLE_COLUMNS if c.log_column == metric and c.statistic == "mean"
                       and c.name != metric]


def _known_columns() -> set[str]:
    names = set(EVIDENCE_METRICS) | {c.name for c in TABLE_COLUMNS} | set(_COUNT_COLUMNS) | set(_SEED_COLUMNS)
    for m in EVIDENCE_METRICS:
        names |= {f"{a} {s}" for a in _aliases(m) for s in _SPREAD}
    return names


def normalize(value: str) -> str:
    """A key value for matching: numbers by value (``5e-4`` equals ``0.0005``), text stripped."""
    text = value.strip()
    try:
        return repr(float(text))
    except ValueError:
        return text


def _number(row: dict[str, str], column: str, line: int, source: str) -> float:
    text = (row.get(column) or "").strip()
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise UserError(f"--reference {source} line {line}: {column} is {text!r}, not a finite number")
    return value


def read_reference(file: str, metric: str) -> Reference:
    """Parse a reference CSV (a path, or the name of a shipped reference) for ``metric``.

    Raises UserError, one line naming the file (and line), for a file that cannot be
    read, has no rows, a ragged row or a multi-line value, lacks the metric column, has
    a value that is not a finite number, repeats a setting in summary rows, or has a
    summary count below 1 or a negative deviation.
    """
    path, source = Path(file), str(file)
    if not path.is_file() and "/" not in file and not file.endswith(".csv") and shipped(file):
        path, source = shipped(file), f"search_spaces/reference/{file}.csv (shipped)"
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"--reference {file}: no such file, nor a shipped reference (shipped: "
                        f"{', '.join(shipped_names())})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"--reference {file}: cannot read ({one_line(e)})") from None
    numbered = [(i, ln) for i, ln in enumerate(text.splitlines(), start=1)
                if ln.strip() and not ln.lstrip().startswith("#")]
    # the file's line number of each data row (the first kept line is the header)
    line_of = [i for i, _ in numbered[1:]]
    try:
        reader = csv.DictReader(io.StringIO("\n".join(ln for _, ln in numbered)), strict=True)
        raw = list(reader)
        header = [h.strip() for h in (reader.fieldnames or [])]
    except csv.Error as e:
        raise UserError(f"--reference {file}: not a CSV file ({one_line(e)})") from None
    if not header or not raw:
        raise UserError(f"--reference {file}: no rows (expected a CSV header line and one row per seed or setting)")
    if len(set(header)) != len(header):
        raise UserError(f"--reference {file}: repeated column names in the header")
    if len(raw) != len(line_of):
        raise UserError(f"--reference {file}: a quoted value spans lines; write one row per line")
    ragged = [line for line, r in zip(line_of, raw) if None in r or None in r.values()]
    if ragged:  # DictReader files extra values under None and pads missing ones with None
        raise UserError(f"--reference {file} line {ragged[0]}: the number of values differs from the header's")
    rows = [{k.strip(): v for k, v in r.items()} for r in raw]
    value = next((a for a in _aliases(metric) if a in header), None)
    if value is None:
        raise UserError(f"--reference {file}: no column {' or '.join(_aliases(metric))} for --metric {metric} "
                        f"(columns: {', '.join(header)})")
    known = _known_columns()
    keys = [h for h in header if h not in known]
    summary = f"{value} (std)" in header
    count = next((c for c in _COUNT_COLUMNS if c in header), None)
    if summary and count is None:
        raise UserError(f"--reference {file}: summary rows ({value} (std)) need a trials (or n) column")
    settings: dict[tuple[str, ...], np.ndarray | evidence.Summary] = {}
    shown: dict[tuple[str, ...], tuple[str, ...]] = {}
    runs: dict[tuple[str, ...], list[float]] = {}
    for line, row in zip(line_of, rows):
        key = tuple(normalize(row[k]) for k in keys)
        shown.setdefault(key, tuple(row[k].strip() for k in keys))
        mean = _number(row, value, line, file)
        if not summary:
            runs.setdefault(key, []).append(mean)
            continue
        if key in settings:
            raise UserError(f"--reference {file} line {line}: a second summary row for {', '.join(shown[key])}")
        n, std = _number(row, count, line, file), _number(row, f"{value} (std)", line, file)
        if n < 1 or n != int(n) or std < 0:
            raise UserError(f"--reference {file} line {line}: {count} must be a whole number >= 1 and "
                            f"{value} (std) >= 0 (got {n:g} and {std:g})")
        extremes = [_number(row, f"{value} {s}", line, file) if f"{value} {s}" in header else math.nan
                    for s in ("(min)", "(max)")]
        settings[key] = evidence.Summary(int(n), mean, std, *extremes)
    settings.update({k: np.array(v) for k, v in runs.items()})
    return Reference(source, SUMMARY if summary else RUNS, keys, metric, settings, shown)


@dataclass
class ReferenceCheck:
    """One experiment against a reference: a row per setting on either side."""

    experiment: str
    reference: Reference
    alpha: float
    rows: pd.DataFrame  # setting (our label, "" if only in the reference), key columns,
    # ours/reference n mean (std) (min) (max), then evidence.REFERENCE_COLUMNS
    tests: int  # the Holm family size
    sentences: list[str]

    @property
    def compared(self) -> pd.DataFrame:
        """The rows of settings on both sides (tested against each other)."""
        return self.rows[~self.rows["verdict"].isin([ONLY_OURS, ONLY_REFERENCE])]


def _side(data: np.ndarray | evidence.Summary | None) -> list[float]:
    if data is None:
        return [math.nan] * 5
    s = data if isinstance(data, evidence.Summary) else evidence.Summary.of(data)
    return [s.n, s.mean, s.std, s.min, s.max]


SIDE_COLUMNS = ("n", "mean", "(std)", "(min)", "(max)")


def _untested(verdict: str) -> list[object]:
    return ["", math.nan, math.nan, math.nan, math.nan, "", verdict]


def key_values(setting: Setting, keys: list[str]) -> list[str] | None:
    """The setting's value of each of ``keys`` as the tables show it: a varied key's, or for
    a key the sweep held fixed, the one value of that config column over the setting's
    seeds (every trial logs its whole config). None if a key is not a column of the logs,
    or takes several values over the seeds."""
    values = []
    for k in keys:
        if k in setting.keys:
            values.append(setting.keys[k])
            continue
        shown = {display_value(v) for v in setting.final[k]} if k in setting.final.columns else set()
        if len(shown) != 1:
            return None
        values.append(shown.pop())
    return values


def check(result: ExperimentResult, ref: Reference) -> ReferenceCheck:
    """Compare one experiment's settings with the reference's (same metric, same alpha).

    Every key column must be a column of the experiment's logs (``key_values``): a grid key,
    or a key the sweep held fixed, whose value then selects the reference rows (a reference
    row with another value is only in the reference)."""
    ours: dict[tuple[str, ...], str] = {}
    shown: dict[str, list[str]] = {}
    for s in result.settings:
        values = key_values(s, ref.keys)
        if values is None:
            raise UserError(f"--reference {ref.source}: experiment {result.experiment} has no single value of "
                            f"every key column ({', '.join(ref.keys)}) for its setting {s.name}")
        key = tuple(normalize(v) for v in values)
        shown[s.label] = values
        if key in ours:
            other = next(t for t in result.settings if t.label == ours[key])
            raise UserError(
                f"--reference {ref.source}: its columns ({', '.join(ref.keys)}) do not tell apart the settings "
                f"{other.name} and {s.name} of experiment {result.experiment}: add the columns that differ"
            )
        ours[key] = s.label
    by_label = {s.label: s for s in result.settings}
    mine = {ours[k]: by_label[ours[k]].final[result.metric].to_numpy(dtype=float) for k in ours}
    theirs = {ours[k]: ref.settings[k] for k in ours if k in ref.settings}
    found = evidence.compare_to_reference(mine, theirs, alpha=result.alpha)
    records = []
    for key, label in ours.items():
        row = [label] + shown[label] + _side(mine[label]) + _side(theirs.get(label))
        row += list(found.loc[label]) if label in found.index else _untested(ONLY_OURS)
        records.append(row)
    for key in ref.settings:
        if key not in ours:
            records.append([""] + list(ref.shown[key]) + _side(None) + _side(ref.settings[key]) + _untested(ONLY_REFERENCE))
    columns = (["setting"] + list(ref.keys) + [f"ours {c}" for c in SIDE_COLUMNS] + [f"reference {c}" for c in SIDE_COLUMNS]
               + list(evidence.REFERENCE_COLUMNS))
    rows = pd.DataFrame(records, columns=columns)
    tests = found.attrs.get("tests", 0)
    return ReferenceCheck(result.experiment, ref, result.alpha, rows, tests, _sentences(rows, ref, result.alpha, tests))


def _sentences(rows: pd.DataFrame, ref: Reference, alpha: float, tests: int) -> list[str]:
    vary = [k for k in ref.keys if rows[k].nunique() > 1] or ref.keys

    def name(r: pd.Series) -> str:
        return " ".join(f"{k}={r[k]}" for k in vary) or "the setting"

    def having(verdict: str) -> list[pd.Series]:
        return [r for _, r in rows.iterrows() if r["verdict"] == verdict]

    test = "Welch's t-test from the summary statistics" if ref.kind == SUMMARY else "two-sided Mann-Whitney"
    family = f"{test}, Holm over {plural(tests, 'setting')}"
    out = []
    if having(evidence.DIFFERS):
        items = [f"{name(r)} (ours {r['ours mean']:.6g} vs {r['reference mean']:.6g}, Holm p {fmt_p(r['holm'])})"
                 for r in having(evidence.DIFFERS)]
        out.append(f"Differs from the reference at alpha {alpha:g} ({family}): {join_names(items)}.")
    if having(evidence.CONSISTENT):
        items = [f"{name(r)} (Holm p {fmt_p(r['holm'])}; {detectable_clause(r['detectable'], r['detectable_note'])})"
                 for r in having(evidence.CONSISTENT)]
        out.append(f"Consistent with the reference at alpha {alpha:g} ({family}): {join_names(items)}.")
    if having(evidence.INCONCLUSIVE):
        items = [f"{name(r)} ({r['ours n']:g} vs {r['reference n']:g} seeds: " + (
                 "Welch's t-test needs 2 seeds on each side)" if math.isnan(r["reachable"]) else
                 f"smallest reachable Holm p {fmt_p(r['reachable'])})") for r in having(evidence.INCONCLUSIVE)]
        out.append(f"Inconclusive, too few seeds to show a difference from the reference at alpha {alpha:g}: "
                   f"{join_names(items)}.")
    for verdict, where in ((ONLY_OURS, "Only in our logs"), (ONLY_REFERENCE, "Only in the reference")):
        if having(verdict):
            out.append(f"{where}, not compared: {join_names([name(r) for r in having(verdict)])}.")
    return out


def check_all(results: list[ExperimentResult], ref: Reference) -> list[ReferenceCheck]:
    """Each experiment with finished trials that has every key column of ``ref`` (a grid key
    or a fixed config column, see ``check``) and at least one setting in common with it,
    checked against ``ref``. UserError when there is none, saying which of the two failed."""
    ready = [r for r in results if r.settings]
    if not ready:
        raise UserError(f"--reference {ref.source}: no experiment has finished trials to compare yet")
    keyed = [r for r in ready if all(key_values(s, ref.keys) is not None for s in r.settings)]
    if not keyed:
        found = "; ".join(f"{r.experiment}: {', '.join(r.varied_keys)}" for r in ready)
        raise UserError(f"--reference {ref.source}: its key columns ({', '.join(ref.keys)}) are neither grid keys "
                        f"nor logged config values of any experiment with finished trials (grid keys: {found})")
    checks = [check(r, ref) for r in keyed]
    common = [c for c in checks if len(c.compared)]
    if not common:
        mine = checks[0].rows[checks[0].rows["verdict"] == ONLY_OURS]
        have = [" ".join(f"{k}={r[k]}" for k in ref.keys) for _, r in mine.head(3).iterrows()]
        raise UserError(f"--reference {ref.source}: none of its rows is a setting of ours (experiment "
                        f"{checks[0].experiment} has {join_names(have)}{', ...' if len(mine) > 3 else ''})")
    return common
