"""The Generate tab's Mapset section: the tab's values become MapsetOptions; variants come back as a gallery
(picture, stars, objects, check per map), the player shows the chosen one, Keep removes the others' files."""
from __future__ import annotations

import inspect
from types import SimpleNamespace

import pytest

from engine.errors import OptionError
from mapperator_app.tabs.mapset_gallery import mapset_options

from .conftest import UPSTREAM, need

TRAINED = UPSTREAM / "trained"
SONG = TRAINED / "audio" / "synth150.wav"
V32 = TRAINED / "v32" / "checkpoint"


def tab_values(tmp_path, **kw) -> dict:
    values = {"audio_path": str(need(SONG)), "model_path": str(need(V32)), "gamemode": "osu!", "difficulty": "3.2",
              "year": "2023", "mapper_id": "2", "seed": "3", "do_sample": True, "precision": "fp32",
              "device": "cpu", "end_time": "6000", "output_path": str(tmp_path / "out"), "descriptors": [],
              "mapset_kind": "Mapset", "difficulties": "2, 3.5, 5", "gamemodes": [], "difficulty_names": "",
              "num_variants": 3}
    values.update(kw)
    return values


def test_the_tabs_values_make_a_mapset_or_variants(tmp_path):
    mapset = mapset_options(tab_values(tmp_path))
    assert mapset.difficulties == (2.0, 3.5, 5.0) and mapset.difficulty is None and mapset.num_variants == 1
    assert mapset.gamemode == 0 and mapset.seed == 3 and mapset.end_time == 6000
    modes = mapset_options(tab_values(tmp_path, gamemodes=["osu!", "mania"], difficulty_names="A, B, C"))
    assert modes.gamemodes == (0, 3) and modes.gamemode is None and modes.difficulty_names == ("A", "B", "C")
    variants = mapset_options(tab_values(tmp_path, mapset_kind="Variants"))
    assert variants.num_variants == 3 and variants.difficulty == 3.2 and variants.difficulties == ()
    with pytest.raises(OptionError, match="difficulties"):
        mapset_options(tab_values(tmp_path, difficulties="2, hard"))


def _fn(demo, api_name: str):
    return next(f.fn for f in demo.fns.values() if f.api_name == api_name)


@pytest.mark.slow
def test_variants_gallery_preview_and_keep(tmp_path):
    from mapperator_app.settings import Settings
    from mapperator_app.ui import AppContext, build_app
    from mapperator_app.worker import Worker

    ctx = AppContext(Worker(), Settings(tmp_path / "settings.json"))
    demo = build_app(ctx)
    request = SimpleNamespace(session_hash="page-1", headers={})
    generate_mapset = _fn(demo, "generate_mapset")
    blank = {name: "" for name in inspect.signature(generate_mapset).parameters if name != "request"}
    values = {**blank, **tab_values(tmp_path, mapset_kind="Variants", num_variants=2)}
    *_, (status, cards, chosen, player) = list(generate_mapset(**values, request=request))
    assert cards.count("class='mp-card") == 2, status
    assert "★" in cards and "objects" in cards and "seed 3" in cards and "seed 4" in cards
    assert cards.count("data:image/png;base64,") == 2
    assert cards.count(" unsnapped · ") == 2  # each card carries its whole check line
    first, second = chosen["choices"]
    assert chosen["value"] == first and first.startswith("1. ") and second.startswith("2. ")
    assert "mapperator-player" in player
    assert "mapperator-player" in _fn(demo, "preview_mapset_map")(second, request)
    files = sorted((tmp_path / "out").glob("*.osu"))
    assert len(files) == 2
    message, cards = _fn(demo, "keep_variant")(second, request)
    assert "removed 1" in message and "(removed)" in cards and "(kept)" in cards
    kept = sorted((tmp_path / "out").glob("*.osu"))
    assert len(kept) == 1 and "seed 4" in kept[0].name and (tmp_path / "out" / SONG.name).is_file()
    assert "Generate variants first" in _fn(demo, "keep_variant")(first, SimpleNamespace(session_hash="other",
                                                                                          headers={}))[0]
