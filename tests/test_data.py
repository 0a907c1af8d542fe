"""Tasks: embedded sentiment sets, real GLUE files, tokenisation, batching and bad input."""
from __future__ import annotations

import hashlib
import tarfile

import numpy as np
import pytest

from bertscape.base.errors import BertscapeError
from bertscape.data import tasks as data
from bertscape.runs.models import load_tokenizer

GLUE_SIZES = {"cola": (8551, 1043), "mrpc": (3668, 408), "sst2": (67349, 872), "rte": (2490, 277),
              "stsb": (5749, 1500)}


def test_movie_file_has_every_sentence_and_37_neutral():
    sentences, ratings = data.read_ground_truth(data.embedded_folder() / "movieReviewSnippets_GroundTruth.txt")
    assert len(sentences) == 10_605
    assert int((ratings == 0).sum()) == 37
    assert ratings.min() >= -4 and ratings.max() <= 4


def test_movies_split_sizes_balance_and_determinism():
    train, dev = data.load_split("movies", "train"), data.load_split("movies", "dev")
    assert len(train) + len(dev) == 10_605 - 37
    assert len(dev) == pytest.approx(0.2 * (len(train) + len(dev)), abs=1)
    for split in (train, dev):
        assert 0.47 < split.labels.mean() < 0.52  # 49 % positive, stratified
    assert set(t[0] for t in train.texts).isdisjoint(t[0] for t in dev.texts[:200])
    again = data.load_split("movies", "dev")
    assert again.texts == dev.texts and np.array_equal(again.labels, dev.labels)


@pytest.mark.parametrize("name", ["tweets", "amazon", "nyt"])
def test_other_embedded_tasks_load(name):
    train = data.load_split(name, "train")
    assert len(train) > 2000 and set(np.unique(train.labels)) == {0, 1}


def test_regression_variant_keeps_ratings():
    reg = data.load_split("movies-reg", "train")
    assert reg.task.is_regression and reg.labels.dtype == np.float32
    assert len(reg) == round(0.8 * 10_605)
    assert reg.labels.min() >= -4 and reg.labels.max() <= 4 and (reg.labels == 0).any()


@pytest.mark.parametrize("task", sorted(GLUE_SIZES))
def test_glue_tasks_from_shared_folder(task, glue_dir):
    tok = load_tokenizer("embedded")
    for split, expected in zip(data.SPLITS, GLUE_SIZES[task]):
        raw = data.load_split(task, split, glue_dir)
        assert len(raw) == expected
        enc = data.encode(raw, tok, 128)
        assert len(enc) == expected and enc.lengths.max() <= 128
    t = data.get_task(task)
    if t.is_regression:
        assert raw.labels.min() >= 0 and raw.labels.max() <= 5
    else:
        assert set(np.unique(raw.labels)) == {0, 1}
        assert 0.1 < raw.labels.mean() < 0.9


@pytest.mark.parametrize("task", ["mrpc", "rte", "stsb"])
def test_pairs_are_encoded_as_pairs(task, glue_dir):
    tok = load_tokenizer("embedded")
    raw = data.load_split(task, "dev", glue_dir)
    enc = data.encode(raw, tok, 128)
    ids, tts = enc.input_ids[0], enc.token_type_ids[0]
    sep = tok.sep_token_id
    assert ids[0] == tok.cls_token_id and int((ids == sep).sum()) == 2
    first_sep = int(np.flatnonzero(ids == sep)[0])
    assert (tts[: first_sep + 1] == 0).all() and (tts[first_sep + 1:] == 1).all()


def test_single_sentences_have_one_segment():
    tok = load_tokenizer("embedded")
    enc = data.encode(data.load_split("movies", "dev"), tok, 64)
    assert all(int((t != 0).sum()) == 0 for t in enc.token_type_ids[:50])
    assert enc.lengths.max() <= 64


def test_tokenised_split_is_cached(fresh_cache):
    tok = load_tokenizer("embedded")
    raw = data.load_split("movies", "dev")
    first = data.encode(raw, tok, 48)
    files = list((fresh_cache / "tokens").glob("*.npz"))
    assert len(files) == 1
    second = data.encode(raw, tok, 48)
    assert all(np.array_equal(a, b) for a, b in zip(first.input_ids, second.input_ids))
    files[0].write_bytes(b"corrupt")  # a corrupt entry is recomputed, not read
    third = data.encode(raw, tok, 48)
    assert all(np.array_equal(a, b) for a, b in zip(first.input_ids, third.input_ids))


def test_subsets_are_seeded_and_stratified():
    labels = np.array([0] * 700 + [1] * 300)
    a = data.subset_indices(labels, 100, seed=1, stratify=True)
    b = data.subset_indices(labels, 100, seed=1, stratify=True)
    c = data.subset_indices(labels, 100, seed=2, stratify=True)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert labels[a].sum() == 30 and len(np.unique(a)) == 100


def test_eval_batches_are_length_sorted_and_dynamically_padded():
    tok = load_tokenizer("embedded")
    enc = data.encode(data.load_split("movies", "dev"), tok, 64).select(range(200))
    batches = data.eval_batches(enc, 32)
    widths = [b["input_ids"].shape[1] for b in batches]
    assert widths == sorted(widths) and widths[-1] == enc.lengths.max() and widths[0] < widths[-1]
    assert sum(len(b["labels"]) for b in batches) == 200
    for b in batches:
        assert (b["attention_mask"].sum(1) > 0).all() and (b["attention_mask"][:, -1] == 1).any()


# ----------------------------------------------------------------------------- bad input

def test_unknown_task_names_choices():
    with pytest.raises(BertscapeError, match=r"task='imdb'.*'movies'"):
        data.get_task("imdb")


def test_missing_glue_folder(tmp_path):
    with pytest.raises(BertscapeError, match="glue_dir"):
        data.load_split("rte", "train", tmp_path / "nowhere")
    with pytest.raises(BertscapeError, match=r"missing file .*RTE.*train\.tsv"):
        data.load_split("rte", "train", tmp_path)


def test_malformed_glue_file_names_file_and_line(tmp_path):
    (tmp_path / "RTE").mkdir()
    (tmp_path / "RTE" / "train.tsv").write_text(
        "index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tonly two\n")
    with pytest.raises(BertscapeError, match=r"RTE/train\.tsv, line 3"):
        data.load_split("rte", "train", tmp_path)
    (tmp_path / "RTE" / "train.tsv").write_text("index\tsentence1\tsentence2\tlabel\n0\ta\tb\tmaybe\n")
    with pytest.raises(BertscapeError, match=r"line 2: label 'maybe'"):
        data.load_split("rte", "train", tmp_path)


def test_glue_without_folder_or_hub_fails_fast(monkeypatch):
    monkeypatch.delenv("BERTSCAPE_GLUE_DIR", raising=False)
    with pytest.raises(BertscapeError, match="glue_dir.*movies"):
        data.load_split("mrpc", "train")


def test_wrong_sha256_is_refused(tmp_path):
    fake = tmp_path / "vaderSentiment-3.3.2.tar.gz"
    with tarfile.open(fake, "w:gz"):
        pass
    with pytest.raises(BertscapeError, match=r"sha256 of .* is [0-9a-f]{64}; expected 5d7c06e0"):
        data.extract_embedded(fake, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_right_sha256_of_a_local_copy_is_accepted(tmp_path):
    fake = tmp_path / "x.tar.gz"
    with tarfile.open(fake, "w:gz"):
        pass
    digest = hashlib.sha256(fake.read_bytes()).hexdigest()
    with pytest.raises(BertscapeError, match="has no additional_resources"):
        data.extract_embedded(fake, tmp_path / "out", expected_sha256=digest)


@pytest.mark.parametrize("bad", [0, -3, 513])
def test_bad_max_length(bad):
    tok = load_tokenizer("embedded")
    with pytest.raises(BertscapeError, match=rf"max_length={bad} is not accepted"):
        data.encode(data.load_split("movies", "dev"), tok, bad)


@pytest.mark.parametrize("n", [0, -1, 10**6])
def test_bad_subset_size(n):
    with pytest.raises(BertscapeError, match=rf"n_train={n} is not accepted"):
        data.subset_indices(np.zeros(100), n, 0, True, param="n_train")


def test_bad_batch_size():
    tok = load_tokenizer("embedded")
    enc = data.encode(data.load_split("movies", "dev"), tok, 32).select(range(10))
    with pytest.raises(BertscapeError, match="batch_size=0"):
        data.eval_batches(enc, 0)
    import torch

    with pytest.raises(BertscapeError, match="batch_size=11 .*10 examples"):
        data.train_batches(enc, 11, torch.Generator())


def test_length_grouped_batches_cover_every_example_once_with_less_padding():
    import torch

    tok = load_tokenizer("embedded")
    enc = data.encode(data.load_split("movies", "dev"), tok, 64).select(range(640))

    def epoch(group: bool, seed: int = 3):
        return data.train_batches(enc, 16, torch.Generator().manual_seed(seed), group_by_length=group)

    grouped, uniform = epoch(True), epoch(False)
    # every example exactly once: the multiset of (label, length) pairs is the whole split's
    seen = sorted((int(l), int(m)) for b in grouped for l, m in zip(b["labels"], b["attention_mask"].sum(1)))
    assert seen == sorted(zip(enc.labels.tolist(), enc.lengths.tolist()))
    assert sum(b["input_ids"].shape[0] for b in grouped) == len(enc)
    padded = lambda bs: sum(b["input_ids"].numel() for b in bs)
    assert padded(grouped) < 0.8 * padded(uniform)
    # seeded: the same generator seed gives the same batches, another seed other batches
    again = epoch(True)
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(grouped, again))
    assert not all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(grouped, epoch(True, seed=4)))
    # no length trend in the order of batches (they are shuffled after grouping)
    widths = [b["input_ids"].shape[1] for b in grouped]
    assert widths != sorted(widths) and widths != sorted(widths, reverse=True)
