"""The ``mapperator`` command.

    mapperator generate audio_path=song.mp3 gamemode=0 difficulty=5     make a beatmap
    mapperator mod beatmap_path=map.osu                                  MaiMod suggestions
    mapperator timing audio_path=song.mp3                                time a song
    mapperator mapset audio_path=song.mp3 difficulties=[2,3.5,5,6.5]     a mapset (or num_variants=N tries)
    mapperator evaluate GENERATED REFERENCE [--json]                     compare generated maps with references
    mapperator app [--browser] [--no-open] [--port N]                    the desktop app
    mapperator download [v32|v32-mini|v31|v30|v29|REPO] [--gamemode N]   fetch a model
    mapperator wizard [--lang fr]                                        guided generation
    mapperator train key=value ...                                       train or fine-tune (LoRA)

Options are ``key=value`` words with upstream's names; ``config=FILE.yaml`` loads a file first.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from . import logs


def _engine():
    import engine

    return engine


def _error(message: str, code: int = 2) -> int:
    from rich.console import Console

    Console(stderr=True).print(f"[bold red]error:[/] {message}", highlight=False, markup=True, soft_wrap=True)
    return code


class _Bar:
    """A tqdm progress bar fed by the engine's Progress callback."""

    def __init__(self, unit_label: str = "job"):
        from tqdm import tqdm

        from engine import Eta

        # tqdm's own {remaining} averages over the whole job (model loading included); the engine's Eta follows
        # the current pass, so a long song gets a steady "about N min left"
        self.bar = tqdm(total=1000, bar_format="{l_bar}{bar}| {elapsed}{postfix}", dynamic_ncols=True,
                        desc=unit_label, file=sys.stderr)
        self.eta = Eta()

    def __call__(self, p) -> None:
        from engine import eta_text

        self.bar.n = int(p.fraction * 1000)
        self.bar.set_description_str(p.stage, refresh=False)
        bits = [f"{p.tokens_per_second:.0f} tok/s"] if p.tokens_per_second else []
        left = eta_text(self.eta.update(p.fraction))
        if left:
            bits.append(left)
        self.bar.set_postfix_str(", ".join(bits), refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def cmd_generate(words: Sequence[str], interactive: bool = False, as_json: bool = False,
                 lang: str | None = None) -> int:
    if interactive:
        from .wizard import run_wizard

        return run_wizard(lang)
    if any(w.partition("=")[0].strip().lstrip("+").replace("-", "_") == "num_variants" for w in words):
        from .mapset_cli import cmd_mapset

        return cmd_mapset(words, as_json=as_json)
    engine = _engine()
    options = engine.parse_overrides(engine.GenerateOptions, words)
    bar = _Bar("generate")
    try:
        result = engine.generate(options, progress=bar)
    finally:
        bar.close()
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    from .forms import result_check

    check = result_check(result)
    if as_json:
        import json

        print(json.dumps(result_json(result, check), indent=1, ensure_ascii=False, default=str))
        return 0
    print(f"Wrote {result.path}")
    print(f"  {len(result.beatmap.hit_objects)} objects, model {result.version}, seed {result.seed}, "
          f"{result.tokens} tokens in {result.seconds:.1f} s ({result.tokens_per_second:.0f} tok/s)")
    print(f"  check: {check.summary_line()}")
    return 0


def result_json(result, check) -> dict:
    """A generation's result and its check as one JSON-ready dict."""
    import dataclasses

    return {"path": str(result.path), "osu_path": str(result.osu_path) if result.osu_path else None,
            "version": result.version, "seed": result.seed, "objects": len(result.beatmap.hit_objects),
            "tokens": result.tokens, "seconds": round(result.seconds, 3), "warnings": [str(w) for w in result.warnings],
            "warning_ids": [getattr(w, "message_id", None) for w in result.warnings],
            "options": dataclasses.asdict(result.options), "check": check.to_json()}


def cmd_download(source: str | None, gamemode: int | None, revision: str | None) -> int:
    from tqdm import tqdm

    import engine

    source = source or engine.DEFAULT_VERSION
    folder, subfolder = engine.fetch_model(source, gamemode=gamemode, revision=revision, progress=tqdm)
    print(f"{source}{'/' + subfolder if subfolder else ''} is ready in {folder}")
    return 0


def _hardware_help() -> str:
    return (f"Hardware: device=auto|cpu|cuda|mps, precision={'|'.join(_engine().PRECISION_CHOICES)} "
            "(auto: int8 on a CPU, bf16 on a recent NVIDIA GPU, else fp32; int8 runs on the CPU only).")


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="mapperator", description="AI osu! beatmap generation, modding and timing.",
                                 epilog="Run `mapperator COMMAND -h` for a command's options.")
    ap.add_argument("--version", action="store_true", help="print the version and exit")
    ap.add_argument("--verbose", "-v", action="store_true", help="log details to the terminal too")
    ap.add_argument("--selftest", action="store_true",
                    help="check this installation: generate a tiny map through the app's server (headless) and exit")
    sub = ap.add_subparsers(dest="command")
    # --verbose is accepted after the command too; SUPPRESS keeps a subcommand from resetting it to False.
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument("--verbose", "-v", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)

    g = sub.add_parser("generate", parents=[verbose], help="generate a beatmap from a song",
                       description="Generate a beatmap. Options are key=value (upstream's names), e.g. "
                                   "audio_path=song.mp3 gamemode=0 difficulty=5 model_path=v32.",
                       epilog=_hardware_help())
    g.add_argument("--interactive", "-i", action="store_true", help="ask for every setting (the wizard)")
    g.add_argument("--lang", help="the wizard's language (en, fr, de, ja, ...; default: the system's)")
    g.add_argument("--json", action="store_true", help="print the result and its check as JSON")
    g.add_argument("words", nargs="*", metavar="key=value")

    ms = sub.add_parser("mapset", parents=[verbose], help="several difficulties (or variants) of one song at once",
                        description="A mapset in one job: the generate options plus difficulties=[2,3.5,5,6.5], "
                                    "gamemodes=[0,3], difficulty_names=[...], seeds=[...]; or num_variants=N tries "
                                    "of one difficulty.")
    ms.add_argument("--json", action="store_true", help="print every map and its check as JSON")
    ms.add_argument("words", nargs="*", metavar="key=value")

    m = sub.add_parser("mod", parents=[verbose], help="MaiMod: AI and rule-based suggestions for a beatmap",
                       epilog=_hardware_help())
    m.add_argument("--json", action="store_true", help="print suggestions as JSON")
    m.add_argument("words", nargs="*", metavar="key=value")

    t = sub.add_parser("timing", parents=[verbose], help="find a song's timing points", epilog=_hardware_help())
    t.add_argument("words", nargs="*", metavar="key=value")

    e = sub.add_parser("evaluate", parents=[verbose], help="compare generated beatmaps with reference beatmaps",
                       description="Rhythm F1, BPM and offset error, star-rating and drain-time difference. "
                                   "Folders are paired by file name; a folder against one file compares every map "
                                   "with that file.")
    e.add_argument("generated", help="a generated .osu or a folder of them")
    e.add_argument("reference", help="the reference .osu or a folder of them")
    e.add_argument("--json", action="store_true", help="print one JSON object (the means and every pair)")

    a = sub.add_parser("app", parents=[verbose], help="open the desktop app")
    a.add_argument("--browser", action="store_true", help="serve the UI for a normal web browser")
    a.add_argument("--no-open", action="store_true", help="with --browser: only print the address")
    a.add_argument("--port", type=int, default=None, help="port (default: GRADIO_SERVER_PORT or a free one)")

    d = sub.add_parser("download", parents=[verbose], help="download a model into the Hugging Face cache")
    d.add_argument("source", nargs="?", default=None,
                   help="v29, v30, v31, v32, v32-mini or a Hugging Face repo id (default: the newest version)")
    d.add_argument("--gamemode", type=int, default=None, help="also fetch the gamemode=N model of the repo")
    d.add_argument("--revision", default=None)

    w = sub.add_parser("wizard", parents=[verbose], help="guided generation in the terminal")
    w.add_argument("--lang", help="the language of the questions (en, fr, de, ja, ...; default: the system's)")

    tr = sub.add_parser("train", parents=[verbose], help="train a model or a LoRA adapter")
    tr.add_argument("words", nargs="*", metavar="key=value")
    return ap


def parse_args(parser: argparse.ArgumentParser, argv: list[str]) -> argparse.Namespace:
    """Flags anywhere on the line: ``mod beatmap_path=map.osu --json rules=false`` keeps every key=value word.

    argparse gives a ``*`` positional only the words before the first flag; the later ones come back as
    unknown and join the command's key=value words in their order. Unknown flags are still an error.
    """
    args, unknown = parser.parse_known_args(argv)
    if hasattr(args, "words"):
        args.words += [word for word in unknown if not word.startswith("-")]
        unknown = [word for word in unknown if word.startswith("-")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parse_args(parser, argv)
    if args.version:
        from importlib.metadata import version

        print(f"mapperator {version('mapperator')}")
        return 0
    if args.selftest:
        from .selftest import run_selftest

        return run_selftest()
    if args.command is None:
        parser.print_help()
        return 0
    log_file = logs.setup(verbose=args.verbose)
    engine = _engine()
    try:
        return _dispatch(args)
    except engine.Cancelled as e:
        return _error(str(e), 130)
    except engine.MapperatorError as e:
        return _error(str(e))
    except KeyboardInterrupt:
        return _error("cancelled; nothing was written", 130)
    except Exception as e:  # a bug: say where the details are instead of dumping a traceback
        logging.getLogger("mapperator").exception("unexpected error")
        return _error(f"unexpected {type(e).__name__}: {e} (details in {log_file})", 1)


def _dispatch(args) -> int:
    if args.command == "generate":
        return cmd_generate(args.words, interactive=args.interactive, as_json=args.json, lang=args.lang)
    if args.command == "mapset":
        from .mapset_cli import cmd_mapset

        return cmd_mapset(args.words, as_json=args.json)
    if args.command == "download":
        return cmd_download(args.source, args.gamemode, args.revision)
    if args.command == "mod":
        from .mod_cli import cmd_mod

        return cmd_mod(args.words, as_json=args.json)
    if args.command == "timing":
        from .timing_cli import cmd_timing

        return cmd_timing(args.words)
    if args.command == "evaluate":
        from .evaluate_cli import cmd_evaluate

        return cmd_evaluate(args.generated, args.reference, as_json=args.json)
    if args.command == "app":
        from .launch import launch

        return launch(browser=args.browser, open_browser=not args.no_open, port=args.port)
    if args.command == "wizard":
        from .wizard import run_wizard

        return run_wizard(args.lang)
    if args.command == "train":
        return _engine().train_from_words(args.words)
    raise AssertionError(args.command)


if __name__ == "__main__":
    sys.exit(main())
