"""``mapperator evaluate``: generated beatmaps against references, as a table with the mean, or as JSON.

    mapperator evaluate generated.osu reference.osu
    mapperator evaluate generated_folder/ references_folder/ --json   (pairs matched by file name)
    mapperator evaluate generated_folder/ reference.osu               (every map against the one reference)
"""
from __future__ import annotations

import json

# (column title, measure, format) in table order; signed formats for the generated - reference differences.
COLUMNS = (
    ("active\nF1", "active_rhythm_f1", "{:.3f}"),
    ("passive\nF1", "passive_rhythm_f1", "{:.3f}"),
    ("BPM\nerror", "bpm_error", "{:.2f}"),
    ("offset\nerror ms", "offset_error_ms", "{:.1f}"),
    ("stars\ndiff", "star_rating_diff", "{:+.2f}"),
    ("drain\ndiff s", "drain_time_diff_s", "{:+.1f}"),
)


def cmd_evaluate(generated: str, reference: str, as_json: bool = False) -> int:
    from rich.console import Console

    import engine

    report = engine.evaluate_all(generated, reference)
    if as_json:
        print(json.dumps(report.to_dict(), indent=1, ensure_ascii=False))
        return 0
    Console(highlight=False).print(table(report))
    return 0


def table(report):
    """One row per pair, then the mean of each column.

    Pairs matched by file name show one name; every map against one reference names it in the title.
    """
    from rich import box
    from rich.table import Table

    references = {p.reference for p in report.pairs}
    one_reference = len(references) == 1 and len(report.pairs) > 1
    same_names = all(p.generated == p.reference for p in report.pairs)
    title = f"Generated maps against {next(iter(references))}" if one_reference else "Generated maps against references"
    grid = Table(title=title, caption="rhythm F1 within 10 ms; diffs are generated - reference",
                 box=box.SIMPLE_HEAD)
    names = [p.generated for p in report.pairs] if one_reference or same_names else [
        f"{p.generated} vs {p.reference}" for p in report.pairs]
    grid.add_column("beatmap" if same_names and not one_reference else "generated", overflow="fold", min_width=16)
    for header, _, _ in COLUMNS:
        grid.add_column(header, justify="right", no_wrap=True)
    for name, pair in zip(names, report.pairs):
        values = pair.to_dict()
        grid.add_row(name, *(_cell(values[key], fmt) for _, key, fmt in COLUMNS),
                     end_section=pair is report.pairs[-1])
    grid.add_row(f"mean of {len(report.pairs)}", *(_cell(report.mean[key], fmt) for _, key, fmt in COLUMNS),
                 style="bold")
    return grid


def _cell(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else fmt.format(value)
