"""Which fold pruning saves the most trial time without losing a family's best trial.

    .venv/bin/python bench/pruning_replay.py [--seeds 1,2] [--margins 1:0.03,2:0.025 ...]
                                             [--n_trials 50] [--families all]
    .venv/bin/python bench/pruning_replay.py --journals a.journal b.journal   # replay only

Runs the default sweep (``sweep.py``, all families, 50 trials each) once per seed with
``pruning=none``, so that every trial scores all of its folds, then replays every trial of
every family, in the order the trials started, through each pruner: the trial stops at the
first fold where the pruner says so, and counts the time of the folds it ran (its time divided
evenly over its folds); the best trial it is compared with is the best of the replayed trials
that completed before it started. Prints, per pruner, the share of the unpruned trials' time it
would have spent and the families whose best trial it would have stopped (with how much worse
the family's best then is), and, per family, how much worse than the family's best the trials
that ended within 0.5 % of it were after one and two folds (the room a margin has).

Pruning changes which configurations the sampler draws next, which a replay cannot show; it
shows, on the same trials, what each rule stops. Wall times of real sweeps vary too much from
run to run on 2 cores to show a 10 % change in a few runs (``bench/run.py``'s target 4 compares
pruning on and off in one run).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import optuna  # noqa: E402
from optuna.distributions import FloatDistribution  # noqa: E402
from optuna.storages.journal import JournalFileBackend, JournalStorage  # noqa: E402
from optuna.trial import FrozenTrial, TrialState, create_trial  # noqa: E402
from run import child_env  # noqa: E402 - bench/run.py: the benchmark's child environment

from sweeper.pruning import FoldPruner  # noqa: E402
from sweeper.study import MARGINS, WILCOXON_P_THRESHOLD, make_pruner  # noqa: E402
from sweeper.trial_attrs import ATTR_FOLD_RMSE  # noqa: E402

NEAR_BEST = 0.005


def run_unpruned_sweep(seed: int, workdir: Path, *, n_trials: int, families: str) -> Path:
    """The default sweep with ``pruning=none`` and ``seed``; its Optuna journal."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = child_env(MLFLOW_TRACKING_URI=f"sqlite:///{workdir / 'mlflow.db'}")
    journal = workdir / "optuna-sweeps.journal"
    started = time.monotonic()
    subprocess.run(
        [sys.executable, str(ROOT / "sweep.py"), "--pruning", "none", "--seed", str(seed),
         "--n_trials", str(n_trials), "--families", families, "--storage", str(journal),
         "--verbose", "0"],
        cwd=workdir, env=env, check=True, stdout=subprocess.DEVNULL,
    )
    print(f"seed {seed}: unpruned default sweep in {time.monotonic() - started:.1f} s",
          file=sys.stderr, flush=True)
    return journal


def family_trials(journal: Path) -> dict[str, list[FrozenTrial]]:
    """Each family's complete trials with all their folds, in the order they started."""
    storage = JournalStorage(JournalFileBackend(str(journal)))
    out: dict[str, list[FrozenTrial]] = {}
    for summary in optuna.get_all_study_summaries(storage):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        trials = [t for t in study.get_trials(states=(TrialState.COMPLETE,))
                  if t.user_attrs.get(ATTR_FOLD_RMSE)]
        if trials:
            family = summary.study_name.rsplit(".", 1)[-1]
            out[f"{journal.parent.name}/{family}"] = sorted(trials, key=lambda t: t.datetime_start)
    return out


def replay(trials: list[FrozenTrial], pruner: optuna.pruners.BasePruner) -> tuple[float, float,
                                                                                   float]:
    """``(time spent, time unpruned, best value kept)`` of one family's trials under ``pruner``."""
    study = optuna.create_study()
    kept: list[FrozenTrial] = []     # complete under this pruner
    pending: list[FrozenTrial] = []  # of those, the ones not yet in ``study`` (still running)
    spent = full = 0.0
    for trial in trials:
        folds = trial.user_attrs[ATTR_FOLD_RMSE]
        per_fold = (trial.datetime_complete - trial.datetime_start).total_seconds() / len(folds)
        full += per_fold * len(folds)
        for done in [t for t in pending if t.datetime_complete <= trial.datetime_start]:
            study.add_trial(create_trial(
                value=done.value,
                intermediate_values=dict(enumerate(done.user_attrs[ATTR_FOLD_RMSE])),
                params={"x": 0.0}, distributions={"x": FloatDistribution(0.0, 1.0)},
            ))
            pending.remove(done)
        ran = len(folds)
        for k in range(1, len(folds)):
            running = create_trial(state=TrialState.RUNNING,
                                   intermediate_values=dict(enumerate(folds[:k])))
            if pruner.prune(study, running):
                ran = k
                break
        spent += per_fold * ran
        if ran == len(folds):
            kept.append(trial)
            pending.append(trial)
    return spent, full, min(t.value for t in kept)


def near_best_room(trials: list[FrozenTrial]) -> tuple[float, float]:
    """How much worse than the family's best trial, after one and after two folds, the trials
    within 0.5 % of it were (the largest, as a fraction)."""
    best = min(trials, key=lambda t: t.value)
    b = best.user_attrs[ATTR_FOLD_RMSE]
    near = [t.user_attrs[ATTR_FOLD_RMSE] for t in trials
            if t is not best and t.value <= best.value * (1 + NEAR_BEST)]
    one = max((f[0] / b[0] - 1 for f in near), default=0.0)
    two = max((sum(f[:2]) / sum(b[:2]) - 1 for f in near), default=0.0)
    return one, two


def parse_margins(text: str) -> dict[int, float]:
    out: dict[int, float] = {}
    for part in text.split(","):
        k, _, fraction = part.partition(":")
        out[int(k)] = float(fraction)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="1,2", help="one unpruned default sweep per seed")
    parser.add_argument("--journals", nargs="*", type=Path, default=[],
                        help="replay these journals of unpruned sweeps instead of running any")
    parser.add_argument("--n_trials", type=int, default=50, help="trials per family")
    parser.add_argument("--families", default="all", help="'all' or a comma list")
    parser.add_argument("--margins", nargs="*", default=[],
                        help="more margin rules to replay, e.g. 1:0.02,2:0.01")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)

    with tempfile.TemporaryDirectory(prefix="pruning-replay-") as tmp:
        journals = list(args.journals) or [
            run_unpruned_sweep(int(seed), Path(tmp) / f"seed-{seed}", n_trials=args.n_trials,
                               families=args.families)
            for seed in args.seeds.split(",")
        ]
        families: dict[str, list[FrozenTrial]] = {}
        for journal in journals:
            families.update(family_trials(journal))

    pruners: dict[str, optuna.pruners.BasePruner] = {
        "wilcoxon": make_pruner("wilcoxon"),
        f"margin {dict(MARGINS)} (the default)": make_pruner("margin"),
    }
    for text in args.margins:
        pruners[f"margin {parse_margins(text)}"] = FoldPruner(
            margins=parse_margins(text), p_threshold=WILCOXON_P_THRESHOLD, n_startup_steps=3
        )
    source = (", ".join(str(j) for j in args.journals) if args.journals else
              f"unpruned sweeps of {args.n_trials} trials x {args.families} families, seeds "
              f"{args.seeds}")
    print(f"Replay of {sum(map(len, families.values()))} trials of {len(families)} family "
          f"studies ({source}).\n")
    print("| pruner | share of the unpruned trials' time | families whose best was stopped |")
    print("| --- | ---: | --- |")
    for name, pruner in pruners.items():
        spent = full = 0.0
        lost: list[str] = []
        for family, trials in families.items():
            s, f, best_kept = replay(trials, pruner)
            spent, full = spent + s, full + f
            best = min(t.value for t in trials)
            if best_kept > best:
                lost.append(f"{family} (+{best_kept / best - 1:.2%})")
        print(f"| {name} | {spent / full:.3f} ({spent:.1f} of {full:.1f} s) | "
              f"{', '.join(lost) or 'none'} |")
    print("\n| family study | trials within 0.5 % of the best | worst after 1 fold | "
          "after 2 folds |")
    print("| --- | ---: | ---: | ---: |")
    for family, trials in families.items():
        best = min(t.value for t in trials)
        n = sum(t.value <= best * (1 + NEAR_BEST) for t in trials) - 1
        one, two = near_best_room(trials)
        print(f"| {family} | {n} | {one:+.2%} | {two:+.2%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
