"""Tasks: the embedded sentiment sets (from the vaderSentiment sdist) and GLUE.

Every task yields a :class:`TaskData` of texts (one or two per example) and labels for a
``train`` and a ``dev`` split.  Tokenised splits are cached; batches are length-sorted and
dynamically padded for evaluation, shuffled and dynamically padded for training.
"""
from __future__ import annotations

import csv
import io
import os
import socket
import subprocess
import sys
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch

from bertscape.base import cache, versions
from bertscape.base.errors import BertscapeError, bad_value, check_positive_int

# Imported where used, not at the top: scikit-learn, datasets and transformers each take about a second
# or more to import, and most processes that import this module (cache look-ups, the book driver)
# never split, download or batch by length.

# ----------------------------------------------------------------------------- task registry

VADER_SDIST = "vaderSentiment==3.3.2"
VADER_SHA256 = "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9"
VADER_INNER = "additional_resources/hutto_ICWSM_2014.tar.gz"
#: Fixed seed and share of the embedded tasks' train/dev split (independent of run seeds, so
#: every run of every chapter sees the same dev set).
SPLIT_SEED = 2019
DEV_FRACTION = 0.2


@dataclass(frozen=True)
class Task:
    """What a task is: its name, kind, label count, text fields and GLUE-style metrics."""

    name: str
    kind: Literal["classification", "regression"]
    num_labels: int
    n_texts: int
    metrics: tuple[str, ...]
    main_metric: str
    source: Literal["embedded", "glue"]
    description: str = ""

    @property
    def is_regression(self) -> bool:
        return self.kind == "regression"


_EMBEDDED_FILES = {
    "movies": ("movieReviewSnippets_GroundTruth.txt", "movie-review sentences (Rotten Tomatoes snippets)"),
    "tweets": ("tweets_GroundTruth.txt", "tweets"),
    "amazon": ("amazonReviewSnippets_GroundTruth.txt", "Amazon product-review snippets"),
    "nyt": ("nytEditorialSnippets_GroundTruth.txt", "New York Times editorial snippets"),
}

TASKS: dict[str, Task] = {}
for _name, (_file, _desc) in _EMBEDDED_FILES.items():
    TASKS[_name] = Task(_name, "classification", 2, 1, ("accuracy", "f1"), "accuracy", "embedded",
                        f"{_desc}: positive (mean human rating > 0) vs negative; rating 0 left out")
    TASKS[f"{_name}-reg"] = Task(f"{_name}-reg", "regression", 1, 1, ("pearson", "spearman"), "pearson",
                                 "embedded", f"{_desc}: mean human rating in [-4, 4]")
TASKS.update({
    "cola": Task("cola", "classification", 2, 1, ("mcc", "accuracy"), "mcc", "glue", "CoLA acceptability"),
    "sst2": Task("sst2", "classification", 2, 1, ("accuracy",), "accuracy", "glue", "SST-2 sentiment"),
    "mrpc": Task("mrpc", "classification", 2, 2, ("f1", "accuracy"), "f1", "glue", "MRPC paraphrase"),
    "qqp": Task("qqp", "classification", 2, 2, ("f1", "accuracy"), "f1", "glue", "QQP duplicate questions"),
    "stsb": Task("stsb", "regression", 1, 2, ("pearson", "spearman"), "pearson", "glue", "STS-B similarity"),
    "mnli": Task("mnli", "classification", 3, 2, ("accuracy",), "accuracy", "glue", "MNLI (dev = matched)"),
    "qnli": Task("qnli", "classification", 2, 2, ("accuracy",), "accuracy", "glue", "QNLI"),
    "rte": Task("rte", "classification", 2, 2, ("accuracy",), "accuracy", "glue", "RTE entailment"),
    "wnli": Task("wnli", "classification", 2, 2, ("accuracy",), "accuracy", "glue", "WNLI"),
})

SPLITS = ("train", "dev")


def get_task(name: str) -> Task:
    """Look a task up by name (case-insensitive; ``sst-2``/``sts-b`` spellings accepted)."""
    key = str(name).lower().replace("sst-2", "sst2").replace("sts-b", "stsb")
    if key not in TASKS:
        raise bad_value("task", name, sorted(TASKS))
    return TASKS[key]


@dataclass
class TaskData:
    """Raw examples of one split: ``texts[i]`` is a tuple of 1 or 2 strings."""

    task: Task
    split: str
    texts: list[tuple[str, ...]]
    labels: np.ndarray
    fingerprint: str

    def __len__(self) -> int:
        return len(self.texts)


# ----------------------------------------------------------------------------- embedded tasks

def data_dir() -> Path:
    """Where downloaded/extracted data lives: ``$BERTSCAPE_DATA`` or ``<cache>/data``."""
    root = os.environ.get("BERTSCAPE_DATA")
    path = Path(root) if root else cache.cache_dir() / "data"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _download_vader_sdist(dest: Path) -> Path:
    """Fetch the vaderSentiment sdist with pip itself (it reaches PyPI wherever pip works)."""
    local = os.environ.get("BERTSCAPE_VADER_SDIST")
    if local:
        return Path(local)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--disable-pip-version-check", "-q", VADER_SDIST, "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    found = sorted(dest.glob("vaderSentiment-3.3.2.tar.gz")) + sorted(dest.glob("vadersentiment-3.3.2.tar.gz"))
    if proc.returncode != 0 or not found:
        raise BertscapeError(
            f"could not download the {VADER_SDIST} sdist with pip (exit {proc.returncode}): "
            f"{proc.stderr.strip()[-500:]}. Set BERTSCAPE_VADER_SDIST to a local copy of the sdist.")
    return found[0]


def extract_embedded(sdist: Path, out: Path, expected_sha256: str = VADER_SHA256) -> None:
    """Verify the sdist's sha256 and extract the four ground-truth files into ``out``."""
    digest = cache.file_sha256(sdist)
    if digest != expected_sha256:
        raise BertscapeError(
            f"sha256 of {sdist} is {digest}; expected {expected_sha256} ({VADER_SDIST} sdist). "
            "The download is corrupt or not the pinned release.")
    with tarfile.open(sdist, "r:gz") as outer:
        member = next((m for m in outer.getmembers() if m.name.endswith(VADER_INNER)), None)
        if member is None:
            raise BertscapeError(f"{sdist} has no {VADER_INNER}")
        inner_bytes = outer.extractfile(member).read()  # type: ignore[union-attr]
    wanted = {f for f, _ in _EMBEDDED_FILES.values()}
    with cache.atomic_dir(out) as tmp:
        with tarfile.open(fileobj=io.BytesIO(inner_bytes), mode="r:gz") as inner:
            for m in inner.getmembers():
                base = os.path.basename(m.name)
                if m.isfile() and base in wanted:
                    (tmp / base).write_bytes(inner.extractfile(m).read())  # type: ignore[union-attr]
        missing = wanted - {p.name for p in tmp.iterdir()}
        if missing:
            raise BertscapeError(f"{VADER_INNER} in {sdist} lacks {sorted(missing)}")
        cache.write_manifest(tmp)


def embedded_folder() -> Path:
    """Folder with the extracted ground-truth files, downloading and extracting once."""
    out = data_dir() / "vader-3.3.2"
    if out.exists() and cache.check_manifest(out):
        return out
    with tempfile.TemporaryDirectory() as tmp:
        sdist = _download_vader_sdist(Path(tmp))
        extract_embedded(sdist, out)
    return out


def read_ground_truth(path: Path) -> tuple[list[str], np.ndarray]:
    """Parse ``id<TAB>rating<TAB>sentence`` lines (CRLF endings, last line without newline)."""
    sentences, ratings = [], []
    text = path.read_bytes().decode("utf-8")
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            raise BertscapeError(f"{path}, line {lineno}: expected 3 tab-separated fields, got {len(parts)}")
        sentences.append(parts[2].strip())
        ratings.append(float(parts[1]))
    return sentences, np.asarray(ratings, dtype=np.float64)


def _split_indices(n: int, labels: np.ndarray | None) -> dict[str, np.ndarray]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(n)
    train, dev = train_test_split(idx, test_size=DEV_FRACTION, random_state=SPLIT_SEED,
                                  stratify=labels)
    return {"train": np.sort(train), "dev": np.sort(dev)}


def load_embedded(task: Task, split: str) -> TaskData:
    """One split of an embedded task (seeded, stratified 80/20 split of the ground-truth file)."""
    base = task.name.removesuffix("-reg")
    path = embedded_folder() / _EMBEDDED_FILES[base][0]
    sentences, ratings = read_ground_truth(path)
    keep = np.flatnonzero(ratings != 0.0) if not task.is_regression else np.arange(len(ratings))
    if task.is_regression:
        labels_all = ratings.astype(np.float32)
        strat = None
    else:
        labels_all = (ratings > 0).astype(np.int64)
        strat = labels_all[keep]
    parts = _split_indices(len(keep), strat)
    chosen = keep[parts[split]]
    texts = [(sentences[i],) for i in chosen]
    fp = cache.stable_hash({"task": task.name, "split": split, "sha": VADER_SHA256, "v": versions.version("data")})
    return TaskData(task, split, texts, labels_all[chosen], fp)


# ----------------------------------------------------------------------------- GLUE

@dataclass(frozen=True)
class _GlueLayout:
    folder: str
    dev_file: str
    header: bool
    text_cols: tuple[Any, ...]  # column names (header) or indices (no header)
    label_col: Any
    label_map: dict[str, int] | None  # None: numeric label column
    hub_name: str
    hub_dev: str
    hub_text: tuple[str, ...]


_GLUE: dict[str, _GlueLayout] = {
    "cola": _GlueLayout("CoLA", "dev.tsv", False, (3,), 1, {"0": 0, "1": 1}, "cola", "validation", ("sentence",)),
    "sst2": _GlueLayout("SST-2", "dev.tsv", True, ("sentence",), "label", {"0": 0, "1": 1}, "sst2", "validation",
                        ("sentence",)),
    "mrpc": _GlueLayout("MRPC", "dev.tsv", True, ("#1 String", "#2 String"), "Quality", {"0": 0, "1": 1}, "mrpc",
                        "validation", ("sentence1", "sentence2")),
    "qqp": _GlueLayout("QQP", "dev.tsv", True, ("question1", "question2"), "is_duplicate", {"0": 0, "1": 1}, "qqp",
                       "validation", ("question1", "question2")),
    "stsb": _GlueLayout("STS-B", "dev.tsv", True, ("sentence1", "sentence2"), "score", None, "stsb", "validation",
                        ("sentence1", "sentence2")),
    "mnli": _GlueLayout("MNLI", "dev_matched.tsv", True, ("sentence1", "sentence2"), "gold_label",
                        {"entailment": 0, "neutral": 1, "contradiction": 2}, "mnli", "validation_matched",
                        ("premise", "hypothesis")),
    "qnli": _GlueLayout("QNLI", "dev.tsv", True, ("question", "sentence"), "label",
                        {"entailment": 0, "not_entailment": 1}, "qnli", "validation", ("question", "sentence")),
    "rte": _GlueLayout("RTE", "dev.tsv", True, ("sentence1", "sentence2"), "label",
                       {"entailment": 0, "not_entailment": 1}, "rte", "validation", ("sentence1", "sentence2")),
    "wnli": _GlueLayout("WNLI", "dev.tsv", True, ("sentence1", "sentence2"), "label", {"0": 0, "1": 1}, "wnli",
                        "validation", ("sentence1", "sentence2")),
}


def resolve_glue_dir(glue_dir: str | os.PathLike | None) -> Path | None:
    """The GLUE folder to read: the argument, else ``$BERTSCAPE_GLUE_DIR``, else ``None`` (hub)."""
    chosen = glue_dir if glue_dir not in (None, "") else os.environ.get("BERTSCAPE_GLUE_DIR") or None
    if chosen is None:
        return None
    path = Path(chosen).expanduser()
    if not path.is_dir():
        raise bad_value("glue_dir", str(chosen), "an existing folder in the GLUE layout <dir>/<TASK>/train.tsv, dev.tsv")
    return path


def read_glue_tsv(path: Path, layout: _GlueLayout, task: Task) -> tuple[list[tuple[str, ...]], np.ndarray]:
    """Parse one GLUE TSV file; malformed rows raise an error naming file and line."""
    if not path.is_file():
        raise BertscapeError(f"glue_dir: missing file {path} (expected the original GLUE layout "
                             f"<dir>/{layout.folder}/train.tsv and {layout.dev_file})")
    raw = path.read_text(encoding="utf-8-sig")
    reader = csv.reader(io.StringIO(raw), delimiter="\t", quoting=csv.QUOTE_NONE)
    rows = list(reader)
    if layout.header:
        if not rows:
            raise BertscapeError(f"{path}, line 1: empty file; expected a header row")
        header = rows[0]
        try:
            cols = [header.index(c) for c in layout.text_cols]
            label_idx = header.index(layout.label_col)
        except ValueError:
            raise BertscapeError(
                f"{path}, line 1: header {header!r} lacks a column of {list(layout.text_cols) + [layout.label_col]}")
        body, first = rows[1:], 2
    else:
        cols, label_idx, body, first = list(layout.text_cols), layout.label_col, rows, 1
    texts, labels = [], []
    need = max(cols + [label_idx]) + 1
    for lineno, row in enumerate(body, first):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if len(row) < need:
            raise BertscapeError(f"{path}, line {lineno}: expected at least {need} tab-separated fields, got {len(row)}")
        value = row[label_idx].strip()
        if layout.label_map is None:
            try:
                labels.append(float(value))
            except ValueError:
                raise BertscapeError(f"{path}, line {lineno}: label {value!r} is not a number")
        else:
            if value not in layout.label_map:
                raise BertscapeError(f"{path}, line {lineno}: label {value!r} is not one of {sorted(layout.label_map)}")
            labels.append(layout.label_map[value])
        texts.append(tuple(row[c] for c in cols))
    dtype = np.float32 if task.is_regression else np.int64
    return texts, np.asarray(labels, dtype=dtype)


def hub_reachable(host: str = "huggingface.co", timeout: float = 3.0) -> bool:
    """Whether ``host`` answers on port 443 within ``timeout`` seconds; ``False`` without trying when
    ``HF_HUB_OFFLINE`` or ``HF_DATASETS_OFFLINE`` is set."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false") or \
            os.environ.get("HF_DATASETS_OFFLINE", "0") not in ("0", "", "false"):
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def load_glue(task: Task, split: str, glue_dir: str | os.PathLike | None = None) -> TaskData:
    """One split of a GLUE task, from a GLUE folder or (with a reachable hub) from ``datasets``."""
    layout = _GLUE[task.name]
    folder = resolve_glue_dir(glue_dir)
    if folder is not None:
        path = folder / layout.folder / ("train.tsv" if split == "train" else layout.dev_file)
        texts, labels = read_glue_tsv(path, layout, task)
        st = path.stat()
        fp = cache.stable_hash({"task": task.name, "split": split, "path": str(path.resolve()),
                                "size": st.st_size, "mtime": st.st_mtime_ns, "v": versions.version("data")})
        return TaskData(task, split, texts, labels, fp)
    if not hub_reachable():
        raise BertscapeError(
            f"task={task.name!r} needs GLUE data: no dataset hub is reachable here. Pass glue_dir=<folder with "
            f"{layout.folder}/train.tsv, {layout.dev_file}> or set BERTSCAPE_GLUE_DIR, or use the offline "
            f"default task='movies'.")
    import datasets  # heavy import, only on this path

    ds = datasets.load_dataset("nyu-mll/glue", layout.hub_name,
                               split="train" if split == "train" else layout.hub_dev)
    texts = [tuple(ex[k] for k in layout.hub_text) for ex in ds]
    labels = np.asarray(ds["label"], dtype=np.float32 if task.is_regression else np.int64)
    fp = cache.stable_hash({"task": task.name, "split": split, "hub": ds._fingerprint, "v": versions.version("data")})
    return TaskData(task, split, texts, labels, fp)


def load_split(task: str | Task, split: str, glue_dir: str | os.PathLike | None = None) -> TaskData:
    """Raw examples of ``split`` (``train`` or ``dev``) of ``task``."""
    t = task if isinstance(task, Task) else get_task(task)
    if split not in SPLITS:
        raise bad_value("split", split, SPLITS)
    return load_embedded(t, split) if t.source == "embedded" else load_glue(t, split, glue_dir)


# ----------------------------------------------------------------------------- subsets

def subset_indices(labels: np.ndarray, n: int | None, seed: int, stratify: bool, param: str = "n") -> np.ndarray:
    """Seeded subset of ``n`` indices (all when ``n`` is None), stratified by label if asked."""
    total = len(labels)
    if n is None:
        return np.arange(total)
    check_positive_int(param, n, upper=total, what=f"the split has {total} examples")
    if n == total:
        return np.arange(total)
    rng = np.random.default_rng(seed)
    if not stratify:
        return np.sort(rng.choice(total, size=n, replace=False))
    from sklearn.model_selection import train_test_split

    classes, counts = np.unique(labels, return_counts=True)
    if n < len(classes) or counts.min() < 2:
        return np.sort(rng.choice(total, size=n, replace=False))
    picked, _ = train_test_split(np.arange(total), train_size=n, random_state=seed, stratify=labels)
    return np.sort(picked)


# ----------------------------------------------------------------------------- tokenisation

@dataclass
class Encoded:
    """A tokenised split: ragged token ids (+ segment ids) and labels."""

    task: Task
    input_ids: list[np.ndarray]
    token_type_ids: list[np.ndarray]
    labels: np.ndarray
    fingerprint: str
    lengths: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.lengths = np.asarray([len(x) for x in self.input_ids], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.input_ids)

    def select(self, idx: Sequence[int] | np.ndarray) -> "Encoded":
        """The examples at ``idx`` (in that order)."""
        idx = np.asarray(idx, dtype=np.int64)
        fp = cache.stable_hash({"parent": self.fingerprint, "idx": cache.stable_hash(idx.tolist(), 32)})
        return Encoded(self.task, [self.input_ids[i] for i in idx], [self.token_type_ids[i] for i in idx],
                       self.labels[idx], fp)

    @property
    def n_tokens(self) -> int:
        return int(self.lengths.sum())


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """Hash of what decides token ids: vocabulary and lower-casing."""
    vocab = tokenizer.get_vocab()
    return cache.stable_hash({"vocab": cache.stable_hash(sorted(vocab.items()), 32),
                              "cls": type(tokenizer).__name__,
                              "lower": getattr(tokenizer, "do_lower_case", None)})


def encode(data: TaskData, tokenizer: Any, max_length: int) -> Encoded:
    """Tokenise a split (pairs as pairs), cached by data, tokenizer and ``max_length``."""
    check_positive_int("max_length", max_length, upper=getattr(tokenizer, "model_max_length", 512) or 512,
                       what="the model's maximum sequence length")
    key = cache.stable_hash({"data": data.fingerprint, "tok": tokenizer_fingerprint(tokenizer),
                             "max_length": max_length, "v": versions.version("tokens")})
    path = cache.subdir("tokens") / f"{data.task.name}-{data.split}-{key}.npz"
    stored = cache.read_npz(path)
    if stored is None or len(stored.get("offsets", [])) != len(data) + 1:
        if data.task.n_texts == 1:
            out = tokenizer([t[0] for t in data.texts], truncation=True, max_length=max_length)
        else:
            out = tokenizer([t[0] for t in data.texts], [t[1] for t in data.texts],
                            truncation="longest_first", max_length=max_length)
        ids = out["input_ids"]
        tts = out.get("token_type_ids") or [[0] * len(x) for x in ids]
        offsets = np.zeros(len(ids) + 1, dtype=np.int64)
        offsets[1:] = np.cumsum([len(x) for x in ids])
        flat_ids = np.fromiter((t for x in ids for t in x), dtype=np.int32, count=int(offsets[-1]))
        flat_tt = np.fromiter((t for x in tts for t in x), dtype=np.int8, count=int(offsets[-1]))
        stored = {"offsets": offsets, "ids": flat_ids, "tt": flat_tt}
        cache.write_npz(path, **stored)
    off = stored["offsets"]
    ids = [stored["ids"][off[i]:off[i + 1]] for i in range(len(off) - 1)]
    tts = [stored["tt"][off[i]:off[i + 1]] for i in range(len(off) - 1)]
    return Encoded(data.task, ids, tts, data.labels, key)


# ----------------------------------------------------------------------------- batching

Batch = dict[str, torch.Tensor]


def collate(enc: Encoded, idx: Sequence[int] | np.ndarray, pad_id: int = 0) -> Batch:
    """Pad the examples at ``idx`` to their longest member (dynamic padding)."""
    idx = np.asarray(idx)
    width = int(enc.lengths[idx].max())
    ids = np.full((len(idx), width), pad_id, dtype=np.int64)
    tts = np.zeros((len(idx), width), dtype=np.int64)
    mask = np.zeros((len(idx), width), dtype=np.int64)
    for row, i in enumerate(idx):
        n = enc.lengths[i]
        ids[row, :n] = enc.input_ids[i]
        tts[row, :n] = enc.token_type_ids[i]
        mask[row, :n] = 1
    labels = torch.from_numpy(enc.labels[idx].copy())
    return {"input_ids": torch.from_numpy(ids), "token_type_ids": torch.from_numpy(tts),
            "attention_mask": torch.from_numpy(mask), "labels": labels}


def eval_batches(enc: Encoded, batch_size: int = 64, pad_id: int = 0) -> list[Batch]:
    """Length-sorted, dynamically padded batches (fastest for evaluation)."""
    check_positive_int("batch_size", batch_size)
    order = np.argsort(enc.lengths, kind="stable")
    return [collate(enc, order[i:i + batch_size], pad_id) for i in range(0, len(order), batch_size)]


def train_batches(enc: Encoded, batch_size: int, generator: torch.Generator, pad_id: int = 0,
                  group_by_length: bool = False) -> list[Batch]:
    """One epoch of shuffled, dynamically padded batches (order drawn from ``generator``).

    With ``group_by_length`` the examples are grouped as transformers' ``Trainer`` does with
    ``group_by_length=True`` (random mega-batches of up to 50 batches, each sorted by length) and
    the resulting batches are then shuffled, so a batch pads to similar lengths while the order
    of batches carries no length trend.
    """
    check_positive_int("batch_size", batch_size, upper=len(enc), what=f"the training set has {len(enc)} examples")
    if not group_by_length:
        order = torch.randperm(len(enc), generator=generator).numpy()
        return [collate(enc, order[i:i + batch_size], pad_id) for i in range(0, len(order), batch_size)]
    from transformers.trainer_pt_utils import get_length_grouped_indices

    idx = np.asarray(get_length_grouped_indices(enc.lengths.tolist(), batch_size, generator=generator))
    chunks = [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]
    return [collate(enc, chunks[j], pad_id) for j in torch.randperm(len(chunks), generator=generator).tolist()]
