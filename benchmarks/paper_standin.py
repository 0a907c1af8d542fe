"""The ``paper`` profile timed without a model hub: a BERT-base stand-in, one GLUE task, stage by stage.

Builds a local model folder with BERT-base's architecture (12 layers, hidden 768, 12 heads,
intermediate 3072, 110 M parameters), the embedded MiniLM's tokenizer (the same uncased WordPiece
vocabulary of 30,522 tokens as ``bert-base-uncased``) and seeded random weights, nothing downloaded;
then runs ``benchmarks/gpu_study.py`` on the ``paper`` profile for one task with that folder as the
model, every stage timed, and prints the per-stage table, the total and the 15-minute target.

The numbers are timings only: the stand-in's "pre-trained" weights are random, so its verdicts mean
nothing. Everything is measured; nothing is extrapolated (a stage cut off by ``--budget-s`` is
reported as not run).

    # on a GPU box (GLUE files in the original TSV layout)
    BERTSCAPE_CACHE=/tmp/standin python benchmarks/paper_standin.py --task rte --glue-dir /data/glue --out /tmp/standin-out
    # seconds-long CPU check of the same path: a 2-layer, hidden-32 stand-in and a shrunken profile
    BERTSCAPE_CACHE=/tmp/standin python benchmarks/paper_standin.py --tiny --task rte --glue-dir ../shared/data/glue

Written to ``--out``: ``model/`` (the stand-in folder, reused when present), and gpu_study's
``timings.json``, ``scorecard.csv``, ``verdicts.csv``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from _common import ROOT as _ROOT  # noqa: E402  (also puts the root on sys.path)

#: BERT-base's shape (Devlin et al. 2019).
BERT_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                 max_position_embeddings=512, type_vocab_size=2)
#: A shape small enough for a CPU check of the whole path.
TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=512, type_vocab_size=2)
#: Profile overrides of ``--tiny`` (on top of ``paper``): seconds on a CPU.
TINY_OVERRIDES = {"n_train": 64, "n_dev": 64, "max_length": 32, "epochs": 1, "batch_size": 16, "evals_per_epoch": 1,
                  "n_checkpoints": 3, "long_n_train": 64, "long_epochs": 2, "curve_points": 5, "curve_n_eval": 32,
                  "layer_alphas": [0.0, 0.5, 1.0, 1.5], "grid_points": [4, 5], "grid_n_eval": 32,
                  "hessian_steps": 2, "hessian_n_eval": 16, "layer_hessian_steps": 2, "cka_tokens": 256,
                  "eval_batch_size": 32}
TARGET_S = 15 * 60


def build_standin(folder: Path, shape: dict, seed: int = 0) -> Path:
    """Write a BERT model folder (config, random weights, the embedded tokenizer); reused if present."""
    if (folder / "config.json").is_file():
        return folder
    import torch
    from transformers import BertConfig, BertModel

    from bertscape.runs.models import load_tokenizer

    tok = load_tokenizer("embedded")
    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=tok.vocab_size, **shape)
    tmp = folder.with_name(folder.name + ".partial")
    BertModel(cfg).save_pretrained(tmp)
    tok.save_pretrained(tmp)
    os.replace(tmp, folder)
    return folder


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="rte", help="one GLUE task of the paper profile (mrpc, rte, sst2, cola)")
    ap.add_argument("--glue-dir", default=os.environ.get("BERTSCAPE_GLUE_DIR"), help="GLUE folder (TSV layout)")
    ap.add_argument("--out", default="paper-standin-out", help="output folder")
    ap.add_argument("--tiny", action="store_true", help="2-layer stand-in and a shrunken profile (a CPU check)")
    ap.add_argument("--budget-s", type=float, default=None, help="passed to gpu_study.py")
    args = ap.parse_args(argv)
    if args.task not in ("mrpc", "rte", "sst2", "cola"):
        raise SystemExit(f"--task={args.task!r} is not accepted; expected one of mrpc, rte, sst2, cola")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model = build_standin(out / "model", TINY if args.tiny else BERT_BASE)
    overrides = dict(TINY_OVERRIDES) if args.tiny else {}
    if args.glue_dir:
        overrides["glue_dir"] = str(Path(args.glue_dir).resolve())
    cmd = [sys.executable, str(_ROOT / "benchmarks" / "gpu_study.py"), "--profile", "paper", "--model", str(model),
           "--tasks", args.task, "--seeds", "0", "--overrides", json.dumps(overrides), "--out", str(out)]
    if args.budget_s is not None:
        cmd += ["--budget-s", str(args.budget_s)]
    rc = subprocess.call(cmd, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    timings = json.loads((out / "timings.json").read_text())
    stages = timings.get("stages", timings)
    rows = [(k, v) for k, v in stages.items() if isinstance(v, dict) and "seconds" in v]
    total = sum(v["seconds"] for _, v in rows)
    print(f"\nstand-in: {'tiny' if args.tiny else 'BERT-base'} shape, paper profile, task {args.task}"
          f"{' (shrunken)' if args.tiny else ''}")
    print(f"{'stage':<22} {'seconds':>9} {'peak GPU GB':>12} {'ok':>4}")
    for name, v in rows:
        peak = v.get("peak_gb")
        print(f"{name:<22} {v['seconds']:>9.1f} {('-' if peak is None else f'{peak:.1f}'):>12} {str(v.get('ok')):>4}")
    verdict = ("a CPU check of the path; no target" if args.tiny
               else f"target {TARGET_S} s: {'met' if total <= TARGET_S else f'missed by {total - TARGET_S:.0f} s'}")
    print(f"{'total':<22} {total:>9.1f}   {verdict}")
    return rc


if __name__ == "__main__":
    sys.exit(main())
