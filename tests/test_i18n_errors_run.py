"""Errors a user meets while setting up and running a job (generation, timing, MaiMod, evaluation, options,
devices, installing a set) reach the app in the user's language through ``i18n.error_text``, while
``str(error)`` (the CLI, logs) stays the English text it always was."""
from __future__ import annotations

import shutil
import threading

import pytest
import torch

import engine
from engine.errors import AudioError, BeatmapError, Cancelled, OptionError
from engine.options import GenerateOptions, build_options, parse_overrides
from mapperator_app import i18n

from .conftest import EDGE_CASES, UPSTREAM, need

TRAINED = UPSTREAM / "trained"
SONG = TRAINED / "audio" / "synth150.wav"
V32 = TRAINED / "v32" / "checkpoint"
STD_MAP = TRAINED / "audio" / "synth150_std.osu"
LANGS = ["fr", "ja"]


def options(tmp_path, **kw) -> GenerateOptions:
    base = dict(audio_path=str(need(SONG)), output_path=str(tmp_path / "out"), model_path=str(need(V32)),
                gamemode=0, do_sample=False, seed=1, device="cpu")
    base.update(kw)
    return GenerateOptions(**base)


def translated(error: BaseException, english: str, key: str, lang: str) -> str:
    """The error in ``lang``, checked to be the catalogue's text for ``key`` (not the English one)."""
    assert str(error) == english
    assert error.message_id == key
    text = i18n.error_text(error, lang)
    assert text == i18n.t(key, lang, **error.message_args)
    assert text != english and i18n.catalogue(lang)[key] != i18n.catalogue("en")[key]
    return text


# --- generation -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_a_missing_song_is_named_in_the_users_language(tmp_path, lang):
    missing = tmp_path / "song.mp3"
    with pytest.raises(AudioError) as caught:
        engine.generate(options(tmp_path, audio_path=str(missing)))
    translated(caught.value, f"audio file {missing} not found", "error.audio.file_not_found", lang)


@pytest.mark.parametrize("lang", LANGS)
def test_add_to_beatmap_without_a_reference_is_refused_in_the_users_language(tmp_path, lang):
    with pytest.raises(OptionError) as caught:
        engine.generate(options(tmp_path, add_to_beatmap=True))
    translated(caught.value, "add_to_beatmap needs a reference beatmap: set beatmap_path",
               "error.generation.add_needs_reference", lang)


@pytest.mark.parametrize("lang", LANGS)
def test_an_output_folder_that_is_a_file_explains_both_parts_in_the_users_language(tmp_path, lang):
    blocker = tmp_path / "out"
    blocker.write_text("not a folder")
    with pytest.raises(OptionError) as caught:
        engine.generate(options(tmp_path, output_path=str(blocker)))
    error = caught.value
    assert str(error) == f"cannot write to the output folder {blocker}: {blocker} is a file, not a folder"
    assert error.message_id == "error.generation.output_not_writable"
    reason = i18n.t("error.generation.output_is_file", lang, path=str(blocker))
    assert i18n.error_text(error, lang) == i18n.t("error.generation.output_not_writable", lang, folder=str(blocker),
                                                 reason=reason)
    assert "is a file" not in i18n.error_text(error, lang)


@pytest.mark.parametrize("lang", LANGS)
def test_an_unknown_context_is_refused_in_the_users_language(tmp_path, lang):
    with pytest.raises(OptionError) as caught:
        engine.generate(options(tmp_path, in_context=("lyrics",)))
    valid = ", ".join(c.name for c in engine.ContextType)
    translated(caught.value, f"in_context: unknown context 'lyrics'; use some of {valid}",
               "error.generation.unknown_context", lang)


@pytest.mark.parametrize("lang", LANGS)
def test_lookback_and_lookahead_that_leave_nothing_are_refused_with_the_languages_numbers(tmp_path, lang):
    with pytest.raises(OptionError) as caught:  # engine.windows.WindowLayout, checked first by generate
        engine.generate(options(tmp_path, lookback=0.6, lookahead=0.5))
    text = translated(caught.value, "lookback (0.6) and lookahead (0.5) must each be in [0, 1) and leave part of "
                      "the window to generate (their sum below 1)", "error.windows.lookback_lookahead", lang)
    assert ("0,6" in text and "0,5" in text) if lang == "fr" else ("0.6" in text and "0.5" in text)


# --- options ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_a_word_without_equals_sign_is_refused_in_the_users_language(lang):
    with pytest.raises(OptionError) as caught:
        parse_overrides(GenerateOptions, ["audio_path=song.mp3", "difficulty"])
    translated(caught.value, "expected key=value, got 'difficulty'", "error.options.expected_key_value", lang)


@pytest.mark.parametrize("lang", LANGS)
def test_a_missing_config_file_is_named_in_the_users_language(tmp_path, lang):
    missing = tmp_path / "inference.yaml"
    with pytest.raises(OptionError) as caught:
        parse_overrides(GenerateOptions, [f"config={missing}"])
    translated(caught.value, f"config file {missing} not found", "error.options.config_not_found", lang)


@pytest.mark.parametrize("lang", LANGS)
def test_a_retired_upstream_option_is_explained_in_the_users_language(lang):
    with pytest.raises(OptionError) as caught:
        build_options(GenerateOptions, {"parallel": True})
    translated(caught.value, "parallel=true (windows side by side) is not supported: windows are generated in order; "
               "leave parallel out or set it to false", "error.options.retired_parallel", lang)
    build_options(GenerateOptions, {"parallel": False})  # upstream's default still loads


@pytest.mark.parametrize("lang", LANGS)
def test_an_unknown_precision_is_refused_in_the_users_language(lang):
    with pytest.raises(OptionError) as caught:
        GenerateOptions(precision="fp8")
    assert str(caught.value).startswith("option precision='fp8' is not one of auto, fp32, bf16, amp, int8")
    assert caught.value.message_id == "error.options.precision_choice"
    text = i18n.error_text(caught.value, lang)
    assert text.startswith(i18n.t("error.options.precision_choice", lang, precision="'fp8'",
                                  choices="auto, fp32, bf16, amp, int8", suggestion=""))
    assert "is not one of" not in text


@pytest.mark.parametrize("lang", LANGS)
def test_a_file_name_too_long_for_any_file_system_is_refused_in_the_users_language(lang):
    name = "x" * 300
    with pytest.raises(OptionError) as caught:
        GenerateOptions(audio_path=f"/songs/{name}.mp3")
    shown = f"'{name[:39]}... (304 characters)"
    translated(caught.value, f"option audio_path has a file or folder name of 304 bytes ({shown}); file systems "
               "allow at most 255", "error.options.name_too_long_bytes", lang)


# --- devices and precision (engine.runtime, engine.quantize) -------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_an_unknown_device_is_refused_in_the_users_language(lang):
    from engine.runtime import pick_device

    with pytest.raises(OptionError) as caught:
        pick_device("gpu0")
    translated(caught.value, "device='gpu0' is not a device name (use auto, cpu, cuda, cuda:1 or mps)",
               "error.runtime.bad_device", lang)


@pytest.mark.parametrize("lang", LANGS)
def test_int8_on_a_gpu_is_refused_in_the_users_language(lang):
    from engine.runtime import resolve_precision

    with pytest.raises(OptionError) as caught:
        resolve_precision(torch.device("cuda"), "int8")
    translated(caught.value, "precision=int8 runs on the CPU only, and device=cuda was chosen: use device=cpu with "
               "int8, or precision=bf16 (or fp32) on cuda", "error.runtime.int8_on_gpu", lang)


@pytest.mark.parametrize("lang", LANGS)
def test_quantizing_a_model_off_the_cpu_is_refused_in_the_users_language(lang):
    from engine.quantize import int8_supported, quantize_int8

    if not int8_supported():
        pytest.skip("this PyTorch build has no int8 kernels")
    with pytest.raises(OptionError) as caught:
        quantize_int8(torch.nn.Linear(2, 2, device="meta"))
    translated(caught.value, "precision=int8 runs on the CPU only; use device=cpu, or precision=bf16 on a GPU",
               "error.quantize.cpu_only", lang)


@pytest.mark.parametrize("lang", LANGS)
def test_an_unknown_game_mode_is_refused_in_the_users_language(lang):
    with pytest.raises(OptionError) as caught:
        engine.gamemode_index("pinball")
    translated(caught.value, "game mode 'pinball' is not one of osu!, taiko, catch, mania (or 0-3)",
               "error.gamemodes.unknown", lang)


# --- timing, MaiMod, evaluation, installing a set -----------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_timing_with_v30_is_refused_in_the_users_language(tmp_path, lang):
    with pytest.raises(OptionError) as caught:
        engine.timing(engine.TimingOptions(audio_path=str(need(SONG)), model_path="v30", device="cpu"))
    translated(caught.value, "v30 has no timing context to generate timing with; use model v31, v32 or v32-mini",
               "error.timing.v30_no_timing", lang)


@pytest.mark.parametrize("lang", LANGS)
def test_maimod_on_a_map_without_objects_says_why_in_the_users_language(lang):
    path = need(EDGE_CASES / "corrupted-header.osu")
    with pytest.raises(BeatmapError) as caught:
        engine.mod(engine.ModOptions(beatmap_path=str(path), audio_path=str(need(SONG))))
    error = caught.value
    assert str(error) == (f"{path}: has no hit objects, so there is nothing for MaiMod to judge (rules=true ai=false "
                          "still runs the rule checks)")
    reason = i18n.catalogue(lang)["error.modding.no_hit_objects"]
    assert i18n.error_text(error, lang) == i18n.t("error.beatmap_file", lang, path=str(path), reason=reason)
    assert reason != i18n.catalogue("en")["error.modding.no_hit_objects"]


@pytest.mark.parametrize("lang", LANGS)
def test_cancelling_maimod_says_so_in_the_users_language(tmp_path, lang):
    shutil.copy(need(STD_MAP), tmp_path / "map.osu")
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled) as caught:
        engine.mod(engine.ModOptions(beatmap_path=str(tmp_path / "map.osu"), ai=False), cancel=cancel)
    translated(caught.value, "modding cancelled", "error.modding.cancelled", lang)


@pytest.mark.parametrize("lang", LANGS)
def test_evaluating_against_a_folder_without_matching_names_lists_them_in_the_users_language(tmp_path, lang):
    generated, reference = tmp_path / "generated", tmp_path / "reference"
    generated.mkdir()
    reference.mkdir()
    for i in range(5):
        shutil.copy(need(STD_MAP), generated / f"map{i}.osu")
    with pytest.raises(BeatmapError) as caught:
        engine.evaluate_all(generated, reference)
    error = caught.value
    assert str(error) == (f"{reference}: no reference of the same file name for map0.osu, map1.osu, map2.osu and 2 "
                          "more (pairs are matched by file name; give one reference file to compare every map with it)")
    names = i18n.t("error.evaluation.and_more", lang, names="map0.osu, map1.osu, map2.osu", count=2)
    reason = i18n.t("error.evaluation.no_reference_named", lang, names=names)
    assert i18n.error_text(error, lang) == i18n.t("error.beatmap_file", lang, path=str(reference), reason=reason)
    assert "more" not in i18n.error_text(error, lang)


@pytest.mark.parametrize("lang", LANGS)
def test_installing_a_set_twice_keeps_the_first_and_says_so_in_the_users_language(tmp_path, lang):
    songs = tmp_path / "Songs"
    songs.mkdir()
    osu = tmp_path / "map.osu"
    shutil.copy(need(STD_MAP), osu)
    folder = engine.install_mapset(osu, songs)
    with pytest.raises(OptionError) as caught:
        engine.install_mapset(osu, songs)
    translated(caught.value, f"{folder / 'map.osu'} already exists; not replacing it", "error.mapsets.osu_exists",
               lang)


@pytest.mark.parametrize("lang", LANGS)
def test_a_missing_songs_folder_is_named_in_the_users_language(tmp_path, lang):
    osu = tmp_path / "map.osu"
    shutil.copy(need(STD_MAP), osu)
    with pytest.raises(OptionError) as caught:
        engine.install_mapset(osu, tmp_path / "Songs")
    translated(caught.value, f"the osu! Songs folder {tmp_path / 'Songs'} does not exist; set it in Settings",
               "error.mapsets.no_songs_folder", lang)
