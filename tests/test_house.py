"""The codebase's own rules, read from its source: packages import only downward, modules and
functions stay small, every config field is read, ruff is clean, and the wheel holds what a
`pip install` user needs and stays small."""

import ast
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from pydantic import BaseModel

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "streamchar"
LAYERS = ["config", "diffusion", "codecs", "data", "model", "streaming", "training", "evaluation", "serving", "cli"]
NEUTRAL = {"utils", "errors"}  # below every layer


def _modules():
    return sorted(PACKAGE.rglob("*.py"))


def _imports(path: Path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("streamchar."):
            yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            yield from ((node.lineno, a.name) for a in node.names if a.name.startswith("streamchar."))


def _part(module: str) -> str:
    return module.split(".")[1]


def test_packages_import_only_downward():
    wrong = []
    for path in _modules():
        rel = path.relative_to(PACKAGE).parts
        own = rel[0].removesuffix(".py") if len(rel) > 1 or rel[0] != "__main__.py" else "cli"
        for line, module in _imports(path):
            target = _part(module)
            if own in NEUTRAL:
                ok = target in NEUTRAL
            elif target in NEUTRAL or target == own:
                ok = True
            else:
                ok = own in LAYERS and target in LAYERS and LAYERS.index(target) < LAYERS.index(own)
            if not ok:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    order = "config → diffusion → codecs → data → model → streaming → training → evaluation → serving → cli"
    assert not wrong, f"imports against {order}:\n" + "\n".join(wrong)


def _statements(fn: ast.AST) -> int:
    """Statements in a function's body, not counting those of functions defined inside it."""
    count, todo = 0, list(fn.body)
    while todo:
        node = todo.pop()
        count += 1
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            for child in getattr(node, field, []):
                todo.extend(child.body if isinstance(child, (ast.ExceptHandler, ast.match_case)) else [child])
    return count


def test_modules_and_functions_stay_small():
    long_modules = [f"{p.relative_to(ROOT)}: {n} lines" for p in _modules() if (n := len(p.read_text().splitlines())) > 400]
    long_functions = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (n := _statements(node)) > 60:
                long_functions.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: {n} statements")
    assert not long_modules and not long_functions, "\n".join(long_modules + long_functions)


def _config_models():
    from streamchar.config import schema
    from streamchar.training import settings

    for module in (schema, settings):
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, BaseModel) and value.__module__ == module.__name__:
                yield value


def test_every_config_field_is_read():
    """A field is read where the code outside the config package names it as an attribute or a key."""
    names = set()
    for path in _modules():
        if path.parent.name == "config":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute):
                names.add(node.attr)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.add(node.value)
            elif isinstance(node, ast.keyword) and node.arg:
                names.add(node.arg)
    unread = [f"{m.__name__}.{f}" for m in _config_models() for f in m.model_fields if f not in names]
    assert not unread, f"config fields nothing reads: {unread}"


def test_ruff_is_clean():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--output-format", "concise", "streamchar", "tests", "benchmarks"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:]


@pytest.mark.slow
def test_the_wheel_is_small_and_holds_what_streaming_and_evaluation_need(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)], check=True)
    (wheel,) = tmp_path.glob("streamchar-*.whl")
    assert wheel.stat().st_size <= 40 * 1024 * 1024, f"{wheel.stat().st_size / 2**20:.1f} MB"
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder in ("models/tiny-student", "codecs/tiny-video", "codecs/tiny-audio-3engines", "eval/synthtalk-sync", "eval/synthtalk-id"):
        assert {f"streamchar/assets/{folder}/model.safetensors", f"streamchar/assets/{folder}/config.json"} <= names, folder
    assert not [n for n in names if "tiny-teacher" in n or "tiny-video-anchored" in n or n.endswith((".jsonl", ".png"))]
    assert "streamchar/serving/static/index.html" in names


def test_weights_kept_outside_the_wheel_are_found_in_a_checkout_and_named_elsewhere(monkeypatch, tmp_path):
    from streamchar.errors import StreamcharError
    from streamchar.utils import shipped

    assert shipped.shipped_dir("models", "tiny-teacher") == ROOT / "checkpoints" / "tiny-teacher"  # a source checkout finds it by name
    assert shipped.shipped_dir("models", "tiny-student").parent.parent == PACKAGE / "assets"
    monkeypatch.setattr(shipped, "CHECKPOINTS", tmp_path / "no-checkout")  # as installed from the wheel
    with pytest.raises(StreamcharError, match="checkpoints/tiny-teacher/"):
        shipped.shipped_dir("models", "tiny-teacher")


def test_the_readme_is_a_guide_and_results_are_one_file_per_benchmark():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250  # details live in docs/
    tracked = subprocess.run(["git", "ls-files", "benchmarks"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert 0 < len(tracked) <= 45, len(tracked)  # one current file per benchmark (43 with the corpus counts); earlier versions live in git history
