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
def rebuild() -> None:
    """Rebuild analytics' read models from the start of every service's log (run with analytics stopped)."""
    import asyncio

    from services.analytics.rebuild import rebuild as run
    from shared.settings import Settings

    typer.echo(str(asyncio.run(run(Settings()))))


@app.command()
def version() -> None:
    """Print the version."""
    from importlib.metadata import version as v

    typer.echo(v("lynchpin"))


def main() -> None:
    app()


if __name__ == "__main__":
    main()
