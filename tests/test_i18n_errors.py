"""Errors a user meets while reading beatmaps and archives or writing outputs reach the app in the user's
language (through ``i18n.error_text``, as the tabs and the wizard show them), while ``str(error)`` and the CLI
stay English."""
from __future__ import annotations

import errno
import html
import os

import pytest

from engine.beatmap import decoder
from engine.beatmap.decoder import read_beatmap
from engine.beatmap.files import OutputTransaction
from engine.beatmap.osz import read_osz
from engine.errors import BeatmapError
from mapperator_app import i18n


def shown(error: BaseException, lang: str) -> str:
    return i18n.error_text(error, lang)


@pytest.mark.parametrize("lang", ["fr", "ja"])
def test_a_broken_osu_is_explained_in_the_users_language(edge_cases_dir, lang):
    path = edge_cases_dir / "corrupted-header.osu"
    with pytest.raises(BeatmapError) as caught:
        read_beatmap(path, strict=True)
    error = caught.value
    assert str(error) == f"{path}, line 1: no 'osu file format vN' header; read as v14"
    reason = i18n.catalogue(lang)["beatmap.no_header"]
    assert shown(error, lang) == i18n.t("error.beatmap_line", lang, path=str(path), line=1, reason=reason)
    assert reason != i18n.catalogue("en")["beatmap.no_header"]


@pytest.mark.parametrize("lang", ["fr", "ja"])
def test_the_cap_on_hit_objects_names_its_numbers_in_the_users_language(edge_cases_dir, monkeypatch, lang):
    monkeypatch.setattr(decoder, "MAX_HIT_OBJECTS", 2)
    path = edge_cases_dir / "multi-segment-slider.osu"
    with pytest.raises(BeatmapError) as caught:
        read_beatmap(path)
    error = caught.value
    assert "hit objects, more than the 2 allowed" in str(error)
    count = error.message_args["reason"].message_args["what"].message_args["count"]
    what = i18n.t("beatmap.lines_of_hit_objects", lang, count=count, limit=2)
    assert i18n.t("beatmap.too_many", lang, what=what) in shown(error, lang)
    assert "hit objects" not in shown(error, lang)


@pytest.mark.parametrize("lang", ["fr", "ja"])
def test_a_line_ignored_in_strict_mode_keeps_the_lines_own_reason(tmp_path, lang):
    path = tmp_path / "bad.osu"
    path.write_text("osu file format v14\n\n[HitObjects]\n1,2\n", encoding="utf-8")
    with pytest.raises(BeatmapError) as caught:
        read_beatmap(path, strict=True)
    assert str(caught.value).endswith("[HitObjects] line ignored: a hit object needs at least x,y,time,type,hitSound")
    inner = i18n.catalogue(lang)["beatmap.object_fields"]
    assert i18n.t("beatmap.line_ignored", lang, section="HitObjects", reason=inner) in shown(caught.value, lang)


@pytest.mark.parametrize("lang", ["fr", "ja"])
def test_an_osz_that_is_no_zip_is_refused_in_the_users_language(tmp_path, lang):
    path = tmp_path / "broken.osz"
    path.write_bytes(b"this is not a zip archive at all")
    with pytest.raises(BeatmapError) as caught:
        read_osz(path)
    assert str(caught.value).startswith(f"{path}: not a readable .osz archive: ")
    reason = caught.value.message_args["reason"].message_args["reason"]
    assert shown(caught.value, lang) == i18n.t("error.beatmap_file", lang, path=str(path),
                                               reason=i18n.t("osz.unreadable", lang, reason=reason))
    assert "not a readable" not in shown(caught.value, lang)


@pytest.mark.parametrize("lang, words", [("fr", "le disque est plein"), ("ja", "ディスクがいっぱいです")])
def test_a_full_disk_is_named_in_the_users_language(tmp_path, monkeypatch, lang, words):
    def full(*_):
        raise OSError(errno.ENOSPC, "No space left on device")

    target = tmp_path / "map.osu"
    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(BeatmapError) as caught:
        with OutputTransaction() as out:
            out.write(target, b"osu file format v14\n")
    assert str(caught.value) == f"{target}: cannot write the file: No space left on device"
    assert words in shown(caught.value, lang) and "No space left on device" in shown(caught.value, lang)
    assert not target.exists()


@pytest.mark.parametrize("lang, words", [("fr", "Connectez-vous à Internet"), ("ja", "インターネットに接続して")])
def test_a_model_not_downloaded_offline_says_what_to_do_in_the_users_language(lang, words):
    from engine import checkpoint
    from engine.errors import ModelError

    with pytest.raises(ModelError) as caught:
        checkpoint.download("nobody/no-such-model", online=False)
    assert "is not downloaded yet and the Hugging Face hub cannot be reached. Connect to the internet" in str(caught.value)
    text = shown(caught.value, lang)
    assert words in text and "`mapperator download nobody/no-such-model`" in text
    assert "is not downloaded yet" not in text


@pytest.mark.parametrize("lang", ["fr", "ja"])
def test_a_checkpoint_folder_without_config_is_named_incomplete_in_the_users_language(tmp_path, lang):
    from engine.checked_json import read_json
    from engine.errors import ModelError

    with pytest.raises(ModelError) as caught:
        read_json(tmp_path / "config.json")
    assert str(caught.value) == f"{tmp_path / 'config.json'} is missing: {tmp_path} is not a complete checkpoint"
    kind = i18n.catalogue(lang)["json.kind_checkpoint"]
    assert shown(caught.value, lang) == i18n.t("json.missing", lang, path=str(tmp_path / "config.json"),
                                               folder=str(tmp_path), kind=kind)


@pytest.mark.parametrize("lang, words", [("fr", "la mémoire de cet ordinateur"), ("ja", "このコンピューターのメモリ")])
def test_the_memory_estimate_is_explained_in_the_users_language(tmp_path, monkeypatch, lang, words):
    from engine import checkpoint
    from engine.errors import ModelError

    from .test_checkpoint_hardening import write_checkpoint

    folder = write_checkpoint(tmp_path / "ckpt", "v32")
    monkeypatch.setattr(checkpoint, "host_memory_bytes", lambda: 1_000_000)
    with pytest.raises(ModelError) as caught:
        checkpoint.load_checkpoint(str(folder))
    assert "this model has 1 M parameters and needs about 0.0 GB" in str(caught.value)
    text = shown(caught.value, lang)
    assert words in text and "this model" not in text
    assert ("0,0 Go" in text) if lang == "fr" else ("0.0 GB" in text)


@pytest.mark.parametrize("lang", ["fr", "ja"])
def test_a_mapset_request_that_makes_no_set_is_refused_in_the_users_language(tmp_path, lang):
    from engine.errors import OptionError
    from engine.mapset_job import MapsetOptions, row_options

    from .test_mapset import base

    with pytest.raises(OptionError) as caught:
        row_options(MapsetOptions(**base(tmp_path, difficulties=(2.0, 4.0), seeds=(1, 2, 3))))
    assert str(caught.value) == "seeds has 3 seeds for 2 maps"
    assert shown(caught.value, lang) == i18n.t("mapset.seeds_count", lang, seeds=3, maps=2) != str(caught.value)


@pytest.mark.parametrize("lang", ["fr", "ja"])
def test_the_mapset_gallery_cards_speak_the_users_language(tmp_path, lang):
    from types import SimpleNamespace

    from mapperator_app.tabs.mapset_gallery import Card, Gallery, gallery_html

    check = SimpleNamespace(flags=["unsnapped", "no red line"], asked_difficulty=5.0, summary_line=lambda: "")
    clean = SimpleNamespace(flags=[], asked_difficulty=None, summary_line=lambda: "")
    gallery = Gallery(SimpleNamespace(path=tmp_path / "set"), [Card("Insane", 7, 4.81, 412, "", check),
                                                               Card("Hard", 8, None, 300, "", clean)], kept=0)
    text = gallery_html(gallery, lang)
    for key, args in [("mapset.card_objects", {"count": 412}), ("mapset.card_seed", {"seed": 7}),
                      ("check.unsnapped", {}), ("mapset.flag_no_red_line", {}), ("mapset.check_clean", {}),
                      ("mapset.kept", {}), ("mapset.removed", {})]:
        assert html.escape(i18n.t(key, lang, **args)) in text
    assert ("4,81★" if lang == "fr" else "4.81★") in text
    assert "objects" not in text and "check: clean" not in text and "Written to" not in text
    assert f"<code>{tmp_path / 'set'}</code>" in text
