"""The plain sentences under the tables: the best setting, the verdicts against it, what the
seeds could have shown at all, and the seeds left out."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from tune_selcopy.analysis import evidence, stats
from tune_selcopy.analysis.formats import fmt_float, fmt_p, join_names, plural
from tune_selcopy.trial_logs import METRIC_COLUMNS

if TYPE_CHECKING:
    from tune_selcopy.analysis.results import ExperimentResult


def detectable_clause(size: float, note: str) -> str:
    """What an undecided pair's seeds could have found: ``a difference of 1.1 would have been
    found with 80% power``, or why that is not computable (``note``)."""
    if note:
        return f"the difference these seeds would have found is {note}"
    return f"a difference of {fmt_p(size)} would have been found with {evidence.POWER:.0%} power"

def verdict_sentences(result: ExperimentResult) -> list[str]:
    """The sentences for one experiment, in reading order."""
    out = best_and_verdicts(result) if len(result.evidence) else []
    out.extend(left_out_sentences(result))
    out.extend(identical_settings_warnings(result))
    return out


def best_and_verdicts(result: ExperimentResult) -> list[str]:
    """The best setting, the settings different from / indistinguishable from it, the
    inconclusive ones, and the power note."""
    ev, m, alpha = result.evidence, result.metric, result.alpha
    names = {s.label: s.name for s in result.settings}
    best_label = ev.index[ev["verdict"] == evidence.BEST][0]
    best, nb = names[best_label], int(ev.loc[best_label, "n"])
    word = "lowest" if result.lower_is_better else "highest"
    out = [f"Best setting ({word} mean {m}): {best} ({fmt_float(ev.loc[best_label, 'mean'])} over {plural(nb, 'seed')})."]
    tied = [s.name for s in result.settings
            if s.label != best_label and ev.loc[s.label, "mean"] == ev.loc[best_label, "mean"]]
    if tied:
        out.append(f"{join_names(tied)} {'has' if len(tied) == 1 else 'have'} the same mean; "
                   "a tie goes to the setting whose label sorts first.")
    if len(ev) == 1:
        out.append("Only one setting has seeds: there is nothing to compare yet.")
        return out
    pairs = ev.attrs["pairs"]
    family = f"two-sided Mann-Whitney, Holm over the {plural(pairs, 'pair')} of settings"

    def having(verdict: str) -> list[str]:  # in table order
        return [s.label for s in result.settings if ev.loc[s.label, "verdict"] == verdict]

    def holm_p(lab: str, column: str = "holm_mwu") -> str:
        return f"{names[lab]} (Holm p {fmt_p(ev.loc[lab, column])}"

    diff, same, few = having(evidence.DIFFERENT), having(evidence.INDISTINGUISHABLE), having(evidence.INCONCLUSIVE)
    if diff:
        out.append(f"Different from {best} at alpha {alpha:g} ({family}): {join_names([holm_p(lab) + ')' for lab in diff])}.")
    if same:
        items = [f"{holm_p(lab)}; {detectable_clause(ev.loc[lab, 'detectable'], ev.loc[lab, 'detectable_note'])})"
                 for lab in same]
        out.append(f"Indistinguishable from {best} at alpha {alpha:g} ({family}): {join_names(items)}.")
    if few:
        items = [f"{names[lab]} ({nb} vs {int(ev.loc[lab, 'n'])} seeds: the smallest Holm p any split of their "
                 f"values can reach is {fmt_p(ev.loc[lab, 'reachable'])})" for lab in few]
        out.append(f"Inconclusive, too few seeds to show a difference from {best} at alpha {alpha:g}, "
                   f"however large: {join_names(items)}.")
        welch = [lab for lab in few if ev.loc[lab, "holm_welch"] <= alpha]
        if welch:
            out.append(f"Welch's t-test alone would call {join_names([holm_p(lab, 'holm_welch') + ')' for lab in welch])} "
                       "different, but it rests on normally distributed seeds, which so few seeds cannot check.")
    out.append(_power_note(result, best_label))
    return out


def _power_note(result: ExperimentResult, best_label: str) -> str:
    """What the seeds could show at all: the best-placed comparison's smallest reachable p."""
    ev, alpha = result.evidence, result.alpha
    pairs = ev.attrs["pairs"]
    others = ev.drop(index=best_label)
    lab = others["p_min"].astype(float).idxmin()
    n1, n2 = int(ev.loc[best_label, "n"]), int(ev.loc[lab, "n"])
    p_min, untied = float(ev.loc[lab, "p_min"]), 2 / math.comb(n1 + n2, n1)
    ties = "" if math.isclose(p_min, untied) else f" (2/{math.comb(n1 + n2, n1):,} = {fmt_p(untied)} without ties)"
    head = (
        f"Power: with {n1} vs {n2} seeds the smallest two-sided Mann-Whitney p that any split of the pooled "
        f"values can give is {fmt_p(p_min)}{ties}, reached only when every seed of one setting beats every seed "
        f"of the other; Holm over {plural(pairs, 'pair')} first needs p <= {alpha:g}/{pairs} = {fmt_p(alpha / pairs)}"
    )
    if p_min > alpha / pairs:
        need = stats.seeds_for_possible_rejection(pairs, alpha)
        return (head + ", so no setting can be declared different from the best with these seeds, however large "
                f"the difference. At least {need} untied seeds per setting are needed before a difference can show at all.")
    return (head + ". 'Indistinguishable' comes with the difference these seeds would have found with "
            f"{evidence.POWER:.0%} power (at {alpha:g}/{pairs}, for normal noise with the pair's pooled spread); "
            "smaller differences may exist.")


def left_out_sentences(result: ExperimentResult) -> list[str]:
    """Finished seeds left out of the statistics (NaN metric), and NaN cells of other columns."""
    out = []
    m = result.metric
    items = [
        f"{s.name} {'seed' if len(s.nan_seeds) == 1 else 'seeds'} {join_names([str(x) for x in s.nan_seeds])} "
        f"({len(s.nan_seeds)} of {len(s.nan_seeds) + len(s.final)} finished seeds)"
        for s in result.settings
        if s.nan_seeds
    ]
    items += [f"{name} {'seed' if len(seeds) == 1 else 'seeds'} {join_names([str(x) for x in seeds])} "
              f"(all its finished seeds: the setting has no row)" for name, seeds in result.nan_only.items()]
    if items:
        out.append(f"Left out of the table and the evidence, {m} is NaN (the run diverged or logged no value): "
                   f"{join_names(items)}.")
    for s in result.settings:
        for column, seeds in s.nan_cells.items():
            out.append(f"{column} is NaN for {s.name} {'seed' if len(seeds) == 1 else 'seeds'} "
                       f"{join_names([str(x) for x in seeds])}: its {column} statistics are over the other seeds.")
    return out


def identical_groups(result: ExperimentResult) -> list[list[str]]:
    """The names of settings whose seeds gave exactly the same final metrics, seed for seed,
    one list per group of two or more.

    Different settings trained with the same seeds only agree to the last digit when they
    trained the same model: the varied values never reached it (the mistake behind the
    published corrections).
    """
    seen: dict[tuple, list[str]] = {}
    for s in result.settings:
        if len(s.final) < 2:
            continue
        cols = ["seed", *METRIC_COLUMNS]
        key = tuple(map(tuple, s.final[cols].sort_values("seed").to_numpy(dtype=float).round(12).tolist()))
        seen.setdefault(key, []).append(s.name)
    return [names for names in seen.values() if len(names) > 1]


def identical_settings_warnings(result: ExperimentResult) -> list[str]:
    """A warning sentence for each group of ``identical_groups``."""
    return [
        f"Warning: {join_names(names)} gave identical results seed for seed; settings that differ should not, "
        "so the varied values probably never reached the model (check the model constructor)."
        for names in identical_groups(result)
    ]
