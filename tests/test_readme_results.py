"""The README's results tables say what the results files in `benchmarks/results/` hold: each
number shown, at the decimals shown, is the file's (a cell's numbers in brackets are its speech
engines', in the file's group order)."""

import json
import re
from pathlib import Path

ROOT = Path(__file__).parent.parent
RESULTS = ROOT / "benchmarks" / "results"
# a table's first header cell begins with -> the file it reports
TABLES = {"120 test-unseen clips": "short-shipped/eval-short.json", "3 five-minute streams": "long-shipped/eval-long.json"}
# a column's header begins with -> the summary's key
COLUMNS = {"WER": "wer", "Sync-C": "sync_c", "identity": "identity_similarity", "coverage": "coverage", "Quality Drift": "quality_drift"}
NUMBER = re.compile(r"-?\d+\.\d+")


def _tables(text):
    """Each table of the README as (header cells, rows of cells)."""
    out, block = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append([c.strip() for c in line.strip("|").split("|")])
        elif block:
            out.append((block[0], block[2:]))
            block = []
    return out


def _system(cell, systems):
    name = cell.replace("*", "").replace("`", "").split(",")[0].strip()
    assert name in systems, f"the README's row {cell!r} names no system of the results file ({sorted(systems)})"
    return systems[name]


def _shown(value, shown):
    decimals = len(shown.split(".")[1])
    return f"{value:.{decimals}f}"


def test_the_readme_results_tables_match_their_files():
    checked = 0
    for header, rows in _tables((ROOT / "README.md").read_text()):
        source = next((f for prefix, f in TABLES.items() if header[0].startswith(prefix)), None)
        if source is None:
            continue
        systems = json.loads((RESULTS / source).read_text())["systems"]
        for row in rows:
            system = _system(row[0], systems)
            for title, cell in zip(header[1:], row[1:]):
                key = next(k for prefix, k in COLUMNS.items() if title.startswith(prefix))
                numbers = NUMBER.findall(cell)
                expected = [system["summary"][key], *(group[key] for group in system["by_group"].values())][: len(numbers)]
                assert [_shown(v, n) for v, n in zip(expected, numbers)] == numbers, (source, row[0], title)
                checked += len(numbers)
    assert checked >= 30  # both tables were found and read
