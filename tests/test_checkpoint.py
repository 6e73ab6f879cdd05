"""Finding and loading checkpoints: local folders, gamemode subfolders, the Hugging Face cache, bad files."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from engine.checkpoint import _WithoutInitializers, load_checkpoint, parse_config
from engine.errors import ModelError

from .conftest import REPO, UPSTREAM, need

V32 = UPSTREAM / "v32" / "checkpoint"
FILES = ("config.json", "generation_config.json", "tokenizer.json", "model.safetensors")


def copy_checkpoint(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for name in FILES:
        shutil.copy(need(src / name), dst / name)
    return dst


def test_gamemode_subfolder_is_chosen_when_present(tmp_path):
    root = copy_checkpoint(V32, tmp_path / "ckpt")
    copy_checkpoint(UPSTREAM / "trained" / "v32" / "checkpoint", root / "gamemode=3")
    timing = load_checkpoint(str(root), gamemode=0)  # no gamemode=0 folder: the root model
    mania = load_checkpoint(str(root), gamemode=3)
    assert timing.subfolder is None and mania.subfolder == "gamemode=3"
    assert mania.path == root / "gamemode=3"
    differs = mania.model.transformer.proj_out.weight - timing.model.transformer.proj_out.weight
    assert differs.abs().max() > 0


def test_pickle_checkpoints_are_refused(tmp_path):
    root = copy_checkpoint(V32, tmp_path / "ckpt")
    (root / "model.safetensors").unlink()
    (root / "pytorch_model.bin").write_bytes(b"not really a pickle")
    with pytest.raises(ModelError, match="pickle"):
        load_checkpoint(str(root))


def test_corrupt_weights_say_so(tmp_path):
    root = copy_checkpoint(V32, tmp_path / "ckpt")
    (root / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(ModelError, match="not a valid safetensors"):
        load_checkpoint(str(root))


def test_missing_and_unexpected_weights_are_named(tmp_path):
    from safetensors.torch import load_file

    root = copy_checkpoint(V32, tmp_path / "ckpt")
    state = load_file(str(root / "model.safetensors"))
    state.pop("transformer.proj_out.weight")
    state["transformer.extra.weight"] = torch.zeros(1)
    save_file(state, str(root / "model.safetensors"))
    with pytest.raises(ModelError, match=r"missing transformer\.proj_out\.weight.*unexpected transformer\.extra"):
        load_checkpoint(str(root))


@pytest.mark.parametrize(
    "edit,field",
    [
        (lambda c: c.update(backbone_model_name="google/t5-small"), "backbone_model_name"),
        (lambda c: c.pop("vocab_size_in"), "vocab_size_in"),
        (lambda c: c["backbone_config"].update(d_model="big"), "d_model"),
        (lambda c: c.update(spectrogram_implementation="librosa"), "spectrogram_implementation"),
        (lambda c: c["backbone_config"].update(num_mel_bins=99), "num_mel_bins"),
    ],
)
def test_unsupported_configs_name_the_field(edit, field):
    config = json.loads(need(V32 / "config.json").read_text())
    edit(config)
    with pytest.raises(ModelError, match=field):
        parse_config(config)


def test_unknown_source_is_explained():
    with pytest.raises(ModelError, match="neither a folder"):
        load_checkpoint("./no/such/folder")


def _hub_cache(cache: Path, repo_id: str) -> Path:
    """Lay out a Hugging Face cache entry (refs/main + snapshot) holding the fixture checkpoints."""
    repo_dir = cache / ("models--" + repo_id.replace("/", "--"))
    commit = "0123456789abcdef0123456789abcdef01234567"
    snapshot = repo_dir / "snapshots" / commit
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    copy_checkpoint(V32, snapshot)
    copy_checkpoint(UPSTREAM / "trained" / "v32" / "checkpoint", snapshot / "gamemode=2")
    return snapshot


@pytest.mark.slow
def test_hub_cache_loads_offline_through_huggingface_hub(tmp_path):
    """A version name resolves to its repo and loads from the HF cache with the hub unreachable."""
    snapshot = _hub_cache(tmp_path / "hub", "OliBomby/Mapperatorinator-v32")
    code = (
        "from engine.checkpoint import load_checkpoint\n"
        "root = load_checkpoint('v32')\n"
        "catch = load_checkpoint('v32', gamemode=2)\n"
        "print(root.path, catch.path, catch.subfolder, root.version)\n"
    )
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path / "hub"), HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "home"))
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    root_path, catch_path, subfolder, version = out.stdout.split()
    assert Path(root_path) == snapshot and Path(catch_path) == snapshot / "gamemode=2"
    assert subfolder == "gamemode=2" and version == "v32"


@pytest.mark.slow
def test_missing_model_offline_says_how_to_download(tmp_path):
    code = "from engine.checkpoint import load_checkpoint\nload_checkpoint('v31')\n"
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path / "hub"), HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "home"))
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "mapperator download OliBomby/Mapperatorinator-v31" in out.stderr


@pytest.mark.parametrize("version", ["v30", "v32"])  # v30: radial-basis conditioning embedders too
def test_loading_builds_the_skeleton_without_drawing_weights(version):
    """A checkpoint's modules are built on the meta device with their initializers skipped and its tensors made
    without torch's Python references: drawing random numbers on meta tensors imports torch._dynamo, and
    empty_like of them sympy, ~1.4 s of every process's first load between them (a CLI run pays it each time)."""
    script = ("import sys; from engine.checkpoint import load_checkpoint; "
              f"c = load_checkpoint({str(need(UPSTREAM / version / 'checkpoint'))!r}); "
              "print('torch._dynamo' in sys.modules or 'sympy' in sys.modules, "
              "c.model.spectrogram.transform.mel_scale.fb.abs().sum().item())")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    imported, fb_sum = done.stdout.split()
    assert imported == "False"
    stored = load_checkpoint(str(UPSTREAM / version / "checkpoint")).model.spectrogram.transform.mel_scale.fb
    assert float(fb_sum) == stored.abs().sum().item() > 0


def test_a_model_built_in_another_thread_while_one_loads_keeps_its_initial_weights():
    def linear() -> torch.nn.Linear:
        torch.manual_seed(5)
        return torch.nn.Linear(8, 8)

    expected = linear().weight.detach().clone()
    built: list[torch.nn.Linear] = []
    untouched = torch.zeros(8, 8)
    with _WithoutInitializers():
        worker = threading.Thread(target=lambda: built.append(linear()))
        worker.start()
        worker.join()
        torch.nn.init.normal_(untouched)
        torch.nn.init.kaiming_uniform_(untouched)
    assert torch.equal(built[0].weight, expected)
    assert not untouched.any()
