"""The `pulse` CLI without Ray or a database: each command listed with a one-line help, each job command one
click object whether reached as `pulse <job>` or `python -m jobs.<job>`, and the exit codes of an entry
point (cluster.top.entry)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator

import click
import pytest
import sqlalchemy.exc
from click.testing import CliRunner

from cluster.top import cli
from cluster.top.entry import EXIT_INTERRUPTED, EXIT_USER_ERROR, run_command
from jobs.errors import JobError
from storage.errors import DatabaseUnavailable

COMMANDS = [
    "up",
    "down",
    "status",
    "migrate",
    "ingest",
    "embed",
    "models",
    "sources",
    "collect",
    "cms",
    "trends",
    "recluster",
    "profiles",
    "reindex",
    "backfill",
    "submit",
    "jobs",
    "backup",
    "restore",
    "serve-config",
    "schedules",
]

#: Each job command's options: the union of what `pulse <job>` and `python -m jobs.<job>` had apart.
JOB_OPTIONS = {
    "ingest": {"--source", "--batch-size", "--embed", "--no-progress"},
    "embed": {"--full", "--model", "--input", "--max-actors", "--wait", "--no-progress"},
    "collect": {"--source", "--force", "--loop", "--embed", "--no-progress"},
    "reindex": {"--model", "--level", "--shards", "--force", "--restart", "--num-cpus"},
    "backfill": {"--file", "--source", "--batch-size", "--embed", "--no-progress"},
    "backup": {"--keep", "--pg-bin", "--no-progress"},
}


def _commands_rows(help_text: str) -> list[str]:
    """The lines of the help's "Commands:" section."""
    return [line for line in help_text.split("\nCommands:\n", 1)[1].splitlines() if line.strip()]


def _paths(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """The path of every command and subcommand below ``command``."""
    for name, sub in getattr(command, "commands", {}).items():
        yield (*path, name)
        yield from _paths(sub, (*path, name))


def _options(command: click.Command) -> set[str]:
    return {opt for param in command.params if isinstance(param, click.Option) for opt in param.opts} - {
        "--help"
    }


def test_pulse_help_lists_every_command_with_a_one_line_help() -> None:
    result = CliRunner().invoke(cli.pulse, ["--help"], prog_name="pulse", terminal_width=80)
    assert result.exit_code == 0, result.output
    rows = _commands_rows(result.output)
    assert [row.split()[0] for row in rows] == COMMANDS  # one row each: no help runs onto a second line
    for row in rows:
        _, short_help = row.split(maxsplit=1)
        assert short_help and not short_help.endswith("..."), row  # click's short help, not cut


def test_every_command_and_subcommand_has_its_help() -> None:
    paths = list(_paths(cli.pulse))
    assert {p for p in paths if len(p) == 2} >= {
        ("models", "list"),
        ("models", "add"),
        ("models", "activate"),
        ("sources", "add"),
        ("sources", "list"),
        ("sources", "show"),
        ("sources", "remove"),
        ("cms", "admin"),
    }
    for path in paths:
        result = CliRunner().invoke(cli.pulse, [*path, "--help"], prog_name="pulse")
        assert result.exit_code == 0, (path, result.output)
        assert result.output.startswith(f"Usage: pulse {' '.join(path)} "), result.output


@pytest.mark.parametrize("job", sorted(JOB_OPTIONS))
def test_a_job_command_is_one_object_for_pulse_and_python_m(
    job: str, capsys: pytest.CaptureFixture[str]
) -> None:
    module = importlib.import_module(f"jobs.{job}.__main__")
    command = cli.pulse.commands[job]
    assert getattr(module, job) is command
    assert _options(command) == JOB_OPTIONS[job]
    # Both entry points show the same help, but for the program name.
    assert module.main(["--help"]) == 0
    via_module = capsys.readouterr().out
    assert cli.main([job, "--help"]) == 0
    via_pulse = capsys.readouterr().out
    assert via_module.startswith(f"Usage: python -m jobs.{job} [OPTIONS]")
    assert via_module.replace(f"python -m jobs.{job}", f"pulse {job}") == via_pulse


@pytest.mark.parametrize("job", ["embed", "collect"])
def test_no_progress_is_a_flag_of_embed_and_collect(job: str) -> None:
    (option,) = [p for p in cli.pulse.commands[job].params if "--no-progress" in p.opts]
    assert isinstance(option, click.Option) and option.is_flag


@click.command()
@click.argument("outcome")
def _probe(outcome: str) -> int:
    """A command ending as ``outcome`` says."""
    if outcome == "storage":
        raise DatabaseUnavailable("postgresql://pulse:***@127.0.0.1:1/pulse", "connection refused")
    if outcome == "job":
        raise JobError("the model is busy; try again later")
    if outcome == "interrupt":
        raise KeyboardInterrupt
    if outcome == "db-lost":  # what a statement raises when PostgreSQL is stopped under it
        raise sqlalchemy.exc.OperationalError(
            "COMMIT", None, Exception("terminating connection due to administrator command")
        )
    if outcome == "bug":
        raise ValueError("a bug keeps its traceback")
    return int(outcome)


@pytest.mark.parametrize(
    ("outcome", "code", "stderr"),
    [
        ("0", 0, ""),
        ("3", 3, ""),
        (
            "storage",
            EXIT_USER_ERROR,
            "error: cannot connect to PostgreSQL at postgresql://pulse:***@127.0.0.1:1/pulse",
        ),
        ("job", EXIT_USER_ERROR, "error: the model is busy; try again later"),
        ("interrupt", EXIT_INTERRUPTED, "interrupted"),
        (
            "db-lost",
            EXIT_USER_ERROR,
            "error: PostgreSQL stopped answering during the command (terminating connection due to "
            "administrator command): what was committed before is kept; run the command again",
        ),
    ],
)
def test_an_entry_point_turns_outcomes_into_exit_codes(
    outcome: str, code: int, stderr: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_command(_probe, [outcome], prog_name="probe") == code
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1].startswith(stderr) if stderr else err == ""
    assert "Traceback" not in err


def test_an_unexpected_error_keeps_its_traceback() -> None:
    with pytest.raises(ValueError, match="a bug keeps its traceback"):
        run_command(_probe, ["bug"], prog_name="probe")


def test_a_usage_error_exits_2_with_the_usage_as_argparse_did(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        run_command(_probe, [], prog_name="probe")
    assert exit_.value.code == 2
    assert "Usage: probe [OPTIONS] OUTCOME" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        cli.main(["sources", "add", "bad", "podcast", "https://example.com/"])
    assert exit_.value.code == 2
    assert "'podcast' is not one of" in capsys.readouterr().err
