"""The `lynchpin` command line."""

from __future__ import annotations

import typer

app = typer.Typer(help="Lynchpin, the open-source incident manager.", no_args_is_help=True)


@app.command()
def up() -> None:
    """Run all four services in one process on the embedded default (SQLite under LYNCHPIN_DATA_DIR)."""
    from shared.launcher import main as launch

    launch()


@app.command()
def version() -> None:
    """Print the version."""
    from importlib.metadata import version as v

    typer.echo(v("lynchpin"))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
