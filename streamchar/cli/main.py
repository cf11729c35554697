"""The `streamchar` command line: the command groups and top-level commands, each defined in its own
module, assembled here; `main` turns the package's errors into one-line messages."""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from streamchar.cli.bench_cmds import bench_app
from streamchar.cli.checkpoint_cmds import checkpoint_app
from streamchar.cli.codec_cmds import codec_app
from streamchar.cli.common import err_console, missing_extra
from streamchar.cli.config_cmds import config_app, info
from streamchar.cli.data_cmds import data_app
from streamchar.cli.eval_cmds import eval_app
from streamchar.cli.generate_cmd import demo, generate
from streamchar.cli.serve_cmd import serve
from streamchar.cli.train_cmds import train_app
from streamchar.errors import Interrupted, StreamcharError

app = typer.Typer(help="streamchar: real-time streaming generation of a talking character's speech and video from text.", no_args_is_help=True,
                  add_completion=False)
app.command("generate")(generate)
app.command("serve")(serve)
app.command("info")(info)
app.command("demo")(demo)
app.add_typer(config_app, name="config")
app.add_typer(data_app, name="data")
app.add_typer(bench_app, name="bench")
app.add_typer(codec_app, name="codec")
app.add_typer(eval_app, name="eval")
app.add_typer(train_app, name="train")
app.add_typer(checkpoint_app, name="checkpoint")


def main() -> None:
    try:
        app()
    except Interrupted as e:
        err_console.print(f"[bold red]interrupted:[/] {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(130)
    except StreamcharError as e:
        err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, markup=True, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err_console.print("[bold red]interrupted[/]", highlight=False)
        sys.exit(130)
    except ModuleNotFoundError as e:
        message = missing_extra(e)
        if message is None:
            raise
        err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
        sys.exit(2)
