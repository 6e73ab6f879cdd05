"""Errors a user meets with checkpoints, tokenizers, prompts, timing grids, outputs, rule checks and MaiMod, and
MaiMod's suggestions themselves, reach the app in the user's language (``i18n.error_text`` / ``i18n.render``, as
the tabs show them), while ``str()`` and the CLI stay English word for word."""
from __future__ import annotations

import pytest

from engine.beatmap import read_beatmap
from engine.checkpoint import load_checkpoint
from engine.errors import BeatmapError, ModelError, OptionError
from mapperator_app import i18n

from .conftest import UPSTREAM, need
from .test_checkpoint_hardening import backbone, edited_config, edited_tokenizer, write_checkpoint

LANGS = ["fr", "ja"]
TRAINED = UPSTREAM / "trained"


def shown(error: BaseException, lang: str) -> str:
    return i18n.error_text(error, lang)


def word(key: str, lang: str) -> str:
    """A catalogue text that must differ from English (else the test could not tell the languages apart)."""
    text = i18n.catalogue(lang)[key]
    assert text != i18n.catalogue("en")[key]
    return text


def field_error(lang: str, where: str, field: str, problem: str) -> str:
    return i18n.t("error.json.field", lang, where=where, field=field, problem=problem,
                  damaged=word("error.json.damaged_model", lang))


# --- checkpoints and tokenizers ------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_a_missing_config_field_is_named_in_the_users_language(tmp_path, lang):
    config = edited_config(lambda c: c["backbone_config"].pop("d_model"))
    folder = write_checkpoint(tmp_path / "ckpt", "v32", config=config)
    with pytest.raises(ModelError) as caught:
        load_checkpoint(str(folder))
    where = str(folder / "config.json")
    assert str(caught.value) == (f"{where}: backbone_config.d_model is missing; the checkpoint is damaged or not a "
                                 "Mapperatorinator model")
    assert shown(caught.value, lang) == field_error(lang, where, "backbone_config.d_model",
                                                    word("error.json.field_missing", lang))


@pytest.mark.parametrize("lang", LANGS)
def test_a_config_size_out_of_range_keeps_its_numbers_in_the_users_language(tmp_path, lang):
    folder = write_checkpoint(tmp_path / "ckpt", "v32", config=edited_config(backbone(decoder_layers=10**6)))
    with pytest.raises(ModelError) as caught:
        load_checkpoint(str(folder))
    assert "backbone_config.decoder_layers=1000000 is out of range (1..48 expected); the checkpoint" in str(caught.value)
    problem = i18n.t("error.json.out_of_range", lang, value="1000000", lo=1, hi=48)
    assert shown(caught.value, lang) == field_error(lang, str(folder / "config.json"), "backbone_config.decoder_layers",
                                                    problem)
    assert "out of range" not in shown(caught.value, lang)


@pytest.mark.parametrize("lang", LANGS)
def test_attention_heads_that_do_not_divide_d_model_are_explained_in_the_users_language(tmp_path, lang):
    folder = write_checkpoint(tmp_path / "ckpt", "v32", config=edited_config(backbone(decoder_attention_heads=5)))
    with pytest.raises(ModelError) as caught:
        load_checkpoint(str(folder))
    assert "backbone_config.d_model=64 is not divisible by decoder_attention_heads=5;" in str(caught.value)
    problem = i18n.t("error.checkpoint.heads_divide", lang, value=64, key="decoder_attention_heads", heads=5)
    assert shown(caught.value, lang) == field_error(lang, str(folder / "config.json"), "backbone_config.d_model",
                                                    problem)


@pytest.mark.parametrize("lang", LANGS)
def test_weights_that_do_not_fit_the_config_are_listed_in_the_users_language(tmp_path, lang):
    config = edited_config(lambda c: c["backbone_config"].update(decoder_layers=c["backbone_config"]["decoder_layers"] + 1))
    folder = write_checkpoint(tmp_path / "ckpt", "v32", config=config)
    with pytest.raises(ModelError) as caught:
        load_checkpoint(str(folder))
    text = str(caught.value)
    assert text.startswith(f"weights in {folder} do not fit its config.json: missing ")
    keys = text.split(": missing ", 1)[1]
    missing = i18n.t("error.checkpoint.missing_weights", lang, keys=keys)
    assert shown(caught.value, lang) == i18n.t("error.checkpoint.weights_misfit", lang, where=str(folder),
                                               details=missing)
    assert "do not fit" not in shown(caught.value, lang)


@pytest.mark.parametrize("lang", LANGS)
def test_an_unknown_event_type_in_tokenizer_json_is_named_in_the_users_language(tmp_path, lang):
    tokenizer = edited_tokenizer(lambda t: t["event_ranges"][0].update(type="laser"))
    folder = write_checkpoint(tmp_path / "ckpt", "v32", tokenizer=tokenizer)
    with pytest.raises(ModelError) as caught:
        load_checkpoint(str(folder))
    where = str(folder / "tokenizer.json")
    assert str(caught.value) == (f"{where}: event_ranges[0].type='laser' is not an event type Mapperator knows; "
                                 "the checkpoint is damaged or not a Mapperatorinator model")
    problem = word("error.tokenizer.unknown_event", lang).format(value="'laser'")
    assert shown(caught.value, lang) == field_error(lang, where, "event_ranges[0].type", problem)


@pytest.mark.parametrize("lang", LANGS)
def test_tokenizer_ranges_past_the_limit_are_refused_in_the_users_language(tmp_path, lang):
    tokenizer = edited_tokenizer(lambda t: [r.update(min_value=0, max_value=200_000)
                                            for r in t["input_event_ranges"][:3]])
    folder = write_checkpoint(tmp_path / "ckpt", "v32", tokenizer=tokenizer)
    with pytest.raises(ModelError) as caught:
        load_checkpoint(str(folder))
    assert "tokenizer.json: the event ranges add up to 60" in str(caught.value)
    args = caught.value.message_args
    assert shown(caught.value, lang) == i18n.t("error.tokenizer.too_many_tokens", lang, where=args["where"],
                                               count=args["count"], limit=args["limit"],
                                               damaged=word("error.json.damaged_model", lang))


# --- prompts -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_an_output_the_model_was_not_trained_for_is_refused_in_the_users_language(lang):
    from engine.presets import PRESETS
    from engine.prompt import plan_contexts
    from engine.tokenizer import ContextType

    with pytest.raises(OptionError) as caught:
        plan_contexts(PRESETS["v30"].data, requested=[ContextType.TIMING])
    assert str(caught.value).startswith("this model cannot produce timing from no reference; it was trained for: ")
    text = shown(caught.value, lang)
    assert word("error.prompt.no_reference", lang) in text and "no reference" not in text
    assert "trained for" not in text and "-> map" in text


@pytest.mark.parametrize("lang", LANGS)
def test_a_year_the_model_has_no_token_for_is_refused_in_the_users_language(lang):
    from engine.presets import PRESETS
    from engine.prompt.conditions import Conditions, class_tokens
    from engine.tokenizer import Tokenizer

    tokenizer = Tokenizer.from_file(need(UPSTREAM / "v32" / "checkpoint" / "tokenizer.json"))
    flags = PRESETS["v32"].data
    with pytest.raises(OptionError) as caught:
        class_tokens(tokenizer, flags, Conditions(year=1800), 60_000.0)
    assert str(caught.value).startswith("this model cannot take year 1800: year value 1800 outside [")
    reason = caught.value.message_args["reason"].message_args
    assert shown(caught.value, lang) == i18n.t(
        "error.prompt.cannot_take", lang, what=word("error.prompt.year", lang), value="1800",
        reason=i18n.t("error.tokenizer.value_outside", lang, **reason))


@pytest.mark.parametrize("lang", LANGS)
def test_an_unknown_gamemode_is_refused_in_the_users_language(lang):
    from engine.prompt.conditions import Conditions

    with pytest.raises(OptionError) as caught:
        Conditions(gamemode=7)
    assert str(caught.value) == "gamemode must be 0 (osu!), 1 (taiko), 2 (catch) or 3 (mania), not 7"
    assert shown(caught.value, lang) == word("error.prompt.gamemode", lang).format(gamemode=7)


# --- timing grids, outputs, rule checks -------------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGS)
def test_timing_without_timing_points_is_refused_in_the_users_language(lang):
    from engine.events.contexts import timing_events
    from engine.presets import PRESETS

    with pytest.raises(BeatmapError) as caught:
        timing_events([], PRESETS["v32"].data)
    assert str(caught.value) == "<beatmap>: no timing points were given, so there is no beat grid to tokenize"
    assert shown(caught.value, lang) == i18n.t("error.beatmap_file", lang, path="<beatmap>",
                                               reason=word("error.events.no_timing", lang))


@pytest.mark.parametrize("lang", LANGS)
def test_a_beat_grid_too_large_names_its_beats_in_the_users_language(beatmaps_dir, monkeypatch, lang):
    from engine.events import timing_streams
    from engine.events.contexts import timing_events
    from engine.presets import PRESETS

    path = next(p for p in sorted(beatmaps_dir.rglob("*.osu")))
    beatmap = read_beatmap(path)
    monkeypatch.setattr(timing_streams, "MAX_GRID_BEATS", 3)
    with pytest.raises(BeatmapError) as caught:
        timing_events(beatmap, PRESETS["v32"].data)
    assert str(caught.value).startswith(f"{path}: its timing makes a beat grid of ")
    assert str(caught.value).endswith(" beats, more than the 3 a song can have; check the timing points' beat lengths")
    beats = caught.value.message_args["reason"].message_args["beats"]
    assert shown(caught.value, lang) == i18n.t("error.beatmap_file", lang, path=str(path), reason=i18n.t(
        "error.events.grid_too_large", lang, beats=beats, limit=3))


@pytest.mark.parametrize("lang", LANGS)
def test_packing_an_osz_without_its_audio_is_refused_in_the_users_language(beatmaps_dir, tmp_path, lang):
    from engine.postprocess.output import export_osz

    beatmap = read_beatmap(next(p for p in sorted(beatmaps_dir.rglob("*.osu"))))
    audio = tmp_path / "gone.mp3"
    with pytest.raises(BeatmapError) as caught:
        export_osz(beatmap, tmp_path, audio)
    assert str(caught.value) == f"{audio}: the audio file to pack is missing"
    assert shown(caught.value, lang) == i18n.t("error.beatmap_file", lang, path=str(audio),
                                               reason=word("error.output.audio_missing", lang))
    assert not list(tmp_path.glob("*.osz"))


@pytest.mark.parametrize("lang", LANGS)
def test_an_unknown_rule_check_is_refused_in_the_users_language(beatmaps_dir, lang):
    from engine.rules import RULES, check_beatmap

    beatmap = read_beatmap(next(p for p in sorted(beatmaps_dir.rglob("*.osu"))))
    with pytest.raises(OptionError) as caught:
        check_beatmap(beatmap, checks=["no_such_check"])
    assert str(caught.value) == f"unknown rule check(s) 'no_such_check'; known checks: {', '.join(RULES)}"
    assert shown(caught.value, lang) == word("error.rules.unknown_checks", lang).format(
        checks="'no_such_check'", known=", ".join(RULES))


# --- MaiMod --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def damaged_map_suggestions():
    from engine.maimod import ai_mod

    folder = TRAINED / "v30" / "maimod" / "std_damaged"
    beatmap = read_beatmap(need(folder / "synth150_std_damaged.osu"))
    return ai_mod(beatmap, need(TRAINED / "audio" / "synth150.wav"), str(need(TRAINED / "v30" / "checkpoint")),
                  device="cpu")


@pytest.mark.parametrize("lang", LANGS)
def test_a_model_for_other_game_modes_is_refused_in_the_users_language(lang):
    from engine.maimod import load_model

    folder = need(TRAINED / "v30" / "checkpoint")
    with pytest.raises(OptionError) as caught:
        load_model(str(folder), 1, device="cpu")
    assert str(caught.value) == f"the v30 model at {folder} maps game modes 0 only; this beatmap is game mode 1"
    assert shown(caught.value, lang) == word("error.maimod.model_gamemodes", lang).format(
        model="v30", folder=folder, modes="0", gamemode=1)


@pytest.mark.parametrize("lang", LANGS)
def test_maimod_names_event_types_in_the_users_language(damaged_map_suggestions, lang):
    from mapperator_app.forms import suggestion_records

    by_text = {str(s.message): s for s in damaged_map_suggestions}
    # English stays upstream's report word for word
    assert {"Expected a Last Anchor instead of a Slider End.", "Expected a Circle instead of a Last Anchor.",
            "Expected Snap 1/1 instead of Pos X x:216.",
            "Expected distance 167 to the previous Circle instead of 149."} <= set(by_text)
    shown_rows = {str(s.message): row["message"]
                  for s, row in zip(damaged_map_suggestions, suggestion_records(damaged_map_suggestions, lang))}

    def event(name: str) -> str:
        return word(f"maimod.event.{name}", lang)

    assert shown_rows["Expected a Last Anchor instead of a Slider End."] == i18n.t(
        "maimod.type", lang, expected_type=event("last_anchor"), real_type=event("slider_end"))
    assert shown_rows["Expected Snap 1/1 instead of Pos X x:216."] == i18n.t(
        "maimod.fallback", lang, expected_type=i18n.catalogue(lang)["maimod.event.snap"], expected_value="1/1",
        real_type=event("pos_x"), real_value="x:216")
    assert shown_rows["Expected distance 167 to the previous Circle instead of 149."] == i18n.t(
        "maimod.distance", lang, expected_value="167", previous_group=event("circle"), real_value="149")
    for text in shown_rows.values():
        assert not any(name in text for name in ("Last Anchor", "Slider End", "Pos X", "Circle"))


def test_every_event_type_has_its_own_message_with_upstreams_english_name():
    from engine.maimod.explain import type_name
    from engine.tokenizer import EventType

    for event_type in EventType:
        name = type_name(event_type)
        assert name.message_id == f"maimod.event.{event_type.value}"
        assert str(name) == event_type.value.replace("_", " ").title()
        assert i18n.catalogue("de").get(name.message_id)
