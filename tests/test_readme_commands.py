"""Every ``mapperator`` command printed in README.md runs as printed, so the README cannot drift from the program.

Which lines count: each line of a fenced code block (a line ending in ``\\`` continues on the next) whose command,
or one part of an ``&&`` chain, starts with a program form of Mapperator: ``mapperator``, ``.venv/bin/mapperator``
or ``dist/Mapperator/Mapperator`` (the bundle is the same program). All run here as the ``mapperator`` installed
beside this Python, in a separate process, as from a shell. Windows forms (``.venv\\Scripts\\...``, ``.exe``)
count too and can only be listed in EXCEPTIONS. Inline ``code`` in the prose (``mapperator generate ...``) holds
fragments, not commands: those are only checked to name a command and flags the parser knows.

How placeholders become real: every command runs in one scratch folder where the README's relative placeholder
files exist — ``song.mp3`` is the fixtures' synth song encoded as MP3, ``map.osu`` and ``path/to/map.osu`` its
hand-made map beside it, ``generated.osu``/``reference.osu`` and the two folders hold upstream's generated maps and
the references, the LoRA path holds an adapter trained on the tiny model. A Windows absolute path is moved into
the scratch folder with its file name kept. Version names (``v32``) and ``OliBomby/Mapperatorinator-*`` ids
resolve through a Hugging Face cache in the scratch folder holding the tiny trained fixture checkpoints, with the
hub switched off: the way a user runs models downloaded before.

Commands that cannot run here are in EXCEPTIONS with the reason; their words must still parse into options.
A README command that is neither runnable nor listed fails this test.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path, PureWindowsPath

import pytest

from mapperator_app import cli
from tests.conftest import REPO, UPSTREAM, need

README = REPO / "README.md"
TRAINED = UPSTREAM / "trained"
PROGRAM = re.compile(r"^(mapperator|\.venv/bin/mapperator|dist/Mapperator/Mapperator"
                     r"|\.venv\\Scripts\\mapperator|\S*\\mapperator-cli\.exe|mapperator-cli\.exe)$")
RUNS_A_MODEL = {"generate", "mapset", "mod", "timing", "train"}

EXCEPTIONS = {
    ".venv/bin/mapperator app": "opens the desktop window and waits for it to close (tests/e2e drive the app)",
    "mapperator train enable_lora=true pretrained_path=v32 pretrained_gamemode=0 "
    'train_dataset_path="C:\\osu\\Songs" gamemodes=[0] total_steps=1000 batch_size=8 base_lr=4e-4':
        "1000 training steps on an osu! Songs folder (tests/test_lora.py trains the same way for 4 steps)",
    "mapperator train pretrained_path=OliBomby/Mapperatorinator-v32 train_dataset_path=datasets/my_dataset "
    "total_steps=20000": "20000 training steps on a real dataset (tests/test_training.py covers training)",
    "mapperator train version=v32 train_dataset_path=datasets/my_dataset train_dataset_end=900 "
    "test_dataset_start=900 test_dataset_end=1000 total_steps=200000 batch_size=32 base_lr=1e-4 warmup_steps=2000":
        "200000 training steps from scratch on a real dataset (tests/test_training.py covers training)",
}

# The Hugging Face repos the fake cache holds, and the fixture checkpoint each one serves; v32's per-mode
# models (gamemode=N/) are the same tiny model, which was trained on all four modes.
HUB = {
    "OliBomby/Mapperatorinator-v30": ("v30", ()),
    "OliBomby/Mapperatorinator-v31": ("v31", ()),
    "OliBomby/Mapperatorinator-v32": ("v32", ("gamemode=0", "gamemode=1", "gamemode=2", "gamemode=3")),
}
LORA_PLACEHOLDER = "mapperator-training/v32-…/checkpoint-1000"
SONG_SECONDS = 12  # of the 30 s synth song: the commands that run a model take a few seconds each


# --- reading the README ----------------------------------------------------------------------------------------


def _strip_comment(line: str) -> str:
    return re.sub(r"\s+#\s.*$", "", line).strip()


def code_block_commands(text: str) -> list[str]:
    """The Mapperator commands of the README's fenced code blocks, continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", text, flags=re.S | re.M):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            for part in _strip_comment(line).split("&&"):
                part = " ".join(part.split())
                if part and PROGRAM.match(part.split()[0]):
                    commands.append(part)
    return commands


def inline_commands(text: str) -> list[list[str]]:
    """Inline code spans that are a program form followed by a command name or a flag, as words."""
    names = set(cli.build_parser()._subparsers._group_actions[0].choices)  # argparse has no public way
    found = []
    for span in re.findall(r"`([^`\n]+)`", text):
        words = span.split()
        if len(words) > 1 and (PROGRAM.match(words[0]) or words[0] == "Mapperator") and (
                words[1] in names or words[1].startswith("-")):
            found.append(words)
    return found


README_TEXT = README.read_text(encoding="utf-8")
COMMANDS = code_block_commands(README_TEXT)


def subcommand(command: str) -> str:
    return next((w for w in shlex.split(command)[1:] if not w.startswith("-")), "")


# --- the scratch folder --------------------------------------------------------------------------------------


def _song(target: Path) -> None:
    """The synth song's first SONG_SECONDS (in the format the name says): long enough for several windows."""
    import soundfile as sf

    samples, rate = sf.read(TRAINED / "audio" / "synth150.wav")
    sf.write(target, samples[: rate * SONG_SECONDS], rate)


def _copy_map(source: Path, target: Path) -> Path:
    """A map's objects within SONG_SECONDS, with its song beside it (the maps name synth150.wav)."""
    lines, in_objects = [], False
    for line in source.read_text(encoding="utf-8-sig").splitlines():
        if line.startswith("["):
            in_objects = line.strip() == "[HitObjects]"
        elif in_objects and line.strip() and int(line.split(",")[2]) >= SONG_SECONDS * 1000:
            continue
        lines.append(line)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(lines) + "\n", encoding="utf-8")
    _song(target.parent / "synth150.wav")
    return target


def _hub_cache(cache: Path) -> None:
    """A Hugging Face cache laid out as huggingface_hub writes it: snapshot files link to blobs."""
    commit = "0" * 40
    for repo_id, (version, subfolders) in HUB.items():
        repo = cache / ("models--" + repo_id.replace("/", "--"))
        (repo / "refs").mkdir(parents=True)
        (repo / "refs" / "main").write_text(commit)
        (repo / "blobs").mkdir()
        snapshot = repo / "snapshots" / commit
        for source in sorted((TRAINED / version / "checkpoint").iterdir()):
            shutil.copy(source, repo / "blobs" / source.name)
            for sub in ("", *subfolders):
                link = snapshot / sub / source.name
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(os.path.relpath(repo / "blobs" / source.name, link.parent))


def _lora_adapter(target: Path) -> None:
    """An adapter trained 1 step on the tiny v32 with synth150, saved where the README's training run puts it."""
    from engine.training import parse_train_words
    from engine.training.trainer import TrainingRun
    from tests.test_training_data import write_zip

    work = target.parents[2] / "lora-work"
    (work / "data").mkdir(parents=True)
    osu = _copy_map(TRAINED / "audio" / "synth150_std.osu", work / "set" / "std.osu")
    write_zip(work / "data" / "100000 synth150.osz",
              {"synth150.wav": (osu.parent / "synth150.wav").read_bytes(), "std.osu": osu.read_text("utf-8")})
    options = parse_train_words([
        f"pretrained_path={TRAINED / 'v32' / 'checkpoint'}", "enable_lora=true", "lora_r=4", "lora_alpha=8",
        f"train_dataset_path={work / 'data'}", "total_steps=1", "batch_size=1", f"output_dir={work / 'run'}",
        "device=cpu"])
    result = TrainingRun(options).run()
    shutil.copytree(result.checkpoint, target)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    need(TRAINED)
    root = tmp_path_factory.mktemp("readme")
    _song(root / "song.mp3")
    std = TRAINED / "audio" / "synth150_std.osu"
    for name in ("map.osu", "path/to/map.osu", "reference.osu"):
        _copy_map(std, root / name)
    _copy_map(TRAINED / "v32" / "pipeline_greedy_std" / "generated.osu", root / "generated.osu")
    for version in ("v30", "v32"):  # pairs matched by file name
        generated = TRAINED / version / "pipeline_greedy_std" / "generated.osu"
        _copy_map(generated, root / "generated_folder" / f"{version}.osu")
        _copy_map(std, root / "references_folder" / f"{version}.osu")
    _hub_cache(root / "hub")
    return root


def real_words(command: str, root: Path) -> list[str]:
    """The command's arguments with Windows absolute paths moved into ``root`` (a map gets its song beside it)."""
    words = []
    for word in shlex.split(command)[1:]:
        key, sep, value = word.partition("=") if "=" in word else ("", "", word)
        if re.match(r"^[A-Za-z]:\\", value):
            windows = PureWindowsPath(value)
            local = root / "windows" / windows.drive.rstrip(":") / Path(*windows.parts[1:])
            if local.suffix == ".osu":
                _copy_map(TRAINED / "audio" / "synth150_std.osu", local)
            else:
                local.mkdir(parents=True, exist_ok=True)
            value = str(local)
        if LORA_PLACEHOLDER in value and not (root / LORA_PLACEHOLDER).exists():
            _lora_adapter(root / LORA_PLACEHOLDER)
        words.append(f"{key}{sep}{value}" if sep else value)
    return words


def run_mapperator(words: list[str], root: Path) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "mapperator"
    program = [str(script)] if script.exists() else [sys.executable, "-m", "mapperator_app.cli"]
    env = dict(os.environ, HF_HUB_CACHE=str(root / "hub"), HF_HOME=str(root / "hf-home"), HF_HUB_OFFLINE="1",
               XDG_STATE_HOME=str(root / "state"), PYTHONPATH=str(REPO))
    return subprocess.run([*program, *words], cwd=root, env=env, capture_output=True, text=True, timeout=600)


# --- the tests -----------------------------------------------------------------------------------------------


def test_readme_commands_are_found_and_exceptions_are_current():
    assert "mapperator mod beatmap_path=map.osu rules=false --json" in COMMANDS
    assert any(c.startswith("mapperator train enable_lora=true") and "base_lr=4e-4" in c for c in COMMANDS)
    assert ".venv/bin/mapperator app" in COMMANDS  # from the install line's && chain
    stale = set(EXCEPTIONS) - set(COMMANDS)
    assert not stale, f"EXCEPTIONS lists commands the README no longer prints: {stale}"


@pytest.mark.parametrize("command", [
    pytest.param(c, marks=[pytest.mark.slow] if subcommand(c) in RUNS_A_MODEL else [], id=c[:80])
    for c in COMMANDS if c not in EXCEPTIONS])
def test_readme_command_runs_as_printed(command, scratch):
    assert not command.split()[0].endswith(".exe") and "\\Scripts\\" not in command.split()[0], (
        "a Windows-only form cannot run here: list it in EXCEPTIONS with the reason")
    out = run_mapperator(real_words(command, scratch), scratch)
    assert out.returncode == 0, f"{command}\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    assert "Traceback" not in out.stderr
    if "--json" in command.split():
        json.loads(out.stdout)


@pytest.mark.parametrize("command", list(EXCEPTIONS), ids=[c[:80] for c in EXCEPTIONS])
def test_readme_exception_still_parses(command, tmp_path):
    """Commands that cannot run here still name a command, flags and options the program knows."""
    args = cli.parse_args(cli.build_parser(), shlex.split(command)[1:])
    if args.command == "train":
        from engine.training import parse_train_words

        parse_train_words(args.words)


def test_inline_command_mentions_parse():
    mentions = inline_commands(README_TEXT)
    assert ["mapperator", "app", "--browser"] in mentions
    for words in mentions:
        cli.parse_args(cli.build_parser(), [w for w in words[1:] if w not in ("...", "…")])


@pytest.mark.parametrize("argv,words,flags", [
    (["mod", "beatmap_path=map.osu", "rules=false", "--json"], ["beatmap_path=map.osu", "rules=false"], {"json": True}),
    (["mod", "beatmap_path=map.osu", "--json", "rules=false", "-v"], ["beatmap_path=map.osu", "rules=false"],
     {"json": True, "verbose": True}),
    (["generate", "audio_path=a.mp3", "-v", "gamemode=1", "--interactive"], ["audio_path=a.mp3", "gamemode=1"],
     {"interactive": True, "verbose": True}),
    (["timing", "audio_path=a.mp3", "--verbose", "super_timing=true"], ["audio_path=a.mp3", "super_timing=true"],
     {"verbose": True}),
    (["train", "total_steps=5", "-v", "batch_size=2"], ["total_steps=5", "batch_size=2"], {"verbose": True}),
    (["-v", "train", "total_steps=5"], ["total_steps=5"], {"verbose": True}),
    (["mod", "beatmap_path=map.osu"], ["beatmap_path=map.osu"], {"json": False, "verbose": False}),
])
def test_flags_anywhere_on_the_line(argv, words, flags):
    args = cli.parse_args(cli.build_parser(), argv)
    assert args.words == words
    assert {k: getattr(args, k) for k in flags} == flags


@pytest.mark.parametrize("argv", [
    ["evaluate", "--json", "a.osu", "b.osu"], ["evaluate", "a.osu", "--json", "b.osu"],
    ["evaluate", "a.osu", "b.osu", "--json", "-v"]])
def test_evaluate_flags_anywhere(argv):
    args = cli.parse_args(cli.build_parser(), argv)
    assert (args.generated, args.reference, args.json) == ("a.osu", "b.osu", True)


@pytest.mark.parametrize("argv", [["mod", "x=1", "--jsn"], ["download", "v32", "extra"], ["app", "--port"],
                                  ["evaluate", "a.osu", "b.osu", "c.osu"]])
def test_unknown_flags_and_words_are_still_refused(argv, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.parse_args(cli.build_parser(), argv)
    assert stop.value.code == 2
