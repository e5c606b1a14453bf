"""The finding: one sentence that opens each experiment's report and says what its seeds
support (a difference, none, or too few seeds to tell), with the numbers behind it and,
with a reproduction check, how the settings compare with the reference."""

from __future__ import annotations

import pandas as pd

from tune_selcopy.analysis import evidence, stats
from tune_selcopy.analysis.formats import fmt_sig, join_names, plural, unit
from tune_selcopy.analysis.reproduction import ONLY_REFERENCE, ReferenceCheck
from tune_selcopy.analysis.results import ExperimentResult, Setting, differing_keys
from tune_selcopy.analysis.sentences import identical_groups

#: A verdict group of more settings than this is counted, not named.
NAMED = 3


def short_name(setting: Setting, keys: list[str]) -> str:
    """A setting as the finding names it: the value of the one key that differs (``dpfp``),
    ``key=value`` for a number or several keys (``attn=0,0,T qkv=QK``), else its name."""
    if len(keys) == 1 and not _is_number(setting.keys[keys[0]]):
        return setting.keys[keys[0]]
    return " ".join(f"{k}={setting.keys[k]}" for k in keys) or setting.name


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def no_rows_reason(result: ExperimentResult) -> str:
    """Why an experiment has no row to show, in a few words."""
    nan = sum(len(v) for v in result.nan_only.values())
    if nan:
        return f"every finished seed's {result.metric} is NaN ({plural(nan, 'seed')})"
    if result.diverged_count and not result.unfinished_count:
        return f"every trial diverged ({plural(result.diverged_count, 'trial')}: the loss turned NaN or infinite)"
    return "no finished trials yet"


def finding(result: ExperimentResult, check: ReferenceCheck | None = None) -> str:
    """The opening sentence of one experiment; ``check`` adds the reproduction clause."""
    keys = differing_keys(result.settings, result.varied_keys)
    if not result.settings:
        return f"{', '.join(result.varied_keys) or result.experiment}: {no_rows_reason(result)}."
    if len(result.settings) == 1:
        text = _one_setting(result)
    elif len(result.settings) == 2:
        text = _two_settings(result, keys)
    else:
        text = _many_settings(result, keys)
    for names in identical_groups(result):
        text += (f"; warning: {join_names(names)} gave identical results seed for seed, so the varied values "
                 "probably never reached the model")
    return text + (_reference_clause(result, check) if check else "") + "."


def _value(result: ExperimentResult, s: Setting) -> str:
    return f"{fmt_sig(result.evidence.loc[s.label, 'mean'])}{unit(result.metric).value}"


def _seeds(result: ExperimentResult, order: list[Setting] | None = None) -> str:
    """``5 seeds each``, ``3 and 5 seeds`` (in ``order``), ``3-10 seeds``, with the seeds and
    trials left out."""
    ns = [int(result.evidence.loc[s.label, "n"]) for s in order or result.settings]
    if len(set(ns)) == 1:
        text = plural(ns[0], "seed") + (" each" if len(ns) > 1 else "")
    elif len(ns) == 2:
        text = f"{ns[0]} and {ns[1]} seeds"
    else:
        text = f"{min(ns)}-{max(ns)} seeds"
    nan = sum(len(s.nan_seeds) for s in result.settings) + sum(len(v) for v in result.nan_only.values())
    if nan:
        text += f", {plural(nan, 'seed')} with a NaN {result.metric} left out"
    if result.unfinished_count:
        text += f", {plural(result.unfinished_count, 'unfinished trial')} not counted"
    if result.diverged_count:
        text += f", {plural(result.diverged_count, 'diverged trial')} not counted"
    return text


def _one_setting(result: ExperimentResult) -> str:
    (s,) = result.settings
    r = result.evidence.loc[s.label]
    u = unit(result.metric).value
    ci = "" if r["ci_low"] != r["ci_low"] else f" ± {fmt_sig(r['ci_high'] - r['mean'], 2)}{u} (95% CI)"
    return f"{s.name}: one setting, {_seeds(result)}, mean {_value(result, s)}{ci}; nothing to compare it with"


def _two_settings(result: ExperimentResult, keys: list[str]) -> str:
    ev, alpha = result.evidence, result.alpha
    best = result.best
    (other,) = [s for s in result.settings if s is not best]
    r = ev.loc[other.label]
    b, o = short_name(best, keys), short_name(other, keys)
    subject = " x ".join(keys)
    if r["verdict"] == evidence.DIFFERENT:
        return (f"{subject}: {b} is better, {_value(result, best)} against {_value(result, other)} for {o} with "
                f"{_seeds(result, [best, other])} (Holm p {fmt_sig(r['holm_mwu'], 2)}; a seed of {b} beats a seed of "
                f"{o} with probability {r['p_best_better']:.2f}, 95% CI "
                f"{r['p_better_low']:.2f}-{r['p_better_high']:.2f})")
    means = f"{b} {_value(result, best)}, {o} {_value(result, other)}"
    if r["verdict"] == evidence.INDISTINGUISHABLE:
        return (f"{subject}: no difference supported with {_seeds(result, [best, other])} ({means}; Holm p "
                f"{fmt_sig(r['holm_mwu'], 2)}; {_detectable(result, r)})")
    need = stats.seeds_for_possible_rejection(ev.attrs["pairs"], alpha)
    return (f"{subject}: too few seeds to tell, {_seeds(result, [best, other])} ({means}; even complete "
            f"separation could only reach Holm p {fmt_sig(r['reachable'], 2)} > {alpha:g}; at least {need} untied "
            "seeds per setting are needed)")


def _detectable(result: ExperimentResult, r: pd.Series) -> str:
    """What an indistinguishable pair's seeds could have found, or why that is not computable."""
    if r["detectable_note"]:
        return f"the difference these seeds would have found is {r['detectable_note']}"
    size = f"{fmt_sig(r['detectable'], 2)}{unit(result.metric).difference}"
    return f"only a difference of >= {size} would have been found with {evidence.POWER:.0%} power"


def _many_settings(result: ExperimentResult, keys: list[str]) -> str:
    ev, alpha = result.evidence, result.alpha
    best = result.best
    others = [s for s in result.settings if s is not best]
    subject, b = " x ".join(keys), short_name(best, keys)

    def having(verdict: str) -> list[Setting]:
        return [s for s in others if ev.loc[s.label, "verdict"] == verdict]

    def listed(group: list[Setting]) -> str:
        if len(group) > NAMED:
            return plural(len(group), "setting")
        return join_names([short_name(s, keys) for s in group])

    if len(having(evidence.INCONCLUSIVE)) == len(others):
        pairs = ev.attrs["pairs"]
        return (f"{subject}: too few seeds to tell any of the {len(result.settings)} settings apart with "
                f"{_seeds(result)} ({'lowest' if result.lower_is_better else 'highest'} mean {b}, {_value(result, best)}; Holm over {pairs} pairs needs at least "
                f"{stats.seeds_for_possible_rejection(pairs, alpha)} untied seeds per setting)")
    parts = []
    worse = having(evidence.DIFFERENT)
    if worse:
        parts.append(f"{listed(worse)} worse (Holm p <= {fmt_sig(max(ev.loc[s.label, 'holm_mwu'] for s in worse), 2)})")
    same = having(evidence.INDISTINGUISHABLE)
    if same:
        rows = [ev.loc[s.label] for s in same]
        sizes = sorted({fmt_sig(r["detectable"], 2) for r in rows if not r["detectable_note"]}, key=float)
        found = (f"only differences of >= {'-'.join(dict.fromkeys([sizes[0], sizes[-1]]))}"
                 f"{unit(result.metric).difference} would have been found with {evidence.POWER:.0%} power") if sizes \
            else f"the difference these seeds would have found is {rows[0]['detectable_note']}"
        parts.append(f"{listed(same)} indistinguishable from it ({found})")
    few = having(evidence.INCONCLUSIVE)
    if few:
        parts.append(f"{listed(few)} inconclusive (too few seeds)")
    return f"{subject}: best {b} ({_value(result, best)}, {_seeds(result)}); " + "; ".join(parts)


def _reference_clause(result: ExperimentResult, check: ReferenceCheck) -> str:
    """``; both consistent with the reference``, or which settings differ from it."""
    keys = differing_keys(result.settings, result.varied_keys)
    by_label = {s.label: s for s in result.settings}
    rows = check.rows
    compared = check.compared
    extra = int((rows["verdict"] == ONLY_REFERENCE).sum())
    tail = f" ({plural(extra, 'row')} of it not in this sweep)" if extra else ""
    verdicts = compared["verdict"].tolist()
    if all(v == evidence.CONSISTENT for v in verdicts):
        word = {1: "consistent", 2: "both consistent"}.get(len(verdicts), f"all {len(verdicts)} consistent")
        return f"; {word} with the reference{tail}"
    u = unit(result.metric).value

    def names(verdict: str, values: bool = False) -> str:
        group = compared[compared["verdict"] == verdict]
        if len(group) > NAMED:
            return plural(len(group), "setting")
        return join_names([short_name(by_label[r["setting"]], keys) + (
            f" ({fmt_sig(r['ours mean'])}{u} vs {fmt_sig(r['reference mean'])}{u})" if values else "")
            for _, r in group.iterrows()])

    parts = []
    if evidence.DIFFERS in verdicts:
        verb = "differs" if verdicts.count(evidence.DIFFERS) == 1 else "differ"
        parts.append(f"{names(evidence.DIFFERS, values=True)} {verb} from the reference")
    if evidence.CONSISTENT in verdicts:
        parts.append(f"{names(evidence.CONSISTENT)} consistent with it")
    if evidence.INCONCLUSIVE in verdicts:
        parts.append(f"{names(evidence.INCONCLUSIVE)} too few seeds to check against it")
    return "; " + ", ".join(parts) + tail
