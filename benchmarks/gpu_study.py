"""The whole study (every experiment behind the scorecard), stage by stage, timed: for a GPU box.

Runs the functions of :mod:`bertscape.book.study` in dependency order, one stage at a time, for every
task and seed of the profile (and every pairing where a stage takes one), then the full scorecard:

    main_runs, control_runs, curves, widths (every pairing), surfaces, trajectories, pca_paths,
    curvature_numbers (every pairing), theta1_evals (every pairing), restore_predictions,
    long_runs, layer_reports, scorecard (study.full_scorecard)

Each stage prints one line when it finishes (wall seconds, peak GPU memory allocated during the
stage; CUDA is synchronised before and after every stage). A stage that raises prints its traceback
and the next stage runs anyway (a later stage that needs the failed one's results then retries it
through the caches and usually fails the same way), so one failure does not waste a GPU lease.
Results go through the package's on-disk cache (``$BERTSCAPE_CACHE``): a rerun with the same cache
and profile only reads them back.

Written to ``--out`` (``timings.json`` is rewritten after every stage, so a run killed at a time
limit still leaves the stages it finished):

    timings.json        {stage: {seconds, peak_gb, ok, parts}}, device name, versions, the profile
    scorecard.csv       study.full_scorecard(P)  (one row per claim quantity, seed, pairing)
    verdicts.csv        study.verdict_table(scorecard)
    pairing_verdicts.csv  scorecard.pairing_verdicts(scorecard.summarise(scorecard))

and the verdict table, the claim matrix and the pairing verdicts are printed at the end.

    python benchmarks/gpu_study.py [--profile quick] [--overrides '{"n_train": null, ...}']
        [--model .carry/model] [--tasks movies[,tweets]] [--seeds 0[,1]] [--out DIR]
        [--stages main_runs,curves,...]

``--overrides`` is a JSON dict of :class:`bertscape.book.profiles.Profile` fields (parsed as JSON, so
``2e-5`` is a number), applied on top of ``--profile``; ``--model``, ``--tasks`` and ``--seeds``
override those fields too. ``--stages`` runs a subset (names as above; ``scorecard`` included).
``$BERTSCAPE_PROGRESS`` defaults to ``0`` (no progress bars) here. Works on CPU as well, e.g. a
seconds-long check::

    BERTSCAPE_CACHE=/tmp/gpu-check BERTSCAPE_VADER_SDIST=.carry/vaderSentiment-3.3.2.tar.gz \\
    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/gpu_study.py --profile smoke \\
        --model .carry/model --out /tmp/gpu-check-out

``--budget-s S`` starts no further stage once S seconds have passed; SIGINT or SIGTERM (e.g. from
``timeout -s INT``) ends the running stage, and both keep ``timings.json`` of the finished stages.

Exit status: 0 when every stage ran, 1 when a stage failed, 2 when stages were skipped (budget or
signal).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("BERTSCAPE_PROGRESS", "0")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# run from a checkout without the package installed: the repository root on the path
import _common  # noqa: E402,F401  (puts the repository root on sys.path)
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from bertscape.book import profiles, study
from bertscape.evidence import scorecard

STAGES = ("main_runs", "control_runs", "curves", "widths", "surfaces", "trajectories", "pca_paths",
          "curvature_numbers", "theta1_evals", "restore_predictions", "long_runs", "layer_reports", "scorecard")
#: Stages that take a pairing: run for every pairing of ``study.pairings(P)``.
PAIRED = ("widths", "curvature_numbers", "theta1_evals")


def _cuda() -> bool:
    return torch.cuda.is_available()


def _sync() -> None:
    if _cuda():
        torch.cuda.synchronize()


def _peak_gb() -> float | None:
    return torch.cuda.max_memory_allocated() / 2**30 if _cuda() else None


def _terminate(signum, frame):  # noqa: ARG001 - signal handler
    raise KeyboardInterrupt(f"signal {signum}")


def _say(msg: str) -> None:
    print(msg, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="quick", choices=profiles.PROFILE_NAMES, help="base profile (default quick)")
    ap.add_argument("--overrides", default="{}", help="JSON dict of Profile fields, e.g. '{\"n_train\": null}'")
    ap.add_argument("--model", default=None, help="model: 'embedded', a hub id or a local folder (e.g. .carry/model)")
    ap.add_argument("--tasks", default=None, help="comma-separated tasks (default: the profile's)")
    ap.add_argument("--seeds", default=None, help="comma-separated run seeds (default: the profile's)")
    ap.add_argument("--stages", default=None, help=f"comma-separated subset of {', '.join(STAGES)}")
    ap.add_argument("--out", default="gpu-study-out", help="folder for timings.json, scorecard.csv, verdicts.csv")
    ap.add_argument("--budget-s", type=float, default=None,
                    help="start no further stage once this many seconds have passed (the scorecard is then skipped too)")
    return ap.parse_args(argv)


def build_profile(args: argparse.Namespace) -> profiles.Profile:
    try:
        overrides = json.loads(args.overrides) if args.overrides else {}
    except json.JSONDecodeError as err:
        raise SystemExit(f"--overrides is not valid JSON: {err}")
    if not isinstance(overrides, dict):
        raise SystemExit("--overrides must be a JSON object (a dict of Profile fields)")
    if args.model:
        overrides["model"] = args.model
    if args.tasks:
        overrides["tasks"] = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if args.seeds:
        overrides["seeds"] = [int(s) for s in args.seeds.split(",") if s.strip()]
    return profiles.get_profile(args.profile, **overrides)


def stage_calls(P: profiles.Profile, stage: str):
    """(label, thunk) for every task, seed (and pairing) of one stage."""
    units = []
    for task in P.tasks:
        for seed in P.seeds:
            if stage == "scorecard":
                continue
            fn = getattr(study, stage)
            if stage in PAIRED:
                for pairing in study.pairings(P):
                    units.append((f"{task}/s{seed}/{pairing}", lambda fn=fn, t=task, s=seed, p=pairing: fn(P, t, s, p)))
            else:
                units.append((f"{task}/s{seed}", lambda fn=fn, t=task, s=seed: fn(P, t, s)))
    return units


def _device_name(P: profiles.Profile) -> str:
    from bertscape.runs.models import resolve_device

    try:
        dev = resolve_device(P.device)
    except Exception:  # noqa: BLE001 - reported, not fatal
        return f"unresolved ({P.device})"
    if dev.type == "cuda":
        return torch.cuda.get_device_name(dev)
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, {torch.get_num_threads()} threads)"


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "torch": torch.__version__,
           "cuda": str(torch.version.cuda)}
    for name in ("transformers", "numpy", "pandas", "xarray", "h5netcdf", "hessian_eigenthings", "tokenizers"):
        try:
            mod = __import__(name)
            out[name] = getattr(mod, "__version__", "?")
        except Exception as err:  # noqa: BLE001
            out[name] = f"missing ({err.__class__.__name__})"
    return out


def _extra(stage: str, P: profiles.Profile, result) -> str:
    """A short note on a finished stage (dev metrics of the runs)."""
    if stage not in ("main_runs", "control_runs", "long_runs") or not isinstance(result, dict):
        return ""
    bits = []
    for name, run in result.items():
        m = getattr(run.spec, "metric", None)
        val = run.final.get(m) if m else None
        steps = run.meta.get("total_steps")
        bits.append(f"{name}: {m}={val:.4f} steps={steps} train={run.meta.get('seconds', float('nan')):.1f}s"
                    if isinstance(val, (int, float)) else f"{name}: {run.final}")
    return "  [" + "; ".join(bits) + "]"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    P = build_profile(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    wanted = STAGES if not args.stages else tuple(s.strip() for s in args.stages.split(",") if s.strip())
    unknown = [s for s in wanted if s not in STAGES]
    if unknown:
        raise SystemExit(f"unknown stage(s) {unknown}; accepted: {', '.join(STAGES)}")

    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 50)
    pd.set_option("display.max_colwidth", 70)
    pd.set_option("display.max_rows", 500)

    info = {"device": _device_name(P), "versions": _versions(), "profile": P.to_dict(),
            "pairings": study.pairings(P), "cache": os.environ.get("BERTSCAPE_CACHE", "~/.cache/bertscape"),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"), "stages": {}}
    _say(f"device: {info['device']}; " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()))
    _say(f"profile {P.name}: model={P.model} tasks={list(P.tasks)} seeds={list(P.seeds)} pairings={info['pairings']} "
         f"n_train={P.n_train} n_dev={P.n_dev} epochs={P.epochs} grid={P.grid_points} device={P.device}")

    def dump() -> None:
        (out / "timings.json").write_text(json.dumps(info, indent=1, default=str))

    signal.signal(signal.SIGTERM, _terminate)
    budget = args.budget_s
    card = None
    failed: list[str] = []
    t_all = time.perf_counter()
    for i, stage in enumerate(wanted):
        if budget is not None and i > 0 and time.perf_counter() - t_all > budget:
            info["skipped"] = list(wanted[i:])
            failed.append("budget")
            dump()
            _say(f"!! --budget-s {budget:g} s spent: skipped {', '.join(wanted[i:])}")
            break
        _sync()
        if _cuda():
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        parts, ok, note, interrupted = {}, True, "", False
        try:
            if stage == "scorecard":
                card = study.full_scorecard(P)
            else:
                for label, thunk in stage_calls(P, stage):
                    tp = time.perf_counter()
                    res = thunk()
                    _sync()
                    parts[label] = round(time.perf_counter() - tp, 3)
                    note += _extra(stage, P, res)
        except Exception:  # noqa: BLE001 - report and go on with the next stage
            ok = False
            failed.append(stage)
            _say(f"!! stage {stage} failed:\n{traceback.format_exc()}")
        except KeyboardInterrupt:  # SIGINT / SIGTERM (e.g. `timeout`): keep what finished, stop here
            ok, interrupted = False, True
            failed.append(stage)
            info["skipped"] = list(wanted[i + 1:])
            _say(f"!! interrupted during stage {stage}; skipped {', '.join(wanted[i + 1:]) or 'nothing'}")
        if not interrupted:
            _sync()
        secs = time.perf_counter() - t0
        peak = _peak_gb()
        info["stages"][stage] = {"seconds": round(secs, 3), "peak_gb": None if peak is None else round(peak, 3),
                                 "ok": ok, "parts": parts, **({"interrupted": True} if interrupted else {})}
        info["total_seconds"] = round(time.perf_counter() - t_all, 3)
        dump()
        peak_s = "-" if peak is None else f"{peak:.2f} GB"
        state = "ok  " if ok else ("INTR" if interrupted else "FAIL")
        _say(f"stage {stage:<20} {state} {secs:9.1f} s  peak {peak_s}{note}")
        if interrupted:
            break

    _say("\nstage                  seconds  peak_gb  ok")
    for stage, r in info["stages"].items():
        _say(f"{stage:<20} {r['seconds']:9.1f}  {'-' if r['peak_gb'] is None else format(r['peak_gb'], '7.2f')}  {r['ok']}")
    _say(f"total {info['total_seconds']:.1f} s")

    if card is not None:
        try:
            card.to_csv(out / "scorecard.csv", index=False)
            verdicts = study.verdict_table(card)
            verdicts.to_csv(out / "verdicts.csv", index=False)
            summ = scorecard.summarise(card)
            pv = scorecard.pairing_verdicts(summ)
            pv.to_csv(out / "pairing_verdicts.csv", index=False)
            _say("\n== verdict table (study.verdict_table)")
            _say(verdicts.to_string(index=False))
            _say("\n== claim matrix (profile pairing)")
            _say(scorecard.claim_matrix(summ).to_string())
            _say("\n== pairing verdicts")
            _say(pv.to_string(index=False))
        except Exception:  # noqa: BLE001
            failed.append("report")
            _say(f"!! writing the scorecard failed:\n{traceback.format_exc()}")
    if failed:
        info["failed"] = failed
        dump()
        _say(f"\nFAILED stages: {', '.join(failed)}")
    return 2 if "skipped" in info else (1 if failed else 0)


if __name__ == "__main__":
    sys.exit(main())
