"""Errors a user meets with a LoRA adapter (the Generate tab's and the wizard's lora_path) or with V29's
osu-diffusion checkpoint (diff_ckpt: finding it, refusing unsafe pickles, its options) reach the app in the
user's language through ``i18n.error_text``, while ``str(error)`` and the CLI stay English."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from engine.errors import ModelError, OptionError
from mapperator_app import i18n
from tests.conftest import UPSTREAM, need

DIFFUSION = Path(__file__).parent / "fixtures" / "diffusion"
LANGS = ["fr", "ja"]


def shown(error: BaseException, lang: str) -> str:
    return i18n.error_text(error, lang)


def translated(key: str, lang: str) -> str:
    text = i18n.catalogue(lang)[key]
    assert text != i18n.catalogue("en")[key]
    return text


# --- LoRA adapters ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def v32():
    from engine.checkpoint import load_checkpoint

    return load_checkpoint(str(need(UPSTREAM / "trained" / "v32" / "checkpoint")))


def adapter_folder(root: Path, metadata: dict | None = None, config: dict | None = None) -> Path:
    folder = root / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps(config or {}), encoding="utf-8")
    if metadata is not None:
        (folder / "mapperatorinator_lora_metadata.json").write_text(json.dumps(metadata), encoding="utf-8")
    return folder


def apply(checkpoint, lora_path) -> ModelError:
    from engine.lora import apply_lora

    with pytest.raises(ModelError) as caught:
        apply_lora(checkpoint, str(lora_path))
    return caught.value


@pytest.mark.parametrize("lang", LANGS)
def test_a_lora_path_that_is_neither_folder_nor_repo_is_refused_in_the_users_language(v32, tmp_path, lang):
    where = tmp_path / "nowhere" / "adapter"
    error = apply(v32, where)
    assert str(error) == f"lora_path {str(where)!r} is neither a folder nor a Hugging Face repo id"
    assert shown(error, lang) == i18n.t("error.lora.bad_path", lang, path=repr(str(where)))
    assert "neither a folder" not in shown(error, lang)


@pytest.mark.parametrize("lang", LANGS)
def test_a_folder_without_adapter_config_names_the_missing_file_in_the_users_language(v32, tmp_path, lang):
    error = apply(v32, tmp_path)
    assert str(error) == f"{tmp_path} is not a LoRA adapter folder (adapter_config.json is missing)"
    text = shown(error, lang)
    assert text == translated("error.lora.not_adapter_folder", lang).format(path=tmp_path, file="adapter_config.json")
    assert "adapter_config.json" in text and "is missing" not in text


@pytest.mark.parametrize("lang", LANGS)
def test_a_file_given_as_lora_path_asks_for_its_folder_in_the_users_language(v32, tmp_path, lang):
    file = tmp_path / "adapter_model.safetensors"
    file.write_bytes(b"")
    error = apply(v32, file)
    assert str(error) == f"lora_path {file} is a file; give the adapter's folder"
    assert shown(error, lang) == translated("error.lora.path_is_file", lang).format(path=file)


@pytest.mark.parametrize("lang, root", [("fr", "(racine)"), ("ja", "（ルート）")])
def test_an_adapter_for_another_gamemode_names_the_root_model_in_the_users_language(v32, tmp_path, lang, root):
    folder = adapter_folder(tmp_path, {"format_version": 1, "ckpt_subfolders": ["gamemode=0"]})
    error = apply(v32, folder)
    assert str(error) == (f"LoRA adapter {folder} applies to the checkpoint subfolder(s) 'gamemode=0', but the loaded "
                          f"model is {v32.source} (root); pick the matching model (gamemode) or another adapter")
    text = shown(error, lang)
    assert text == i18n.t("error.lora.other_subfolder", lang, adapter=str(folder), allowed="'gamemode=0'",
                          model=v32.source, subfolder=root)
    assert "(root)" not in text and "pick the matching" not in text


@pytest.mark.parametrize("lang", LANGS)
def test_an_adapter_trained_on_another_version_is_refused_in_the_users_language(v32, tmp_path, lang):
    base = {"source": "OliBomby/Mapperatorinator-v30", "subfolder": "", "version": "v30", "fingerprint": None}
    folder = adapter_folder(tmp_path, {"format_version": 1, "ckpt_subfolders": None, "base_model": base})
    error = apply(v32, folder)
    assert str(error) == (f"LoRA adapter {folder} was trained on OliBomby/Mapperatorinator-v30 (v30), a v30 model; it "
                          f"cannot be applied to this v32 model ({v32.source})")
    assert shown(error, lang) == i18n.t("error.lora.other_version", lang, adapter=str(folder),
                                        base="OliBomby/Mapperatorinator-v30 (v30)", version="v30",
                                        model_version="v32", model=v32.source)
    assert "cannot be applied" not in shown(error, lang)


@pytest.mark.parametrize("lang", LANGS)
def test_a_malformed_subfolder_list_is_named_in_the_users_language(v32, tmp_path, lang):
    folder = adapter_folder(tmp_path, {"format_version": 1, "ckpt_subfolders": "gamemode=0"})
    error = apply(v32, folder)
    path = folder / "mapperatorinator_lora_metadata.json"
    assert str(error) == f"{path}: 'ckpt_subfolders' must be a list of folder names or null, not 'gamemode=0'"
    assert shown(error, lang) == translated("error.lora.bad_subfolders", lang).format(path=path, value="'gamemode=0'")


@pytest.mark.parametrize("lang", LANGS)
def test_an_adapter_for_modules_this_model_lacks_is_refused_in_the_users_language(v32, tmp_path, lang):
    folder = adapter_folder(tmp_path, config={"target_modules": ["q_proj", "k_proj"]})
    error = apply(v32, folder)
    assert str(error).startswith(f"LoRA adapter {folder} targets q_proj, k_proj, which this model does not have")
    assert str(error).endswith("it was made for another model version")
    layers = error.message_args["layers"]
    assert "Wqkv" in layers
    assert shown(error, lang) == i18n.t("error.lora.missing_modules", lang, adapter=str(folder),
                                        targets="q_proj, k_proj", layers=layers)


@pytest.mark.parametrize("lang", LANGS)
def test_a_lora_repo_not_downloaded_while_offline_says_what_to_do_in_the_users_language(v32, monkeypatch, lang):
    import huggingface_hub
    from huggingface_hub.errors import LocalEntryNotFoundError

    def offline(*_args, **_kwargs):
        raise LocalEntryNotFoundError("no connection and not in the cache")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    error = apply(v32, "nobody/no-such-adapter")
    assert str(error) == ("LoRA adapter nobody/no-such-adapter is not downloaded yet and the Hugging Face hub cannot "
                          "be reached; connect to the internet or point lora_path at a local folder")
    text = shown(error, lang)
    assert text == translated("error.lora.offline_missing", lang).format(adapter="nobody/no-such-adapter")
    assert "lora_path" in text and "not downloaded yet" not in text


# --- osu-diffusion checkpoints -----------------------------------------------------------------------------


def diffusion_copy(tmp_path: Path) -> Path:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    for name in ("model_ema.pkl", "tokenizer.pkl"):
        (folder / name).write_bytes((need(DIFFUSION / "checkpoint") / name).read_bytes())
    return folder


def load_diffusion(folder, tmp_path, **kwargs) -> ModelError:
    from engine.diffusion import load_diffusion_model

    with pytest.raises(ModelError) as caught:
        load_diffusion_model(folder, cache_dir=tmp_path / "cache", **kwargs)
    return caught.value


@pytest.mark.parametrize("lang", LANGS)
def test_a_diffusion_folder_missing_its_tokenizer_is_named_in_the_users_language(tmp_path, lang):
    folder = diffusion_copy(tmp_path)
    (folder / "tokenizer.pkl").unlink()
    error = load_diffusion(folder, tmp_path, heads=2)
    assert str(error) == f"{folder}: not an osu-diffusion checkpoint (missing tokenizer.pkl)"
    assert shown(error, lang) == translated("error.diffusion.not_checkpoint", lang).format(folder=folder,
                                                                                          files="tokenizer.pkl")


@pytest.mark.parametrize("lang", LANGS)
def test_a_diff_ckpt_that_names_nothing_is_refused_in_the_users_language(tmp_path, lang):
    error = load_diffusion("no-such-diffusion-model", tmp_path)
    assert str(error) == "no-such-diffusion-model: no such diffusion checkpoint folder or Hugging Face repo"
    assert shown(error, lang) == translated("error.diffusion.no_such_checkpoint", lang).format(
        checkpoint="no-such-diffusion-model")


@pytest.mark.parametrize("lang", LANGS)
def test_a_diffusion_repo_not_in_the_cache_offline_says_what_to_do_in_the_users_language(tmp_path, monkeypatch,
                                                                                         lang):
    from engine import checkpoint

    monkeypatch.setattr(checkpoint, "hub_online", lambda *_: False)
    error = load_diffusion("nobody/no-such-diffusion", tmp_path)
    assert str(error).startswith("nobody/no-such-diffusion (model_ema.pkl, tokenizer.pkl) is not downloaded yet")
    text = shown(error, lang)
    assert text == translated("error.diffusion.offline_missing", lang).format(
        checkpoint="nobody/no-such-diffusion", files="model_ema.pkl, tokenizer.pkl")
    assert "diff_ckpt" in text and "not downloaded yet" not in text


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("lang", LANGS)
def test_a_pickle_that_runs_code_is_refused_in_the_users_language(tmp_path, lang):
    folder, marker = diffusion_copy(tmp_path), tmp_path / "pwned"
    torch.save({"num_classes": 0, "evil": _RunsCode(marker)}, folder / "tokenizer.pkl")
    error = load_diffusion(folder, tmp_path, heads=2)
    name = error.message_args["name"]
    assert name in ("'posix.system'", "'nt.system'")
    assert str(error) == (f"{folder / 'tokenizer.pkl'}: refused to load: it names {name}, which a diffusion checkpoint "
                          "never contains (only tensors and plain values are allowed)")
    assert shown(error, lang) == translated("error.diffusion.refused_global", lang).format(
        path=folder / "tokenizer.pkl", name=name)
    assert not marker.exists()


@pytest.mark.parametrize("lang", LANGS)
def test_a_protocol_4_pickle_is_refused_in_the_users_language(tmp_path, lang):
    folder = diffusion_copy(tmp_path)
    torch.save({"x": _RunsCode(tmp_path / "pwned")}, folder / "tokenizer.pkl", pickle_protocol=4)
    error = load_diffusion(folder, tmp_path, heads=2)
    assert "refused to load: its pickle names a global through STACK_GLOBAL" in str(error)
    assert shown(error, lang) == translated("error.diffusion.refused_opcode", lang).format(
        path=folder / "tokenizer.pkl", opcode="STACK_GLOBAL")


@pytest.mark.parametrize("lang", LANGS)
def test_a_cut_off_pickle_asks_for_a_new_download_in_the_users_language(tmp_path, lang):
    folder = diffusion_copy(tmp_path)
    data = (folder / "model_ema.pkl").read_bytes()
    (folder / "model_ema.pkl").write_bytes(data[: len(data) // 2])
    error = load_diffusion(folder, tmp_path, heads=2)
    reason = error.message_args["reason"]
    assert str(error) == (f"{folder / 'model_ema.pkl'}: incomplete or not a PyTorch zip checkpoint ({reason}); "
                          "download the file again")
    text = shown(error, lang)
    assert text == translated("error.diffusion.not_zip", lang).format(path=folder / "model_ema.pkl", reason=reason)
    assert "download the file again" not in text


@pytest.mark.parametrize("lang", LANGS)
def test_a_bad_tokenizer_field_is_named_in_the_users_language(tmp_path, lang):
    folder = diffusion_copy(tmp_path)
    torch.save({"num_classes": "many", "num_diff_classes": 26, "max_difficulty": 12}, folder / "tokenizer.pkl")
    error = load_diffusion(folder, tmp_path, heads=2)
    assert str(error) == f"{folder / 'tokenizer.pkl'}: num_classes must be a count, got 'many'"
    reason = translated("error.diffusion.tokenizer_count", lang).format(key="num_classes", value="'many'")
    assert shown(error, lang) == i18n.t("error.diffusion.bad_tokenizer", lang, path=str(folder / "tokenizer.pkl"),
                                        reason=reason)


@pytest.mark.parametrize("lang", LANGS)
def test_an_unpublished_dit_width_asks_for_the_head_count_in_the_users_language(tmp_path, lang):
    folder = diffusion_copy(tmp_path)
    error = load_diffusion(folder, tmp_path)
    width = error.message_args["reason"].message_args["width"]
    assert str(error) == (f"{folder / 'model_ema.pkl'}: not an osu-diffusion DiT state dict (a DiT {width} wide is "
                          "not a published size; give its head count)")
    reason = translated("error.diffusion.unpublished_width", lang).format(width=width)
    assert shown(error, lang) == i18n.t("error.diffusion.not_dit", lang, path=str(folder / "model_ema.pkl"),
                                        reason=reason)


# --- refinement options -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def diffusion_model(tmp_path_factory):
    from engine.diffusion import load_diffusion_model

    return load_diffusion_model(need(DIFFUSION / "checkpoint"), cache_dir=tmp_path_factory.mktemp("cache"), heads=2)


def refine_error(model, **options) -> OptionError:
    from engine.diffusion import DiffusionConditioning, DiffusionOptions, refine_positions
    from engine.tokenizer import Event, EventType

    case = json.loads((DIFFUSION / "one_window" / "case.json").read_text())
    events = [Event(EventType(t), v) for t, v in case["events"]]
    with pytest.raises(OptionError) as caught:
        refine_positions(events, DiffusionConditioning(difficulty=5.0), DiffusionOptions(model=model, **options))
    return caught.value


@pytest.mark.parametrize("lang", LANGS)
def test_a_non_finite_guidance_scale_is_refused_in_the_users_language(diffusion_model, lang):
    error = refine_error(diffusion_model, cfg_scale=float("nan"))
    assert str(error) == "diff_cfg_scale must be a finite number, got nan"
    assert shown(error, lang) == translated("error.diffusion.cfg_scale", lang).format(value="nan")


@pytest.mark.parametrize("lang", LANGS)
def test_a_window_too_short_for_its_overlap_is_refused_in_the_users_language(diffusion_model, lang):
    error = refine_error(diffusion_model, max_seq_len=256, overlap_buffer=128)
    assert str(error) == "max_seq_len (256) must be more than twice overlap_buffer (128)"
    assert shown(error, lang) == translated("error.diffusion.seq_len", lang).format(max_seq_len=256,
                                                                                   overlap_buffer=128)
