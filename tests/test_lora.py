"""LoRA: an adapter trains on a published-format checkpoint, saves with metadata naming its base, merges
at load (``apply_lora``) into exactly the model it was trained as, changes the logits, and is refused by
any other base. Adapters without our metadata (upstream-trained) are checked by subfolder and modules."""
from __future__ import annotations

import json
import shutil

import pytest
import torch

from engine.errors import ModelError
from tests.conftest import UPSTREAM, need
from tests.test_training_data import wav_bytes, write_zip

TRAINED = UPSTREAM / "trained"


@pytest.fixture(scope="module")
def adapter(tmp_path_factory):
    """A rank-4 PiSSA adapter trained 4 steps on the trained tiny v32 with synth150 (std and taiko)."""
    import soundfile as sf

    from engine.training import parse_train_words
    from engine.training.trainer import TrainingRun

    root = tmp_path_factory.mktemp("lora")
    audio = need(TRAINED / "audio")
    samples, rate = sf.read(audio / "synth150.wav", dtype="float32")
    files = {"synth150.wav": wav_bytes(samples.mean(axis=1)[: rate * 20], rate)}
    for mode in ("std", "taiko"):
        files[f"{mode}.osu"] = (audio / f"synth150_{mode}.osu").read_text(encoding="utf-8-sig")
    write_zip(root / "100000 synth150.osz", files)
    base = need(TRAINED / "v32" / "checkpoint")
    options = parse_train_words([
        f"pretrained_path={base}", "enable_lora=true", "lora_r=4", "lora_alpha=8", "lora_dropout=0",
        f"train_dataset_path={root}", "total_steps=4", "batch_size=2", "base_lr=1e-2", "log_every_steps=1",
        f"output_dir={root / 'run'}", "device=cpu", "save_every_steps=2",
    ])
    run = TrainingRun(options)
    result = run.run()
    return run, result, base


def _logits(model, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    frames = torch.randn(1, 2047 * 128, generator=g)
    ids = torch.randint(3, 4000, (1, 64), generator=g)
    model.eval()
    with torch.no_grad():
        return model(frames=frames, decoder_input_ids=ids)


@pytest.mark.slow
def test_adapter_is_saved_with_its_base(adapter):
    run, result, base = adapter
    folder = result.checkpoint / "lora"
    assert {p.name for p in folder.iterdir()} == {"adapter_config.json", "adapter_model.safetensors",
                                                  "mapperatorinator_lora_metadata.json"}
    assert not (result.checkpoint / "model.safetensors").exists()  # only the adapter is stored
    meta = json.loads((folder / "mapperatorinator_lora_metadata.json").read_text())
    assert meta["format_version"] == 1 and meta["ckpt_subfolders"] is None  # upstream's fields
    assert meta["base_model"]["source"] == str(base) and meta["base_model"]["version"] == "v32"
    assert meta["base_model"]["subfolder"] == "" and len(meta["base_model"]["fingerprint"]) == 64
    config = json.loads((folder / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"], config["init_lora_weights"]) == (4, 8, "pissa")
    assert set(config["target_modules"]) == {"Wq", "Wkv", "Wqkv", "Wo"}
    trainable = {n for n, p in run.model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n for n in trainable)
    assert [h["step"] for h in result.history] == [1, 2, 3, 4]


@pytest.mark.slow
def test_apply_lora_merges_exactly_what_was_trained(adapter):
    from engine.checkpoint import load_checkpoint
    from engine.lora import apply_lora

    run, result, base = adapter
    plain = _logits(load_checkpoint(str(base)).model)
    merged_ck = apply_lora(load_checkpoint(str(base)), str(result.checkpoint / "lora"))
    assert type(merged_ck.model).__name__ == "Mapperatorinator"  # merged and unwrapped
    merged = _logits(merged_ck.model)
    assert (merged - plain).abs().max() > 1e-2  # the adapter changes the model
    trained = _logits(run.runtime.unwrap(run.model))  # the PiSSA-wrapped model as training left it
    assert torch.allclose(merged, trained, atol=2e-4), (merged - trained).abs().max()
    # a training checkpoint folder works as lora_path too (its adapter sits in lora/)
    again = _logits(apply_lora(load_checkpoint(str(base)), str(result.checkpoint)).model)
    assert torch.equal(again, merged)


@pytest.mark.slow
def test_adapter_for_another_base_is_refused(adapter, tmp_path):
    from engine.checkpoint import load_checkpoint
    from engine.lora import apply_lora

    _, result, _ = adapter
    folder = result.checkpoint / "lora"
    with pytest.raises(ModelError, match="v32 model; it cannot be applied to this v30 model"):
        apply_lora(load_checkpoint(str(need(TRAINED / "v30" / "checkpoint"))), str(folder))
    with pytest.raises(ModelError, match="whose weights differ"):  # same architecture, other weights
        apply_lora(load_checkpoint(str(need(UPSTREAM / "v32" / "checkpoint"))), str(folder))
    # upstream's subfolder restriction
    restricted = tmp_path / "restricted"
    shutil.copytree(folder, restricted)
    meta = json.loads((restricted / "mapperatorinator_lora_metadata.json").read_text())
    meta["ckpt_subfolders"] = ["gamemode=0"]
    (restricted / "mapperatorinator_lora_metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="gamemode=0"):
        apply_lora(load_checkpoint(str(TRAINED / "v32" / "checkpoint")), str(restricted))


@pytest.mark.slow
def test_upstream_style_adapters(adapter, tmp_path):
    """Adapters with only upstream's metadata (or none) load on a fitting model and are refused by a
    model whose layers they do not fit."""
    from engine.checkpoint import load_checkpoint
    from engine.lora import apply_lora

    _, result, base = adapter
    upstream_style = tmp_path / "upstream_style"
    shutil.copytree(result.checkpoint / "lora", upstream_style)
    (upstream_style / "mapperatorinator_lora_metadata.json").write_text(
        json.dumps({"format_version": 1, "ckpt_subfolders": None}))
    merged = _logits(apply_lora(load_checkpoint(str(base)), str(upstream_style)).model)
    ours = _logits(apply_lora(load_checkpoint(str(base)), str(result.checkpoint / "lora")).model)
    assert torch.equal(merged, ours)
    (upstream_style / "mapperatorinator_lora_metadata.json").unlink()
    with pytest.raises(ModelError, match="another model version"):  # v30 has q_proj/k_proj/..., not Wqkv
        apply_lora(load_checkpoint(str(need(TRAINED / "v30" / "checkpoint"))), str(upstream_style))


def test_missing_or_bad_lora_paths(tmp_path):
    from engine.checkpoint import load_checkpoint
    from engine.lora import apply_lora

    ck = load_checkpoint(str(need(TRAINED / "v32" / "checkpoint")))
    with pytest.raises(ModelError, match="neither a folder nor a Hugging Face repo id"):
        apply_lora(ck, str(tmp_path / "nowhere" / "adapter"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="adapter_config.json is missing"):
        apply_lora(ck, str(tmp_path / "empty"))


@pytest.mark.slow
def test_lora_resume_and_generate_with_adapter(adapter, tmp_path):
    """A LoRA run resumes from its checkpoint (adapter weights and optimizer), and generation applies it."""
    from engine.options import GenerateOptions
    from engine.training import parse_train_words
    from engine.training.trainer import TrainingRun

    run, result, base = adapter
    half = result.checkpoint.parent / "checkpoint-2"
    options = parse_train_words([
        "enable_lora=true", f"train_dataset_path={result.output_dir.parent}", "total_steps=3", "batch_size=2",
        "base_lr=1e-2", f"checkpoint_path={half}", f"output_dir={tmp_path / 'resumed'}", "device=cpu",
    ])
    resumed = TrainingRun(options)
    assert resumed.step == 2 and resumed.lora_settings.r == 4
    from safetensors.torch import load_file

    saved = load_file(str(half / "lora" / "adapter_model.safetensors"))
    current = {k.replace(".default", ""): v for k, v in resumed.model.state_dict().items() if ".lora_" in k}
    assert saved.keys() <= current.keys()
    assert all(torch.equal(saved[k], current[k]) for k in saved)
    out = resumed.run()
    assert [h["step"] for h in out.history] == [3]

    import engine

    generated = engine.generate(GenerateOptions(
        audio_path=str(TRAINED / "audio" / "synth150.wav"), model_path=str(base),
        lora_path=str(result.checkpoint / "lora"), gamemode=0, difficulty=3.2, mapper_id=2, year=2023,
        do_sample=False, output_path=str(tmp_path / "out"), end_time=8000, device="cpu"))
    assert generated.osu_path.is_file()
