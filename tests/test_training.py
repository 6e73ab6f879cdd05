"""Training runs on a tiny model (CPU): the loss falls, checkpoints are in the published format and load
strictly, a run resumes where it stopped, broken data is skipped and counted, and the CLI entry works."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.conftest import UPSTREAM, need
from tests.test_training_data import make_mmrs_dataset, make_osz_dataset

TINY = ["d_model=32", "encoder_layers=2", "decoder_layers=2", "attention_heads=2", "ffn_dim=64"]
STEPS = 20


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """A v32 model trained from scratch for STEPS steps on .osz sets (some broken), evaluated on an mmrs set."""
    from engine.training import parse_train_words
    from engine.training.trainer import TrainingRun

    root = tmp_path_factory.mktemp("scratch")
    osz = make_osz_dataset(root / "osz", seconds=20, broken=True)
    mmrs = make_mmrs_dataset(root / "mmrs", seconds=12)
    options = parse_train_words([
        "version=v32", f"train_dataset_path={osz}", f"test_dataset_path={mmrs}", "test_dataset_start=0",
        "test_dataset_end=1", *TINY, f"total_steps={STEPS}", "batch_size=2", "base_lr=3e-3", "warmup_steps=2",
        "log_every_steps=1", "save_every_steps=10", "eval_every_steps=10", "eval_steps=4", "keep_checkpoints=3",
        f"output_dir={root / 'run'}", "device=cpu", "seed=7",
    ])
    run = TrainingRun(options)
    result = run.run()
    return run, result, root


@pytest.mark.slow
def test_loss_falls(scratch):
    _, result, _ = scratch
    losses = [h["loss"] for h in result.history if "loss" in h]
    assert len(losses) == STEPS
    assert np.mean(losses[-4:]) < np.mean(losses[:4]) - 0.3, losses
    accuracy = [h["accuracy"] for h in result.history if "accuracy" in h]
    assert np.mean(accuracy[-4:]) > np.mean(accuracy[:4])
    evals = [h for h in result.history if "test_loss" in h]
    assert [e["step"] for e in evals] == [10, 20] and result.eval == evals[-1]
    assert evals[-1]["test_loss"] < evals[0]["test_loss"]
    log_lines = (result.output_dir / "train_log.jsonl").read_text().splitlines()
    assert len(log_lines) == STEPS + 2


@pytest.mark.slow
def test_broken_data_is_skipped_and_counted(scratch):
    _, result, _ = scratch
    counts = result.skipped.counts
    assert sum(n for r, n in counts.items() if r.startswith("unreadable .osz")) == 1
    assert counts["audio file missing from the .osz"] == 1
    assert sum(n for r, n in counts.items() if r.startswith("unreadable beatmap")) == 1
    assert sum(n for r, n in counts.items() if r.startswith("song cannot be used")) == 1
    assert sum(n for r, n in counts.items() if r.startswith("beatmap cannot be tokenized") and "timing" in r) == 1
    assert "980 bad song" in result.skipped.summary()


@pytest.mark.slow
def test_checkpoint_is_published_format_and_loads_strictly(scratch):
    from safetensors import safe_open

    from engine.checkpoint import load_checkpoint

    run, result, _ = scratch
    folder = result.checkpoint
    assert folder.name == f"checkpoint-{STEPS}"
    assert sorted(p.name for p in folder.parent.glob("checkpoint-*")) == ["checkpoint-10", "checkpoint-20"]
    ck = load_checkpoint(str(folder))  # strict: every tensor present, nothing unexpected
    assert ck.version == "v32" and ck.config.backbone.d_model == 32
    trained = run.runtime.unwrap(run.model).state_dict()
    for key, value in ck.model.state_dict().items():
        assert torch.equal(value, trained[key].cpu()), key
    # the same tensor names as an upstream-saved v32 checkpoint (2+2 layers), the unused embedding included
    reference = need(UPSTREAM / "v32" / "checkpoint")
    with safe_open(str(reference / "model.safetensors"), "pt") as f:
        upstream_keys = set(f.keys())
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        ours = set(f.keys())
        assert f.metadata() == {"format": "pt"}
        assert f.get_slice("transformer.model.decoder.embed_tokens.weight").get_shape() == [ck.tokenizer.vocab_size_out, 32]
    assert ours == upstream_keys
    config = json.loads((folder / "config.json").read_text())
    upstream_config = json.loads((reference / "config.json").read_text())
    assert set(config) == set(upstream_config) and set(config["backbone_config"]) == set(upstream_config["backbone_config"])
    assert config["label_smoothing"] == 0.2 and config["max_target_positions"] == 2560
    assert json.loads((folder / "generation_config.json").read_text())["max_length"] == 2560
    assert ck.tokenizer.to_dict() == run.tokenizer.to_dict()


@pytest.mark.slow
def test_resume_continues_from_a_checkpoint(scratch, capsys):
    from safetensors.torch import load_file

    from engine.training import parse_train_words
    from engine.training.trainer import TrainingRun

    run, result, root = scratch
    half = result.output_dir / "checkpoint-10"
    options = parse_train_words([
        f"train_dataset_path={root / 'osz'}", *TINY, f"total_steps={STEPS}", "batch_size=2", "base_lr=3e-3",
        "warmup_steps=2", "log_every_steps=1", f"output_dir={root / 'resumed'}", "device=cpu", "seed=7",
        f"checkpoint_path={half}", "save_every_steps=100",
    ])
    resumed = TrainingRun(options)
    assert resumed.step == 10
    saved = load_file(str(half / "model.safetensors"))
    for key, value in resumed.runtime.unwrap(resumed.model).state_dict().items():
        assert torch.equal(value.cpu(), saved[key]), key
    state = resumed.optimizer.state_dict()["state"]
    assert all(int(s["step"]) == 10 for s in state.values())
    assert resumed.scheduler.last_epoch == 10
    out = resumed.run()
    steps = [h["step"] for h in out.history if "loss" in h]
    assert steps == list(range(11, STEPS + 1))
    # the same schedule as the uninterrupted run
    first = {h["step"]: h["lr"] for h in result.history if "lr" in h}
    assert [h["lr"] for h in out.history if "lr" in h] == pytest.approx([first[s] for s in steps])
    assert (root / "resumed" / f"checkpoint-{STEPS}" / "model.safetensors").is_file()
    state = json.loads((root / "resumed" / f"checkpoint-{STEPS}" / "trainer_state.json").read_text())
    assert state["step"] == STEPS and state["epoch"] > 0


@pytest.mark.slow
def test_v30_from_scratch_without_accelerate_through_the_cli(tmp_path, capsys):
    """v30: conditioning embedders get difficulty, mapper and song position; the plain one-device path."""
    from mapperator_app.cli import main

    data = make_mmrs_dataset(tmp_path / "mmrs", seconds=10)
    code = main(["train", "version=v30", f"train_dataset_path={data}", *TINY, "total_steps=2", "batch_size=2",
                 "use_accelerate=false", f"output_dir={tmp_path / 'out'}", "device=cpu", "min_difficulty=0"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "model saved in" in printed and "checkpoint-2" in printed
    from engine.checkpoint import load_checkpoint

    ck = load_checkpoint(str(tmp_path / "out" / "checkpoint-2"))
    # v30 from scratch keeps mode 0 (taiko and catch filtered out) and ranked/approved maps (the loved 3001 out):
    # the mapper table is built from what is left
    assert ck.version == "v30" and ck.config.do_mapper_embed and ck.config.num_mappers == 1
    assert ck.tokenizer.beatmap_mapper == {1001: 5000, 2001: 5000} and ck.tokenizer.mapper_idx == {5000: 0}


def test_no_usable_data_is_an_error(tmp_path):
    from engine.training import parse_train_words, train

    data = make_osz_dataset(tmp_path / "osz")
    with pytest.raises(Exception, match="no training data"):
        train(parse_train_words([f"train_dataset_path={data}", "gamemodes=[3]", *TINY, "total_steps=1",
                                 f"output_dir={tmp_path / 'out'}", "device=cpu"]))


def test_a_shard_of_unusable_sets_draws_from_all_sets(tmp_path):
    """Sets are split between data workers and processes; a share that holds only broken sets must not
    stop the run while other sets are fine."""
    from engine.presets import PRESETS
    from engine.tokenizer import Tokenizer
    from engine.training.augment import Augmentations
    from engine.training.dataset import SkipLog, read_dataset
    from engine.training.examples import ExampleBuilder
    from engine.training.recipes import RECIPES
    from engine.training.stream import BatchStream, ExampleSource, is_exhausted

    sets = {s.key[0]: s for s in read_dataset(make_osz_dataset(tmp_path / "osz", seconds=10, broken=True), "osz",
                                              SkipLog())}
    tok = Tokenizer.from_file(need(UPSTREAM / "trained" / "v32" / "checkpoint" / "tokenizer.json"))
    # (no random frame offset: upstream's can start past the end of a 5 s song, leaving it no window)
    augment = Augmentations.for_version(PRESETS["v32"], RECIPES["v32"], frame_offset_augment_prob=0.0)
    source = ExampleSource([sets[980], sets[900]], ExampleBuilder(PRESETS["v32"], tok, augment), augment,
                           train=True, seed=3)
    for shard in (0, 1):
        got = []
        for batch in BatchStream(source, 1, repeat=True, shard=shard, shards=2):
            assert not is_exhausted(batch)
            if batch.size:
                got.append(batch)
            if len(got) == 2:
                break
        assert all(b.decoder_input_ids.shape[0] == 1 for b in got)
    only_broken = ExampleSource([sets[980]], ExampleBuilder(PRESETS["v32"], tok, augment), augment, train=True)
    batches = list(BatchStream(only_broken, 1, repeat=True))
    assert is_exhausted(batches[-1]) and batches[0].skipped[0][1] == "980 bad song"
