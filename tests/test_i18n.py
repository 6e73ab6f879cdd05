"""The catalogues (mapperator_app/locales/*.json) against the code that uses them, and picking a language.

Keys are found in the source by convention: ``t("key"``, ``L("key"``, ``K("key"`` (mapperator_app) and
``Message("key", "English template"`` (engine and app). en.json must hold exactly those keys, with the
engine's English templates word for word; every other catalogue exactly en.json's keys and placeholders.
"""
from __future__ import annotations

import ast
import json
import re
import string
from pathlib import Path

import pytest

from mapperator_app import i18n

REPO = Path(__file__).resolve().parents[1]
LOCALES = REPO / "mapperator_app" / "locales"
USE = re.compile(r"""(?<![\w.])(?:t|L|K|i18n\.t)\(\s*["']([A-Za-z0-9_.\-]+)["']""")


def sources() -> list[Path]:
    return sorted([*(REPO / "engine").rglob("*.py"), *(REPO / "mapperator_app").rglob("*.py")])


def message_calls() -> list[tuple[Path, int, str, str | None]]:
    """(file, line, id, English template or None) of every ``Message("id", ...)`` in the source."""
    found = []
    for path in sources():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
            if name != "Message" or not node.args or not isinstance(node.args[0], ast.Constant):
                continue
            template = node.args[1].value if len(node.args) > 1 and isinstance(node.args[1], ast.Constant) else None
            found.append((path, node.lineno, node.args[0].value, template))
    return found


def used_keys() -> set[str]:
    keys = {m[2] for m in message_calls()}
    for path in (REPO / "mapperator_app").rglob("*.py"):
        keys.update(USE.findall(path.read_text(encoding="utf-8")))
    return keys


def load(lang: str) -> dict[str, str]:
    return json.loads((LOCALES / f"{lang}.json").read_text(encoding="utf-8"))


def placeholders(text: str) -> set[tuple[str, str]]:
    return {(name, spec or "") for _, name, spec, _ in string.Formatter().parse(text) if name is not None}


def test_english_has_every_key_the_code_uses():
    missing = sorted(used_keys() - set(load("en")))
    assert not missing, f"keys used in the code but missing from en.json: {missing}"


def test_english_has_no_key_that_nothing_uses():
    unused = sorted(set(load("en")) - used_keys())
    assert not unused, f"keys in en.json that no code uses: {unused}"


def test_engine_messages_are_word_for_word_the_english_catalogue():
    en = load("en")
    wrong = [f"{p.relative_to(REPO)}:{line} {key}: {template!r} != {en.get(key)!r}"
             for p, line, key, template in message_calls() if template is not None and en.get(key) != template]
    assert not wrong, "\n".join(wrong)


def test_the_scan_sees_real_uses():  # the conventions above really find keys in the code
    keys = used_keys()
    assert {"progress.ready", "job.done", "table.severity", "error.beatmap_line"} <= keys
    assert len(load("en")) > 100


def test_no_catalogue_outside_the_languages_list():
    assert {p.stem for p in LOCALES.glob("*.json")} <= set(i18n.LANGUAGES)


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_each_catalogue_has_exactly_the_english_keys_and_placeholders(lang):
    assert (LOCALES / f"{lang}.json").exists(), f"locales/{lang}.json is missing (every language in LANGUAGES needs one)"
    en, other = load("en"), load(lang)
    assert sorted(set(en) - set(other)) == [], f"{lang}.json lacks keys"
    assert sorted(set(other) - set(en)) == [], f"{lang}.json has keys en.json has not"
    empty = sorted(k for k, v in other.items() if not isinstance(v, str) or not v.strip())
    assert not empty, f"{lang}.json has empty texts: {empty}"
    wrong = {k: (sorted(placeholders(en[k])), sorted(placeholders(v))) for k, v in other.items()
             if placeholders(en[k]) != placeholders(v)}
    assert not wrong, f"{lang}.json placeholders differ from en.json: {wrong}"
    if lang != "en":
        same = [k for k, v in other.items() if v == en[k]]
        assert len(same) < 0.25 * len(en), f"{lang}.json leaves {len(same)} of {len(en)} texts in English"


def test_text_falls_back_to_english_then_to_the_key():
    assert i18n.t("progress.queued", "en", count=2, label="Timing x.mp3") == "Queued: 2 ahead of this one (Timing x.mp3)."
    assert i18n.t("no.such.key", "fr") == "no.such.key"
    assert i18n.t("progress.ready", "xx") == "Ready."


def test_a_translation_that_does_not_fit_its_arguments_falls_back_to_english(monkeypatch):
    real = i18n.catalogue
    fake = {"progress.starting": "Démarrage de {nom}…"}
    monkeypatch.setattr(i18n, "catalogue", lambda lang: fake if lang == "fr" else real(lang))
    assert i18n.t("progress.starting", "fr", label="x") == "Starting x…"


def test_numbers_use_the_languages_decimal_mark():
    assert i18n.t("check.evaluation", "en", f1=0.5, bpm_error=1.25) == "rhythm F1 0.50, BPM error 1.25"
    assert i18n.number(4.816, "de") == "4,82" and i18n.number(4.816, "ja") == "4.82"


def test_engine_messages_render_in_the_language_with_their_arguments():
    from engine import Message
    from engine.errors import BeatmapError

    error = BeatmapError("bad line", "/maps/x.osu", 12)
    assert str(error) == "/maps/x.osu, line 12: bad line" and error.message_id == "error.beatmap_line"
    assert i18n.error_text(error, "en") == str(error)
    nested = Message("error.beatmap_file", "{path}: {reason}", path="a.osu",
                     reason=Message("job.cancelled", "Cancelled"))
    assert i18n.render(nested, "fr") == i18n.t("error.beatmap_file", "fr", path="a.osu",
                                               reason=i18n.t("job.cancelled", "fr"))
    assert i18n.render("plain text", "fr") == "plain text"


@pytest.mark.parametrize("tag, lang", [
    ("fr-CA", "fr"), ("pt_PT.UTF-8", "pt-BR"), ("pt-BR", "pt-BR"), ("zh-Hans-CN", "zh-CN"), ("zh_TW", "zh-CN"),
    ("ja", "ja"), ("KO-kr", "ko"), ("sv-SE", None), ("C", None), ("", None), ("en_US.UTF-8", "en"),
])
def test_locale_tags_match_our_languages(tag, lang):
    assert i18n.match(tag) == lang


def test_accept_language_order_and_the_setting_first(monkeypatch):
    monkeypatch.setattr(i18n, "system_language", lambda: "en")
    assert i18n.accept_language("sv;q=0.9, de-AT, fr;q=0.95") == ["de-AT", "fr", "sv"]
    assert i18n.resolve("auto", "sv, th;q=0.8, en;q=0.5") == "th"
    assert i18n.resolve("ja", "de") == "ja"
    assert i18n.resolve("auto", None) == "en" and i18n.resolve("auto", "sv") == "en"


def test_system_language_follows_the_environment(monkeypatch):
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", "tr_TR.UTF-8")
    assert i18n.system_language() == "tr"
    monkeypatch.setenv("LANGUAGE", "sv:ko")
    assert i18n.system_language() == "ko"


def test_rule_suggestions_keep_their_message_id_and_arguments_in_json():
    from engine.rules import check_beatmap
    from tests.test_rules import build_map

    beatmap = build_map(["256,192,510,1,0,0:0:0:0:"], events=[])
    by_id = {s.to_dict()["message_id"]: s.to_dict() for s in check_beatmap(beatmap)}
    assert by_id["rule.files.no_background"]["message"] == "The difficulty has no background."
    unsnapped = by_id["rule.unsnapped"]
    assert unsnapped["message"] == "Circle unsnapped by 10 ms." and unsnapped["message_args"] == {
        "part": "Circle", "ms": "10"}
    json.dumps(list(by_id.values()))  # JSON-ready, nested messages as their English text


def test_nested_engine_messages_render_in_another_language(monkeypatch):
    from engine.rules import check_beatmap
    from tests.test_rules import build_map

    real = i18n.catalogue
    fake = {"rule.unsnapped": "{part} décalé de {ms} ms.", "object.circle": "Cercle",
            "rule.files.no_background": "La difficulté n'a pas de fond."}
    monkeypatch.setattr(i18n, "catalogue", lambda lang: fake if lang == "fr" else real(lang))
    found = check_beatmap(build_map(["256,192,510,1,0,0:0:0:0:"], events=[]))
    assert sorted(i18n.render(s.message, "fr") for s in found) == ["Cercle décalé de 10 ms.",
                                                                   "La difficulté n'a pas de fond."]
    from mapperator_app import forms

    rows = forms.suggestion_records(found, "fr")
    assert {r["message"] for r in rows} == {"Cercle décalé de 10 ms.", "La difficulté n'a pas de fond."}
    assert {r["category"] for r in rows} == {"Timing", "Files"}  # filters keep the engine's names


def test_progress_and_errors_show_in_the_pages_language(monkeypatch):
    from engine import Message
    from engine.errors import OptionError
    from mapperator_app import forms
    from mapperator_app.worker import Job, JobState

    real = i18n.catalogue
    fake = {"progress.queued": "En attente : {count} avant ({label}).", "job.generate": "Générer {song} ({model}, {mode})",
            "stage.window_of": "{label} : {context}, fenêtre {window} sur {windows}", "stage.map": "Carte",
            "common.error": "Erreur :", "path.choose_save": "choisissez où enregistrer le fichier"}
    monkeypatch.setattr(i18n, "catalogue", lambda lang: fake if lang == "fr" else real(lang))
    job = Job(1, "generate", Message("job.generate", "Generate {song} ({model}, {mode})", song="a.mp3", model="v32",
                                     mode="osu!"), "", lambda p, c: None)
    assert "En attente : 2 avant (Générer a.mp3 (v32, osu!))." in forms.progress_html(job, 2, "fr")
    job.state = JobState.RUNNING
    job.stage = Message("stage.window_of", "{label}: {context}, window {window} of {windows}",
                        label=Message("stage.map", "Map"), context="map", window=3, windows=10)
    assert "Carte : map, fenêtre 3 sur 10" in forms.progress_html(job, 0, "fr")
    assert "Map: map, window 3 of 10" in forms.progress_html(job, 0, "en")
    error = OptionError(Message("path.choose_save", "choose where to save the file"))
    html = forms.error_html(forms.error_message(error), "fr")
    assert "Erreur :" in html and "choisissez où enregistrer le fichier" in html


def test_the_wizard_asks_in_the_chosen_or_the_systems_language(monkeypatch, capsys):
    from mapperator_app import wizard

    real = i18n.catalogue
    fake = {"wizard.need_output": "il faut un dossier de sortie",
            "wizard.needs_terminal": "l'assistant a besoin d'un terminal interactif"}
    monkeypatch.setattr(i18n, "catalogue", lambda lang: fake if lang == "fr" else real(lang))
    monkeypatch.setattr(wizard, "LANG", "en")
    assert wizard._check_output("") == "an output folder is needed"
    assert wizard.run_wizard("fr-CA") == 2 and wizard.LANG == "fr"  # pytest's stdin is no terminal
    assert "l'assistant a besoin d'un terminal interactif" in capsys.readouterr().err
    assert wizard._check_output("") == "il faut un dossier de sortie"
    monkeypatch.setenv("LANGUAGE", "fr_FR")
    assert wizard.run_wizard() == 2 and wizard.LANG == "fr"
    assert wizard.run_wizard("xx") == 2 and "--lang xx" in capsys.readouterr().err


def test_option_errors_carry_ids_down_to_the_range(monkeypatch):
    import engine
    from engine.errors import OptionError

    with pytest.raises(OptionError) as caught:
        engine.build_options(engine.GenerateOptions, {"cfg_scale": "-3"})
    error = caught.value
    assert error.message_id == "option.out_of_range" and str(error).startswith("option cfg_scale=-3.0 is out of range")
    real = i18n.catalogue
    fake = {"option.out_of_range": "option {name}={value} hors limites : {name} doit être {range}{hint}",
            "range.between": "entre {low} et {high}"}
    monkeypatch.setattr(i18n, "catalogue", lambda lang: fake if lang == "fr" else real(lang))
    text = i18n.error_text(error, "fr")
    assert text.startswith("option cfg_scale=-3.0 hors limites : cfg_scale doit être ") and "entre" in text, text
