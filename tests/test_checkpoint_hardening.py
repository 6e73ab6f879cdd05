"""Damaged checkpoints: every bad config.json / tokenizer.json is a ModelError naming the file and field, raised
before anything big is allocated, within seconds and in bounded memory."""
from __future__ import annotations

import copy
import json
import math
import os
import re
import resource
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from engine.checkpoint import load_checkpoint, parse_config, read_json
from engine.errors import ModelError
from engine.model import Mapperatorinator, parameter_count
from engine.tokenizer import Tokenizer

from .conftest import REPO, UPSTREAM, need

VERSIONS = ("v30", "v31", "v32")
MEMORY_LIMIT = 3 << 30  # address space of the subprocess that loads the bad checkpoints
CASE_SECONDS = 20


def source(version: str = "v32") -> Path:
    return need(UPSTREAM / version / "checkpoint")


def write_checkpoint(folder: Path, version: str, config: Any = None, tokenizer: Any = None,
                     raw: dict[str, str] | None = None) -> Path:
    """A checkpoint folder: the fixture's files, with config.json / tokenizer.json replaced when given."""
    src = source(version)
    folder.mkdir(parents=True, exist_ok=True)
    files = {"config.json": config, "tokenizer.json": tokenizer}
    for name in ("config.json", "tokenizer.json", "generation_config.json"):
        if raw and name in raw:
            (folder / name).write_text(raw[name], encoding="utf-8")
        elif files.get(name) is not None:
            (folder / name).write_text(json.dumps(files[name]), encoding="utf-8")
        else:
            (folder / name).write_text((src / name).read_text(encoding="utf-8"), encoding="utf-8")
    weights = folder / "model.safetensors"
    if not weights.exists():
        weights.symlink_to(src / "model.safetensors")
    return folder


def fixture_json(version: str, name: str) -> dict:
    return json.loads((source(version) / name).read_text(encoding="utf-8"))


def edited_config(edit: Callable[[dict], None], version: str = "v32") -> dict:
    config = fixture_json(version, "config.json")
    edit(config)
    return config


def edited_tokenizer(edit: Callable[[dict], None], version: str = "v32") -> dict:
    tokenizer = fixture_json(version, "tokenizer.json")
    edit(tokenizer)
    return tokenizer


def backbone(**values) -> Callable[[dict], None]:
    return lambda c: c["backbone_config"].update(values)


def top(**values) -> Callable[[dict], None]:
    return lambda c: c.update(values)


def widen_range(t: dict) -> None:
    t["input_event_ranges"][0]["max_value"] = 400_000_000


def huge_but_in_bounds(c: dict) -> None:
    """Every size at its bound: ~12 G parameters, far more than any test machine lets this process have."""
    c["backbone_config"].update(d_model=3072, encoder_layers=48, decoder_layers=48, encoder_attention_heads=48,
                                decoder_attention_heads=48, encoder_ffn_dim=12288, decoder_ffn_dim=12288)


# name -> (version, config edit, tokenizer edit, raw files, what the message must say)
CASES: dict[str, tuple] = {
    "million decoder layers": ("v32", backbone(decoder_layers=10**6), None, None,
                               r"config\.json: backbone_config\.decoder_layers=1000000 is out of range \(1\.\.48 "
                               r"expected\); the checkpoint is damaged or not a Mapperatorinator model"),
    "million encoder layers": ("v30", backbone(encoder_layers=10**6), None, None,
                               r"backbone_config\.encoder_layers=1000000 is out of range"),
    "huge d_model": ("v32", backbone(d_model=2**40), None, None, r"backbone_config\.d_model=\d+ is out of range"),
    "huge ffn": ("v32", backbone(encoder_ffn_dim=2**33), None, None, r"backbone_config\.encoder_ffn_dim=\d+ is out"),
    "huge n_mels": ("v32", lambda c: (c.update(n_mels=10**8), c["backbone_config"].update(num_mel_bins=10**8)),
                    None, None, r"config\.json: (n_mels|backbone_config\.num_mel_bins)=100000000 is out of range"),
    "huge n_fft": ("v32", top(n_fft=2**31), None, None, r"config\.json: n_fft=2147483648 is out of range"),
    "zero attention heads": ("v32", backbone(encoder_attention_heads=0), None, None,
                             r"backbone_config\.encoder_attention_heads=0 is out of range \(1\.\.48"),
    "zero decoder heads": ("v30", backbone(decoder_attention_heads=0), None, None,
                           r"backbone_config\.decoder_attention_heads=0 is out of range"),
    "heads do not divide d_model": ("v32", backbone(decoder_attention_heads=5), None, None,
                                    r"backbone_config\.d_model=64 is not divisible by decoder_attention_heads=5"),
    "zero hop_length": ("v32", top(hop_length=0), None, None, r"config\.json: hop_length=0 is out of range \(1\.\."),
    "negative sample_rate": ("v32", top(sample_rate=-16000), None, None, r"config\.json: sample_rate=-16000 is out"),
    "bool layers": ("v32", backbone(decoder_layers=True), None, None,
                    r"backbone_config\.decoder_layers=True is not a whole number"),
    "zero global attention interval": ("v32", backbone(global_attn_every_n_layers=0), None, None,
                                       r"global_attn_every_n_layers=0 is out of range"),
    "rope_scaling a string": ("v32", backbone(rope_scaling="default"), None, None,
                              r"backbone_config\.rope_scaling='default' is not a JSON object"),
    "nan rope theta": ("v32", backbone(global_rope_theta=math.nan), None, None,
                       r"backbone_config\.global_rope_theta=nan is not a finite number"),
    "too big for memory": ("v32", huge_but_in_bounds, None, None,
                           r"config\.json: this model has 1\d\.\d G parameters and needs about \d+\.\d GB of memory "
                           r"to load, but only \d+\.\d GB"),
    "config is a list": ("v32", None, None, {"config.json": "[1, 2, 3]"},
                         r"config\.json holds a JSON list where a JSON object is expected"),
    "deeply nested config": ("v32", None, None, {"config.json": "[" * 200_000 + "]" * 200_000},
                             r"config\.json nests JSON more than \d+ levels deep"),
    "range max of 4e8": ("v32", None, widen_range, None,
                         r"tokenizer\.json: input_event_ranges\[0\]\.max_value=400000000 is out of range"),
    "ranges adding up past the limit": ("v32", None, lambda t: [r.update(min_value=0, max_value=200_000)
                                                                for r in t["input_event_ranges"][:3]], None,
                                        r"tokenizer\.json: the event ranges add up to 60\d{4} tokens, more than"),
    "tokenizer is a list": ("v32", None, None, {"tokenizer.json": "[]"},
                            r"tokenizer\.json holds a JSON list where a JSON object is expected"),
    "deeply nested tokenizer": ("v32", None, None, {"tokenizer.json": '{"a": ' * 100_000 + "1" + "}" * 100_000},
                                r"tokenizer\.json nests JSON more than \d+ levels deep"),
    "tokenizer range bound a string": ("v32", None, lambda t: t["event_ranges"][0].update(min_value="0"), None,
                                       r"tokenizer\.json: event_ranges\[0\]\.min_value='0' is not a whole number"),
    "tokenizer offset a float": ("v31", None, lambda t: t.update(offset=17.0), None,
                                 r"tokenizer\.json: offset=17\.0 is not a whole number"),
    "huge int in tokenizer": ("v32", None, lambda t: t.update(num_cs_classes=10**30), None,
                              r"tokenizer\.json: num_cs_classes=10+ is out of range"),
    "generation_config a list": ("v32", None, None, {"generation_config.json": "[]"},
                                 r"generation_config\.json holds a JSON list"),
}

RUNNER = r"""
import json, resource, signal, sys, time
from engine.checkpoint import load_checkpoint
from engine.errors import ModelError

class TimedOut(BaseException):
    pass

def on_alarm(*_):
    raise TimedOut()

signal.signal(signal.SIGALRM, on_alarm)
for name, folder in json.loads(sys.argv[1]).items():
    start = time.monotonic()
    signal.alarm(int(sys.argv[2]))
    try:
        load_checkpoint(folder)
        outcome = ["loaded", ""]
    except ModelError as e:
        outcome = ["ModelError", str(e)]
    except TimedOut:
        outcome = ["timed out", ""]
    except BaseException as e:
        outcome = [type(e).__name__, str(e)[:500]]
    finally:
        signal.alarm(0)
    print(json.dumps([name] + outcome + [time.monotonic() - start]), flush=True)
print(json.dumps(["peak_rss", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024]), flush=True)
"""


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


@pytest.fixture(scope="module")
def bad_loads(tmp_path_factory) -> dict[str, list]:
    """Load every bad checkpoint of CASES in one subprocess whose address space is capped at 3 GB."""
    root = tmp_path_factory.mktemp("bad")
    folders = {}
    for i, (name, (version, config_edit, tokenizer_edit, raw, _)) in enumerate(CASES.items()):
        folders[name] = str(write_checkpoint(
            root / f"case{i}", version,
            config=edited_config(config_edit, version) if config_edit else None,
            tokenizer=edited_tokenizer(tokenizer_edit, version) if tokenizer_edit else None, raw=raw))
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    run = subprocess.run([sys.executable, "-c", RUNNER, json.dumps(folders), str(CASE_SECONDS)], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=CASE_SECONDS * len(CASES) + 60,
                         preexec_fn=_limit_memory)
    results = {}
    for line in run.stdout.splitlines():
        name, *outcome = json.loads(line)
        results[name] = outcome
    results["_stderr"] = [run.stderr[-2000:]]
    return results


@pytest.mark.parametrize("name", list(CASES))
def test_bad_checkpoint_is_a_quick_model_error(bad_loads, name):
    assert name in bad_loads, f"the loader died before reaching this case: {bad_loads['_stderr'][0]}"
    kind, message, seconds = bad_loads[name]
    assert kind == "ModelError", f"{kind}: {message}"
    assert re.search(CASES[name][-1], message), message
    assert seconds < 5


def test_bad_loads_stay_in_bounded_memory(bad_loads):
    assert "peak_rss" in bad_loads, bad_loads["_stderr"][0]
    assert bad_loads["peak_rss"][0] < 1.5 * 2**30



# --- every field, every wrong type ------------------------------------------------------------------------------

WRONG_VALUES = ["text", [1, 2], {"a": 1}, None, True, False, 0.5, math.nan, math.inf, 10**30, -(10**30), -1, 0,
                2**63, 1e308]


def all_fields(document: dict, prefix: tuple = ()) -> list[tuple]:
    """Paths to every field of a JSON object and of the objects nested in it (lists: their first entry; the
    id tables of tokenizer.json: their first entries)."""
    paths = []
    items = list(document.items())
    for key, value in items if not prefix or len(items) < 60 else items[:4]:
        paths.append(prefix + (key,))
        if isinstance(value, dict):
            paths += all_fields(value, prefix + (key,))
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            paths += all_fields(value[0], prefix + (key, 0))
    return paths


def replaced(document: dict, path: tuple, value: Any) -> dict:
    """``document`` with the field at ``path`` set to ``value`` (or removed); the containers on the path are copies."""
    document = copy.copy(document)
    container = document
    for step in path[:-1]:
        container[step] = copy.copy(container[step])
        container = container[step]
    if value is _REMOVE:
        del container[path[-1]]
    else:
        container[path[-1]] = value
    return document


_REMOVE = object()


@pytest.mark.parametrize("version", VERSIONS)
def test_every_config_field_of_a_wrong_type_is_a_model_error(version):
    config = fixture_json(version, "config.json")
    tried = 0
    for path in all_fields(config):
        for value in WRONG_VALUES + [_REMOVE]:
            try:
                parse_config(replaced(config, path, value))
            except ModelError as e:
                assert "config.json" in str(e)
            tried += 1
    assert tried > 1000


@pytest.mark.parametrize("version", VERSIONS)
def test_every_tokenizer_field_of_a_wrong_type_is_a_model_error(version):
    state = fixture_json(version, "tokenizer.json")
    tried = refused = 0
    for path in all_fields(state):
        for value in WRONG_VALUES + [_REMOVE]:
            try:
                Tokenizer.from_dict(replaced(state, path, value))
            except ModelError as e:
                assert "tokenizer.json" in str(e)
                refused += 1
            tried += 1
    assert tried > 300 and refused > 300


# --- random damage, full loads --------------------------------------------------------------------------------

JSON_VALUES = st.one_of(
    st.text(max_size=6), st.none(), st.booleans(), st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-2**70, 2**70), st.sampled_from([0, -1, 1, 2, 3, 10**6, 10**9, 2**31, 2**63, 10**30]),
    st.lists(st.integers(-3, 3), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(-3, 3), max_size=2),
)


def _pick(data, document: dict) -> tuple[Any, Any]:
    """A random field (at any depth) as (container, key)."""
    container, key = document, data.draw(st.sampled_from(sorted(document)))
    while isinstance(container[key], (dict, list)) and container[key] and data.draw(st.booleans()):
        container = container[key]
        key = (data.draw(st.sampled_from(sorted(container))) if isinstance(container, dict)
               else data.draw(st.integers(0, len(container) - 1)))
    return container, key


def _damage(data, document: dict) -> dict:
    document = copy.deepcopy(document)
    for _ in range(data.draw(st.integers(1, 3))):
        container, key = _pick(data, document)
        value = container[key]
        how = data.draw(st.sampled_from(["replace", "remove", "nest", "nudge"]))
        if how == "remove":
            del container[key]
        elif how == "nest":
            container[key] = data.draw(st.sampled_from([[value], {"value": value}, [[[value]]]]))
        elif how == "nudge" and isinstance(value, int) and not isinstance(value, bool):
            container[key] = data.draw(st.sampled_from([value + 1, value - 1, -value, value * 2, value * 1000, 0]))
        else:
            container[key] = data.draw(JSON_VALUES)
        if not document:
            break
    return document


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), version=st.sampled_from(VERSIONS), which=st.sampled_from(["config", "tokenizer", "both"]))
def test_randomly_damaged_checkpoints_load_or_raise_model_error(data, version, which):
    config = fixture_json(version, "config.json")
    tokenizer = fixture_json(version, "tokenizer.json")
    if which != "tokenizer":
        config = _damage(data, config)
    if which != "config":
        tokenizer = _damage(data, tokenizer)
    with tempfile.TemporaryDirectory() as tmp:
        folder = write_checkpoint(Path(tmp) / "ckpt", version, config=config, tokenizer=tokenizer)
        try:
            load_checkpoint(str(folder))
            event("loaded")
        except ModelError as e:
            event("refused: " + ("config.json" if "config.json" in str(e) else
                                 "tokenizer.json" if "tokenizer.json" in str(e) else "other"))


# --- the pieces ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_parameter_count_matches_the_built_model(version):
    import torch

    config = parse_config(fixture_json(version, "config.json"))
    with torch.device("meta"):
        model = Mapperatorinator(config)
    assert parameter_count(config) == sum(t.numel() for t in model.state_dict().values())


def test_json_reader_refuses_oversized_and_deep_files(tmp_path):
    big = tmp_path / "big.json"
    big.write_text('{"a": "' + "x" * 2000 + '"}')
    with pytest.raises(ModelError, match=r"big\.json is 0 MB, more than the 0 MB"):
        read_json(big, max_bytes=1000)
    deep = tmp_path / "deep.json"
    deep.write_text('{"a": ' * 20 + "1" + "}" * 20)
    with pytest.raises(ModelError, match=r"deep\.json nests JSON more than 16 levels deep"):
        read_json(deep)
    huge_int = tmp_path / "int.json"
    huge_int.write_text('{"a": ' + "9" * 5000 + "}")
    with pytest.raises(ModelError, match=r"int\.json cannot be read"):
        read_json(huge_int)


def test_sharded_index_with_a_bad_weight_map_is_a_model_error(tmp_path):
    folder = write_checkpoint(tmp_path / "ckpt", "v32")
    (folder / "model.safetensors").unlink()
    index = folder / "model.safetensors.index.json"
    for weight_map in ([], {"decoder_embedder.weight": "../../etc/passwd"}):
        index.write_text(json.dumps({"weight_map": weight_map}))
        with pytest.raises(ModelError, match=r"model\.safetensors\.index\.json: weight_map"):
            load_checkpoint(str(folder))


def test_memory_estimate_refuses_a_model_larger_than_the_machine(tmp_path, monkeypatch):
    import engine.checkpoint as checkpoint

    folder = write_checkpoint(tmp_path / "ckpt", "v32")
    monkeypatch.setattr(checkpoint, "host_memory_bytes", lambda: 1_000_000)
    with pytest.raises(ModelError, match=r"config\.json: this model has 1 M parameters and needs about 0\.0 GB"):
        load_checkpoint(str(folder))
    monkeypatch.setattr(checkpoint, "host_memory_bytes", lambda: None)  # unknown: no check, the load goes on
    assert load_checkpoint(str(folder)).model is not None


@pytest.mark.parametrize("key", ["x", "²", "9" * 5000, "1e5", ""])
def test_tokenizer_id_tables_need_whole_number_keys(key):
    state = fixture_json("v32", "tokenizer.json")
    state["beatmap_mapper"] = {"100000": 2, key: 2}
    with pytest.raises(ModelError, match=r"tokenizer\.json: beatmap_mapper\..* is not a whole-number key"):
        Tokenizer.from_dict(state)
