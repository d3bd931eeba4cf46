"""`goodwill` — run the engine, check policies, export schemas, explain decisions.

This is the `app` and its console entry point (`main`); the commands are in one module
per audience (`engine.cli_service`, `engine.cli_policy`, `engine.cli_events`,
`engine.cli_explain`) and the options they share in `engine.cli_options`.
"""

from __future__ import annotations

import sys

import typer

from engine.cli_events import emit, redrive, schema
from engine.cli_explain import explain, verify
from engine.cli_options import room_hint
from engine.cli_policy import check, docs, fields, simulate, steps
from engine.cli_service import rebuild, run, status, topics_create

app = typer.Typer(
    name="goodwill",
    help="Event-sourced service-policy engine for customer support.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)

# Registered in the order `goodwill --help` lists them (a group, `topics`, after the commands).
app.command()(run)
app.command()(check)
app.command()(steps)
app.command()(schema)
app.command()(fields)
app.command()(status)
app.command()(explain)
app.command()(verify)
app.command()(simulate)
app.command()(docs)

topics_app = typer.Typer(help="Manage Goodwill's Kafka topics.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
topics_app.command("create")(topics_create)

app.command()(emit)
app.command()(redrive)
app.command()(rebuild)


def main(argv: list[str] | None = None) -> None:
    """Console entry point: a bad flag is one line on stderr and exit 2, never a traceback."""
    args = sys.argv[1:] if argv is None else argv
    try:
        code = app(args=args or ["--help"], prog_name="goodwill", standalone_mode=False)
    except typer.Exit as err:
        code = err.exit_code
    except typer.Abort:
        typer.echo("goodwill: interrupted", err=True)
        code = 130
    except OSError as err:  # a directory that cannot be made, a disk that is full, ...
        where = f"{err.filename}: " if err.filename else ""
        typer.echo(f"goodwill: {where}{err.strerror or err}{room_hint(err)}", err=True)
        code = 1
    except typer.TyperException as err:  # every usage error of the CLI library derives from it
        if type(err).__name__ == "NoArgsIsHelpError":  # `goodwill topics`: its help, as for
            typer.echo(err.format_message())  # `goodwill` alone
            sys.exit(0)
        ctx = getattr(err, "ctx", None)
        where = ctx.command_path if ctx is not None else "goodwill"
        typer.echo(f"{where}: {err.format_message()} (see `{where} --help`)", err=True)
        code = getattr(err, "exit_code", 2)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":  # python -m engine.cli
    main()
