"""Every option value is checked before any work: NaN, infinities, numbers outside what osu! and the models
allow, and unusable paths are refused with an OptionError naming the option, the value and what it accepts,
before an output folder is made or a model is loaded."""
from __future__ import annotations

import dataclasses
import math
import os
import subprocess
import sys
import typing

import pytest

import engine
from engine.errors import OptionError
from engine.modding import ModOptions
from engine.options import GenerateOptions, parse_overrides
from engine.training import TrainOptions, parse_train_words

from .conftest import REPO, UPSTREAM, need

TRAINED = UPSTREAM / "trained"
SONG = TRAINED / "audio" / "synth150.wav"
STD_MAP = TRAINED / "audio" / "synth150_std.osu"
V32 = TRAINED / "v32" / "checkpoint"
V30 = TRAINED / "v30" / "checkpoint"


@pytest.fixture
def no_model(monkeypatch):
    """Any model load fails the test: option errors must come first."""
    monkeypatch.setattr("engine.checkpoint.load_checkpoint", lambda *a, **k: pytest.fail("a model was loaded"))


def generate_words(out, *words: str):
    base = [f"audio_path={need(SONG)}", f"output_path={out}", f"model_path={need(V32)}", "device=cpu",
            "gamemode=0", "do_sample=true"]
    return engine.generate(parse_overrides(GenerateOptions, base + list(words)))


HUGE_PATH = "/tmp/" + "a" * 40_000 + ".mp3"

BAD_GENERATE = [
    ("seed=-1", "seed=-1", "between 0 and 4294967295"),
    ("seed=1e23", "seed=99999999999999991611392", "between 0 and 4294967295"),
    ("seed=4294967296", "seed=4294967296", "between 0 and 4294967295"),
    ("temperature=nan", "temperature=nan", "between 0.001 and 100"),
    ("temperature=.inf", "temperature=inf", "between 0.001 and 100"),
    ("temperature=1e-300", "temperature=1e-300", "between 0.001 and 100"),
    ("timing_temperature=-.inf", "timing_temperature=-inf", "between 0.001 and 100"),
    ("slider_multiplier=nan", "slider_multiplier=nan", "between 0.4 and 3.6"),
    ("cfg_scale=nan", "cfg_scale=nan", "between 1 and 100"),
    ("cfg_scale=1e400", "cfg_scale=inf", "between 1 and 100"),
    ("difficulty=nan", "difficulty=nan", "between 0 and 50"),
    ("top_p=nan", "top_p=nan", "above 0 and at most 1"),
    ("top_k=-1", "top_k=-1", "between 0 and 1000000"),
    ("timeshift_bias=inf", "timeshift_bias=inf", "between -100 and 100"),
    ("circle_size=.nan", "circle_size=nan", "between 0 and 10"),
    ("approach_rate=nan", "approach_rate=nan", "between 0 and 10"),
    ("slider_tick_rate=.nan", "slider_tick_rate=nan", "between 0.5 and 8"),
    ("keycount=1e23", "keycount=99999999999999991611392", "between 1 and 18"),
    ("year=1e23", "year=99999999999999991611392", "between 2000 and 2100"),
    ("hold_note_ratio=nan", "hold_note_ratio=nan", "between 0 and 1"),
    ("start_time=-5", "start_time=-5", "between 0 and 86400000"),
    ("end_time=.inf", "end_time=inf", "between 0 and 86400000"),
    ("lookback=nan", "lookback=nan", "at least 0 and below 1"),
    ("timer_iterations=1e9", "timer_iterations=1000000000", "between 1 and 1000"),
    ("bpm=0", "bpm=0", "above 0 and at most 10000"),
    ("offset=nan", "offset=nan", "between -86400000 and 86400000"),
    ("difficulty=1" + "0" * 400, "difficulty=1000", "between 0 and 50"),  # float() of it overflows
    (f"audio_path={HUGE_PATH}", "audio_path is 40009 characters long", "at most 4096"),
    ("audio_path=/tmp/" + "b" * 300 + ".mp3", "name of 304", "at most 255"),
    ("background=/tmp/a\0b.png", "background contains a NUL character", ""),
]


@pytest.mark.parametrize("word, named, accepts", BAD_GENERATE, ids=[b[0][:40] for b in BAD_GENERATE])
def test_bad_generate_option_is_refused_before_any_work(tmp_path, no_model, word, named, accepts):
    out = tmp_path / "out"
    with pytest.raises(OptionError) as caught:
        generate_words(out, word)
    assert named in str(caught.value) and accepts in str(caught.value)
    assert not out.exists()


def test_seed_null_means_random_and_the_bounds_are_usable():
    """Upstream's random seed is ``seed: null``; upstream has no -1 convention (its set_seed(-1) fails)."""
    assert parse_overrides(GenerateOptions, ["seed=null"]).seed is None
    assert parse_overrides(GenerateOptions, ["seed=0"]).seed == 0
    top = parse_overrides(GenerateOptions, ["seed=4294967295"]).seed
    import numpy as np
    import torch

    torch.Generator().manual_seed(top)  # every seed allowed is one torch and NumPy (super timing) accept
    np.random.RandomState(top)


# --- a sweep over every numeric field -------------------------------------------------------------------------


def numeric_fields(cls) -> list[tuple[str, bool]]:
    """(name, is_whole_number) for each int/float field (and list of them) of an options dataclass."""
    found = []
    for name, tp in typing.get_type_hints(cls).items():
        args = [a for a in typing.get_args(tp) if a is not type(None)] or [tp]
        inner = args[0]
        if typing.get_origin(inner) is tuple:
            inner = typing.get_args(inner)[0]
        if inner in (int, float):
            found.append((name, inner is int))
    return found


def test_every_numeric_option_has_a_range():
    """The next option added gets one line with its range: a field without one fails here."""
    for cls in (GenerateOptions, ModOptions, TrainOptions):
        fields = {f.name: f for f in dataclasses.fields(cls)}
        missing = [name for name, _ in numeric_fields(cls) if "range" not in fields[name].metadata]
        assert not missing, f"{cls.__name__}: give these fields a range with ranged(...): {missing}"
        for f in fields.values():  # every default is allowed
            limits = f.metadata.get("range")
            if limits is not None and f.default is not None and not isinstance(f.default, tuple):
                assert limits.allows(f.default), f.name


BAD_NUMBERS = ["nan", ".nan", "inf", "-inf", ".inf", "1e400", "1e300", "-1e300", "1" + "0" * 30, "-1" + "0" * 30]


def sweep(cls):
    return [(cls, name) for name, _ in numeric_fields(cls)]


@pytest.mark.parametrize("cls, name", sweep(GenerateOptions) + sweep(ModOptions) + sweep(TrainOptions))
def test_sweep_bad_numbers_are_option_errors_naming_option_and_range(cls, name):
    limits = next(f.metadata["range"] for f in dataclasses.fields(cls) if f.name == name)
    for text in BAD_NUMBERS:
        word = f"{name}=[{text}]" if name in ("gamemodes", "ranked_statuses", "dt_augment_range") else f"{name}={text}"
        with pytest.raises(OptionError) as caught:
            if cls is TrainOptions:
                parse_train_words(["train_dataset_path=/data", word])
            else:
                parse_overrides(cls, [word])
        message = str(caught.value)
        assert f"option {name}=" in message and limits.describe() in message, (word, message)
        assert len(message) < 300, message


@pytest.mark.parametrize("cls", [GenerateOptions, ModOptions, TrainOptions])
def test_sweep_direct_construction_refuses_non_finite_numbers(cls):
    """The dataclasses check themselves too: the app and the facades build them without parsing words."""
    base = {"train_dataset_path": "/data"} if cls is TrainOptions else {}
    for name, _ in numeric_fields(cls):
        for value in (math.nan, math.inf, -math.inf, 1e300, -1e300, 10 ** 30, -(10 ** 30)):
            with pytest.raises(OptionError, match=f"option {name}="):
                cls(**base, **{name: (value, value) if name in ("dt_augment_range",) else
                               (value,) if name in ("gamemodes", "ranked_statuses") else value})


# --- the other facades ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("options, text", [
    ({"seed": -1}, "seed=-1"),
    ({"timer_iterations": 10 ** 23}, "timer_iterations=100000000000000000000000"),
    ({"timer_bpm_threshold": math.nan}, "timer_bpm_threshold=nan"),
    ({"timer_cfg_scale": math.inf}, "timer_cfg_scale=inf"),
    ({"no_such_option": 1}, "unknown option 'no_such_option'"),
])
def test_timing_refuses_bad_options_before_any_work(tmp_path, no_model, options, text):
    out = tmp_path / "out"
    with pytest.raises(OptionError, match=text.replace("(", r"\(")):
        request = engine.build_options(engine.TimingOptions, {
            "audio_path": str(need(SONG)), "model_path": str(need(V32)), "device": "cpu", "output_path": str(out),
            **options})
        engine.timing(request)
    assert not out.exists()


@pytest.mark.parametrize("options, text", [
    ({"lookback": math.nan}, "lookback=nan"),
    ({"min_surprisal": math.inf}, "min_surprisal=inf"),
    ({"max_batch_size": 10 ** 30}, "max_batch_size=1000000000000000000000000000000"),
])
def test_mod_refuses_bad_options_before_any_work(no_model, monkeypatch, options, text):
    monkeypatch.setattr("engine.beatmap.read_beatmap", lambda *a, **k: pytest.fail("the beatmap was read"))
    with pytest.raises(OptionError, match=text):
        engine.mod(engine.ModOptions(beatmap_path=str(need(STD_MAP)), model_path=str(need(V30)), device="cpu",
                                     **options))


# --- options upstream has and nothing here would read -----------------------------------------------------------


@pytest.mark.parametrize("cls, word, text", [
    (GenerateOptions, "attn_implementation=eager", "attn_implementation=eager is not supported"),
    (GenerateOptions, "use_server=true", "use_server=true .* not supported"),
    (ModOptions, "seed=5", "seed has no effect on MaiMod"),
])
def test_an_option_that_would_do_nothing_is_refused(cls, word, text):
    with pytest.raises(OptionError, match=text):
        parse_overrides(cls, [word])


@pytest.mark.parametrize("cls, words", [
    (GenerateOptions, ["attn_implementation=auto", "use_server=false"]),
    (GenerateOptions, ["attn_implementation=sdpa"]),  # what attention always runs through here
    (GenerateOptions, ["attn_implementation=flash_attention_2"]),  # SDPA's flash kernel on CUDA
    (ModOptions, ["seed=null"]),  # upstream's MaiMod config inherits `seed: null`
])
def test_upstreams_values_that_match_what_runs_still_load(cls, words):
    options = parse_overrides(cls, words)
    for word in words:
        assert not hasattr(options, word.partition("=")[0])


@pytest.mark.parametrize("cls", [GenerateOptions, ModOptions, engine.TimingOptions])
def test_an_unknown_precision_is_refused_when_the_options_are_made(cls):
    with pytest.raises(OptionError, match=r"precision='fp16' is not one of auto, fp32, bf16, amp, int8"):
        parse_overrides(cls, ["precision=fp16"])
    assert parse_overrides(cls, ["precision=int8"]).precision == "int8"


def test_mod_with_a_seed_stops_before_any_work(capsys, no_model):
    from mapperator_app import cli

    assert cli.main(["mod", f"beatmap_path={need(STD_MAP)}", "seed=7"]) == 2
    assert "seed has no effect on MaiMod" in capsys.readouterr().err


@pytest.mark.parametrize("word, text", [
    ("seed=-1", "seed=-1"),
    ("base_lr=nan", "base_lr=nan"),
    ("lora_alpha=inf", "lora_alpha=inf"),
    ("gamemodes=[0,7]", "gamemodes=7"),
    ("dt_augment_range=[1.0,.inf]", "dt_augment_range=inf"),
    ("total_steps=1e23", "total_steps=99999999999999991611392"),
    ("output_dir=/tmp/" + "c" * 5000, "output_dir is 5005 characters long"),
])
def test_train_options_refuse_bad_values(word, text):
    with pytest.raises(OptionError, match=text):
        parse_train_words(["train_dataset_path=/data", word])


# --- the command line ---------------------------------------------------------------------------------------------


def test_cli_main_prints_one_line_and_exits_2(tmp_path, capsys, monkeypatch, no_model):
    from mapperator_app import cli

    monkeypatch.setattr("mapperator_app.logs.setup", lambda **k: tmp_path / "log.txt")
    out = tmp_path / "out"
    for word in ("seed=1e23", "temperature=nan", "cfg_scale=nan", "slider_multiplier=nan", "audio_path=" + HUGE_PATH):
        code = cli.main(["generate", f"audio_path={need(SONG)}", f"model_path={need(V32)}", f"output_path={out}",
                         "device=cpu", word])
        err = capsys.readouterr().err.strip()
        assert code == 2, err
        name = word.split("=", 1)[0]
        assert len(err.splitlines()) == 1 and err.startswith(f"error: option {name}") and "unexpected" not in err
        assert not out.exists()
    code = cli.main(["timing", f"audio_path={need(SONG)}", f"model_path={need(V32)}", "seed=-1",
                     f"output_path={out}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("error: option seed=-1 is out of range"), err
    assert not out.exists()


def test_cli_process_seed_1e23(tmp_path):
    """As typed in a shell: a one-line error, exit code 2, nothing written."""
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "mapperator_app.cli", "generate", f"audio_path={need(SONG)}",
         f"model_path={need(V32)}", f"output_path={out}", "device=cpu", "seed=1e23"],
        cwd=REPO, env=dict(os.environ, HF_HUB_OFFLINE="1"), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip() == ("error: option seed=99999999999999991611392 is out of range: seed must be between "
                                   "0 and 4294967295; leave it unset (null) for a random seed")
    assert not out.exists()
