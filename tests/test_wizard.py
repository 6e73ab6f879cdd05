"""`mapperator wizard`: the command it prints, and the wizard driven through a pseudo-terminal like a user would."""
from __future__ import annotations

import os
import re
import shlex
import sys
from pathlib import Path

import pytest
from questionary import Separator

from engine.options import GenerateOptions, parse_overrides
from engine.tokenizer import Tokenizer
from mapperator_app.wizard import clean_path, command_words, descriptor_choices, shell_command

from .conftest import REPO, UPSTREAM, need

TRAINED = UPSTREAM / "trained"
MODEL = TRAINED / "v32" / "checkpoint"
AUDIO = TRAINED / "audio" / "synth150.wav"
REFERENCE = TRAINED / "audio" / "synth150_std.osu"

UP, DOWN, SPACE, ENTER, CLEAR_LINE, CTRL_C = "\x1b[A", "\x1b[B", " ", "\r", "\x15", "\x03"
COMMAND = re.compile(r"mapperator generate [^\r\n]*")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    return Tokenizer.from_file(need(MODEL / "tokenizer.json"))


def descriptor_order(tokenizer: Tokenizer) -> list[str]:
    """Descriptors in the order the wizard lists them (separators left out): what arrow keys walk through."""
    return [c.value for c in descriptor_choices(tokenizer) if not isinstance(c, Separator)]


# --- the printed command --------------------------------------------------------------------------------------


def test_command_round_trips_through_a_posix_shell(tokenizer, tmp_path):
    # Every descriptor of the checkpoint (spaces, slashes, one with a trailing space), paths with shell
    # metacharacters, and texts that OmegaConf would otherwise read as booleans or lists.
    names = tuple(tokenizer.descriptor_names())
    assert any(n != n.strip() for n in names), "fixture lost its descriptor with a trailing space"
    options = GenerateOptions(
        audio_path=str(tmp_path / "My Song [TV Size] (it's $5).mp3"), output_path=str(tmp_path / "out dir"),
        model_path=str(MODEL), gamemode=3, difficulty=5.5, year=2023, descriptors=names[:61],
        negative_descriptors=names[61:], in_context=("timing", "map"), output_type=("map",), seed=7,
        title="true", version="[Insane]", tags='a, b "c"', cfg_scale=3.0, export_osz=True,
    )
    line = shell_command(command_words(options), windows=False)
    argv = shlex.split(line)
    assert argv[:2] == ["mapperator", "generate"]
    assert parse_overrides(GenerateOptions, argv[2:]) == options


def test_command_words_are_what_cmd_generate_parses(tokenizer):
    # Unquoted words (what a shell passes on) give the same options back; defaults are left out.
    options = GenerateOptions(audio_path="/songs/a b.mp3", descriptors=tuple(tokenizer.descriptor_names()[:2]))
    words = command_words(options)
    assert [w.partition("=")[0] for w in words] == ["audio_path", "descriptors"]
    assert words[0] == "audio_path=/songs/a b.mp3"
    assert parse_overrides(GenerateOptions, words) == options
    assert command_words(GenerateOptions()) == []


def test_windows_quoting_follows_the_c_runtime_rules():
    line = shell_command(["audio_path=C:\\Songs\\My Song\\", "title=say \"hi\"", "seed=3",
                          "descriptors=[style/grid snap,jumps/wide]"], windows=True)
    # a trailing backslash is doubled so it does not escape the closing quote; inner quotes are escaped
    assert line == ('mapperator generate audio_path="C:\\Songs\\My Song\\\\" title="say \\"hi\\"" seed=3 '
                    'descriptors="[style/grid snap,jumps/wide]"')


def test_descriptor_choices_group_every_descriptor_once(tokenizer):
    order = descriptor_order(tokenizer)
    assert sorted(order) == sorted(tokenizer.descriptor_names())
    assert len(order) == len(tokenizer.descriptor_names()) == 122
    groups = [n.partition("/")[0] for n in order]
    changes = sum(a != b for a, b in zip(groups, groups[1:]))
    assert changes == len(set(groups)) - 1  # each group's descriptors sit together under one heading
    headings = [c.title for c in descriptor_choices(tokenizer) if isinstance(c, Separator)]
    assert len(headings) == len(set(groups))
    kept = [c.value for c in descriptor_choices(tokenizer, exclude=order[:5]) if not isinstance(c, Separator)]
    assert kept == order[5:]


def test_precision_menu_offers_every_engine_precision_with_auto_first(monkeypatch):
    import questionary

    import engine
    from mapperator_app.wizard import Wizard

    asked = {}

    class Answer:
        def __init__(self, value):
            self.value = value

        def unsafe_ask(self):
            return self.value

    def select(message, choices, default=None, **kwargs):
        asked.update(choices=list(choices), default=default)
        assert default in choices  # questionary refuses a default that is not a choice
        return Answer("int8")

    monkeypatch.setattr(questionary, "select", select)
    wizard = Wizard()
    monkeypatch.setattr(wizard, "ask_bool", lambda *a, **k: False)
    monkeypatch.setattr(wizard, "ask_value", lambda *a, **k: None)
    wizard.advanced_output()
    assert asked == {"choices": list(engine.PRECISION_CHOICES), "default": "auto"}
    assert set(asked["choices"]) == {"auto", "fp32", "bf16", "amp", "int8"}
    assert wizard.options().precision == "int8"


def test_clean_path_drops_drag_and_drop_quotes():
    assert clean_path('  "C:\\My Songs\\a.mp3" ') == "C:\\My Songs\\a.mp3"
    assert clean_path("'/tmp/a b.wav'") == "/tmp/a b.wav"
    assert clean_path("/tmp/it's.wav") == "/tmp/it's.wav"


# --- the wizard in a pseudo-terminal ----------------------------------------------------------------------------


class Terminal:
    """``mapperator wizard`` in a pseudo-terminal of fixed size."""

    def __init__(self, tmp_path: Path, timeout: float = 120):
        pexpect = pytest.importorskip("pexpect")
        env = dict(os.environ)
        env.update(
            TERM="xterm-256color", PROMPT_TOOLKIT_NO_CPR="1", COLUMNS="200", LINES="50",
            PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]),
            HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"),  # published models: never downloaded by tests
            XDG_STATE_HOME=str(tmp_path / "state"),  # the log file
        )
        env.pop("NO_COLOR", None)
        self.child = pexpect.spawn(sys.executable, ["-m", "mapperator_app.cli", "wizard"], env=env, cwd=str(tmp_path),
                                   dimensions=(50, 200), encoding="utf-8", timeout=timeout)
        self.pexpect = pexpect
        self.seen = []
        self.child.logfile_read = self

    def write(self, text: str) -> None:  # pexpect's log of what the program printed
        self.seen.append(text)

    def flush(self) -> None:
        pass

    @property
    def text(self) -> str:
        return ANSI.sub("", "".join(self.seen))

    def answer(self, prompt: str, keys: str) -> None:
        self.child.expect(prompt)
        self.child.send(keys)

    def finish(self, timeout: float = 120) -> int:
        self.child.expect(self.pexpect.EOF, timeout=timeout)
        self.child.close()
        return self.child.exitstatus

    def command(self) -> list[str]:
        lines = COMMAND.findall(self.text)
        assert len(lines) == 1, self.text[-3000:]
        return shlex.split(lines[0])


def start_with_fixture_model(term: Terminal, out: Path, reference: str = "") -> None:
    term.answer(r"Song \(audio file\)", str(AUDIO) + ENTER)
    term.answer(r"Reference beatmap", reference + ENTER)
    term.answer(r"Output folder", CLEAR_LINE + str(out) + ENTER)
    term.answer(r"Model:", UP + ENTER)  # the last choice: another checkpoint
    term.answer(r"Checkpoint folder or Hugging Face repo id", str(MODEL) + ENTER)
    term.answer(r"Game mode", ENTER)


@pytest.mark.slow
def test_wizard_end_to_end_writes_a_beatmap(tmp_path, tokenizer):
    from engine import read_beatmap

    need(AUDIO)
    out = tmp_path / "out"
    out.mkdir()
    order = descriptor_order(tokenizer)
    term = Terminal(tmp_path)
    start_with_fixture_model(term, out)
    term.answer(r"Star rating", "99" + ENTER)
    term.child.expect("out of range|outside")  # the engine's reason, and the question stays open
    term.child.send(CLEAR_LINE + "3.5" + ENTER)
    term.answer(r"Year of the mapping style", "2023" + ENTER)
    term.answer(r"Mapper \(osu! user id", ENTER)
    term.answer(r"Descriptors \(what the map", SPACE + DOWN * 3 + SPACE + ENTER)
    term.answer(r"Negative descriptors", ENTER)
    term.answer(r"Generate:", ENTER)  # the model's usual outputs, ticked already
    term.answer(r"Change any advanced settings", DOWN + SPACE + ENTER)  # the sampling group
    term.answer(r"Seed:", "7" + ENTER)
    term.answer(r"Guidance \(cfg_scale\)", ENTER)
    term.answer(r"Sample \(vary", ENTER)
    term.answer(r"Temperature:", ENTER)
    term.answer(r"Top-p:", ENTER)
    term.answer(r"Top-k:", ENTER)
    term.answer(r"Timing temperature:", ENTER)
    term.answer(r"Time-shift bias:", ENTER)
    term.answer(r"Generate the beatmap now\?", ENTER)
    term.child.expect(r"Wrote ([^\r\n]+\.osu)", timeout=600)
    written = Path(term.child.match.group(1))
    assert term.finish() == 0, term.text[-3000:]

    argv = term.command()
    assert argv[:2] == ["mapperator", "generate"]
    assert parse_overrides(GenerateOptions, argv[2:]) == GenerateOptions(
        audio_path=str(AUDIO), output_path=str(out), model_path=str(MODEL), gamemode=0, difficulty=3.5, year=2023,
        descriptors=(order[0], order[3]), seed=7,
    )
    assert written.parent == out and written.is_file()
    beatmap = read_beatmap(written)
    assert beatmap.mode == 0
    assert beatmap.hit_objects


@pytest.mark.slow
def test_wizard_with_a_reference_beatmap_prints_the_command_without_running(tmp_path):
    need(REFERENCE)
    out = tmp_path / "out"
    out.mkdir()
    term = Terminal(tmp_path)
    term.answer(r"Song \(audio file\)", str(tmp_path / "missing.mp3") + ENTER)
    term.child.expect("not found")  # re-asked with the engine's reason
    term.child.send(CLEAR_LINE + str(AUDIO) + ENTER)
    term.answer(r"Reference beatmap", str(AUDIO) + ENTER)
    term.child.expect(r"must be an \.osu file")
    term.child.send(CLEAR_LINE + str(REFERENCE) + ENTER)
    term.answer(r"Output folder", CLEAR_LINE + str(out) + ENTER)
    term.answer(r"Model:", UP + ENTER)
    term.answer(r"Checkpoint folder or Hugging Face repo id", str(MODEL) + ENTER)
    term.answer(r"Game mode", ENTER)  # the reference's mode is the default
    term.answer(r"Star rating", ENTER)
    term.answer(r"Year of the mapping style", "1999" + ENTER)
    term.child.expect("out of range|outside the years")
    term.child.send(CLEAR_LINE + ENTER)
    term.answer(r"Mapper \(osu! user id", "123" + ENTER)
    term.child.expect("not a mapper")
    term.child.send(CLEAR_LINE + ENTER)
    term.answer(r"Descriptors \(what the map", ENTER)
    term.answer(r"Negative descriptors", ENTER)
    term.answer(r"Take from the reference beatmap", SPACE + ENTER)  # the first: timing
    term.answer(r"Add the generated objects", "n")
    term.answer(r"Generate:", ENTER)
    term.answer(r"Change any advanced settings", ENTER)
    term.answer(r"Generate the beatmap now\?", "n")
    assert term.finish() == 0, term.text[-3000:]
    assert "Copy the command above" in term.text
    assert parse_overrides(GenerateOptions, term.command()[2:]) == GenerateOptions(
        audio_path=str(AUDIO), beatmap_path=str(REFERENCE), output_path=str(out), model_path=str(MODEL),
        gamemode=0, in_context=("timing",),
    )
    assert not any(out.iterdir())


@pytest.mark.slow
def test_wizard_offers_to_skip_model_questions_when_the_model_cannot_be_had(tmp_path):
    need(AUDIO)
    out = tmp_path / "out"
    out.mkdir()
    term = Terminal(tmp_path)
    term.answer(r"Song \(audio file\)", str(AUDIO) + ENTER)
    term.answer(r"Reference beatmap", ENTER)
    term.answer(r"Output folder", CLEAR_LINE + str(out) + ENTER)
    term.child.expect(r"v32 +the newest model, all four modes \(not downloaded yet\)")
    term.answer(r"another checkpoint", ENTER)  # v32, the default
    term.answer(r"Game mode", DOWN * 3 + ENTER)  # osu!mania
    term.answer(r"is not downloaded yet\.", "")
    term.answer(r"What now\?", ENTER)  # try to download: offline, so it fails and says why
    term.answer(r"cannot be reached", "")
    term.answer(r"could not be downloaded\. What now\?", ENTER)  # skip
    term.answer(r"Star rating", "4" + ENTER)
    term.answer(r"Year of the mapping style", ENTER)
    term.answer(r"Generate:", ENTER)
    term.answer(r"Change any advanced settings", DOWN + SPACE + ENTER)  # the mania group
    term.answer(r"Key count", "seven" + ENTER)
    term.child.expect("expected a whole number")
    term.child.send(CLEAR_LINE + "7" + ENTER)
    term.answer(r"Share of hold notes", ENTER)
    term.answer(r"Share of scroll speed changes", ENTER)
    term.answer(r"Generate the beatmap now\?", "n")
    assert term.finish() == 0, term.text[-3000:]
    assert "Descriptors (what the map" not in term.text and "Mapper (osu!" not in term.text
    assert parse_overrides(GenerateOptions, term.command()[2:]) == GenerateOptions(
        audio_path=str(AUDIO), output_path=str(out), gamemode=3, difficulty=4.0, keycount=7,
    )
    assert not any(out.iterdir())


@pytest.mark.slow
def test_ctrl_c_exits_cleanly_without_writing(tmp_path):
    need(MODEL)
    out = tmp_path / "out"
    out.mkdir()
    term = Terminal(tmp_path)
    start_with_fixture_model(term, out)
    term.answer(r"Star rating", "3" + ENTER)
    term.answer(r"Year of the mapping style", ENTER)
    term.answer(r"Mapper \(osu! user id", ENTER)
    term.answer(r"Descriptors \(what the map", SPACE + DOWN + SPACE + CTRL_C)
    term.child.expect("Cancelled; nothing was written")
    assert term.finish() == 130
    assert "Traceback" not in term.text
    assert not any(out.iterdir())
    assert "mapperator generate" not in term.text


def test_ctrl_c_at_the_first_question(tmp_path):
    term = Terminal(tmp_path, timeout=60)
    term.answer(r"Song \(audio file\)", "/tm" + CTRL_C)
    term.child.expect("Cancelled; nothing was written")
    assert term.finish() == 130
    assert sorted(p.name for p in tmp_path.iterdir()) in ([], ["state"])  # at most the log folder


def test_without_a_terminal_it_says_to_use_generate(tmp_path):
    import subprocess

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               XDG_STATE_HOME=str(tmp_path / "state"))
    done = subprocess.run([sys.executable, "-m", "mapperator_app.cli", "wizard"], stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert done.returncode == 2
    assert "interactive terminal" in done.stderr and "mapperator generate" in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_the_output_question_asks_what_generation_will_ask(tmp_path, monkeypatch):
    """The wizard's output check is the engine's own (a file in the way, a folder that cannot take files), so a
    folder it accepts is one generation accepts, and its refusal is the engine's message in the wizard's language."""
    import mapperator_app.wizard as wizard
    from mapperator_app import i18n

    monkeypatch.setattr(wizard, "LANG", "fr")
    blocker = tmp_path / "a file"
    blocker.write_text("x")
    assert wizard._check_output(str(tmp_path / "new" / "folder")) is True
    assert wizard._check_output(str(tmp_path)) is True
    refused = wizard._check_output(str(blocker / "maps"))
    assert refused == i18n.t("error.generation.output_not_writable", "fr", folder=str(blocker / "maps"),
                             reason=i18n.t("error.generation.output_is_file", "fr", path=str(blocker)))
    assert wizard._check_output("") == i18n.t("wizard.need_output", "fr")
