"""Every command: --help lists each flag with help text and its default; a mistake is one line, exit 2."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

import pytest

import glanet
from glanet.cli import Parser, number
from glanet.commands import COMMANDS
from glanet.commands import main as glanet_main


def _run(module: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    main = importlib.import_module(module).main
    try:
        code = main(argv)
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return int(code or 0), out.out, out.err


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_help_shows_every_flag_with_its_default(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    # Parser refuses a flag without help text when the parser is built, so --help building it is the check
    code, out, err = _run(COMMANDS[command][0], ["--help"], capsys)
    assert code == 0, err
    assert "usage:" in out and "--" in out
    if command in ("train", "eval", "build", "synth", "run"):
        assert "(default: " in out  # ArgumentDefaultsHelpFormatter's words, from the shared Parser


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_an_unknown_flag_is_one_line(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(COMMANDS[command][0], ["--no-such-flag"], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "error" in lines[0], err  # the missing required flags, or the unknown one
    assert "usage:" not in err and "Traceback" not in err


def test_a_flag_without_help_is_refused_when_the_parser_is_built() -> None:
    p = Parser(prog="x")
    with pytest.raises(TypeError, match="--bare has no help text"):
        p.add_argument("--bare", type=int)
    p.add_argument("positional")  # positionals may go without (their name says what they are)


def test_defaults_of_nothing_are_not_shown() -> None:
    p = Parser(prog="x")
    p.add_argument("--flag", action="store_true", help="a switch")
    p.add_argument("--path", help="a file")
    p.add_argument("--zero", type=int, default=0, help="a count")
    text = p.format_help()
    assert "(default: False)" not in text and "(default: None)" not in text
    assert "(default: 0)" in text  # 0 is a value worth showing, unlike False


@pytest.mark.parametrize(
    ("parse", "text", "message"),
    [
        (number(int, 1), "-3", "must be at least 1"),
        (number(int, 1), "2.5", "is not an integer"),
        (number(float, 0, above=True), "0", "must be above 0"),
        (number(float), "nan", "finite"),
        (number(float), "inf", "finite"),
        (number(int, 1, 100), "101", "at most 100"),
    ],
)
def test_number_refuses_what_a_user_might_type(parse, text: str, message: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=message):
        parse(text)


def test_number_accepts_the_range() -> None:
    assert number(int, 1)("1") == 1
    assert number(float, 0, above=True)("0.001") == 0.001
    assert number(int, 1, 100)("100") == 100


@pytest.mark.parametrize(
    ("module", "argv", "flag"),
    [
        ("glanet.train", ["--config", "x", "--out", "y", "--lr", "nan"], "--lr"),
        ("glanet.train", ["--config", "x", "--out", "y", "--epochs", "0"], "--epochs"),
        (
            "glanet.evaluate",
            ["--checkpoint", "a", "--list", "b", "--out", "c", "--batch-size", "0"],
            "--batch-size",
        ),
        ("glanet.data.synth", ["--out", "x", "--videos-per-class", "-1"], "--videos-per-class"),
        (
            "engines.build",
            ["--manifest", "m", "--backend", "openvino", "--precision", "int8", "--calib-frames", "0"],
            "--calib-frames",
        ),
        ("glanet.convert", ["--src", "a", "--out", "b", "--fps", "-25"], "--fps"),
    ],
)
def test_numeric_flags_are_checked_by_name(module: str, argv: list[str], flag: str, capsys) -> None:
    code, _, err = _run(module, argv, capsys)
    assert code == 2 and flag in err and len(err.strip().splitlines()) == 1, err


def _glanet(argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch) -> tuple[int, str, str]:
    """`glanet ...` in-process; the dispatcher renames sys.argv[0] for the subcommand's usage line."""
    monkeypatch.setattr(sys, "argv", ["glanet", *argv])
    try:
        code = glanet_main(argv)
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return int(code or 0), out.out, out.err


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_glanet_version_prints_the_package_version(flag: str, capsys, monkeypatch) -> None:
    code, out, err = _glanet([flag], capsys, monkeypatch)
    assert (code, out, err) == (0, f"glanet {glanet.__version__}\n", "")
    assert glanet.__version__.count(".") == 2


def test_glanet_archive_help_shows_its_flags(capsys, monkeypatch) -> None:
    code, out, err = _glanet(["archive", "--help"], capsys, monkeypatch)
    assert code == 0, err
    assert out.startswith("usage: glanet archive") and "--videos" in out and "--out" in out


def test_glanet_help_lists_every_command(capsys, monkeypatch) -> None:
    code, out, _ = _glanet(["--help"], capsys, monkeypatch)
    assert code == 0 and "--version" in out
    assert all(f"  {name} " in out for name in COMMANDS)


def test_an_unknown_glanet_command_is_one_line_and_exit_2(capsys, monkeypatch) -> None:
    code, out, err = _glanet(["archiv", "--videos", "x"], capsys, monkeypatch)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "unknown command 'archiv'" in lines[0] and "archive" in lines[0], err
    assert "did you mean archive?" in lines[0]


@pytest.mark.parametrize(
    "typed, meant", [("rnu", "run"), ("trian", "train"), ("exprot", "export"), ("sumary", "summary")]
)
def test_a_mistyped_command_gets_a_suggestion(typed: str, meant: str, capsys, monkeypatch) -> None:
    code, _, err = _glanet([typed], capsys, monkeypatch)
    assert code == 2 and f"did you mean {meant}?" in err and len(err.strip().splitlines()) == 1


def test_a_command_nothing_like_any_gets_no_guess(capsys, monkeypatch) -> None:
    code, _, err = _glanet(["zzz"], capsys, monkeypatch)
    assert code == 2 and "did you mean" not in err


@pytest.mark.parametrize(
    "typed, meant", [("--sorce", "--source"), ("--evnets", "--events"), ("--sourse=x", "--source")]
)
def test_a_mistyped_flag_gets_a_suggestion(typed: str, meant: str, capsys) -> None:
    code, _, err = _run("stream.cli.run", ["--source", "demo", typed, "v"], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].endswith(f"did you mean {meant}?"), err


def test_an_unknown_flag_like_no_other_gets_no_guess(capsys) -> None:
    code, _, err = _run("stream.cli.run", ["--zzzzzz"], capsys)
    assert code == 2 and "did you mean" not in err


# --- the mistakes, as a user types them ------------------------------------------------------------


@pytest.mark.parametrize(
    "argv, words",
    [
        (
            ["run", "--sorce", "demo"],
            "glanet run: error: unrecognized arguments: --sorce demo; did you mean --source?",
        ),
        (["archiv"], "glanet: unknown command 'archiv'; did you mean archive? one of: run, archive,"),
        (
            ["summary", "--config", "glanet_r34_hmdb"],
            "config file not found: glanet_r34_hmdb; did you mean glanet_r34_hmdb51? shipped configs: ",
        ),
    ],
)
def test_a_mistake_is_one_line_with_the_suggestion(argv, words: str, capsys, monkeypatch) -> None:
    code, out, err = _glanet(argv, capsys, monkeypatch)
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 1 and words in lines[0], err
    assert "Traceback" not in err


def test_a_wrong_config_name_lists_every_shipped_config(capsys, monkeypatch) -> None:
    from glanet.package_data import CONFIGS

    _, _, err = _glanet(["summary", "--config", "glanet_r34_hmdb"], capsys, monkeypatch)
    shipped = sorted(p.stem for p in CONFIGS.glob("*.toml"))
    assert len(shipped) >= 5 and err.strip().endswith("shipped configs: " + ", ".join(shipped))


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_usage_and_errors_say_glanet_command(command: str, capsys, monkeypatch) -> None:
    """Under `glanet <command>` a parser named `python -m <module>` (or nothing: `archive.py`) is
    `glanet <command>`, in --help and in the one error line."""
    code, out, err = _glanet([command, "--help"], capsys, monkeypatch)
    assert code == 0 and out.startswith(f"usage: glanet {command} "), out[:200]
    assert "python -m" not in out and ".py " not in out.split("\n\n")[0]
    code, _, err = _glanet([command, "--no-such-flag"], capsys, monkeypatch)
    assert code == 2 and err.startswith(f"glanet {command}: error: "), err


def test_a_sub_parser_and_its_epilog_say_glanet_too(capsys, monkeypatch) -> None:
    code, out, _ = _glanet(["synth", "--help"], capsys, monkeypatch)
    assert code == 0 and "glanet synth preview --out preview.png" in " ".join(out.split())
    code, out, _ = _glanet(["synth", "preview", "--help"], capsys, monkeypatch)
    assert code == 0 and out.startswith("usage: glanet synth preview ")


def test_run_as_a_module_a_parser_is_named_as_it_was_run(monkeypatch) -> None:
    """`python -m stream.cli.archive` (argparse alone: 'archive.py'); a named parser keeps its name."""
    import types

    main = types.ModuleType("__main__")
    main.__spec__ = importlib.util.find_spec("stream.cli.archive")
    monkeypatch.setitem(sys.modules, "__main__", main)
    monkeypatch.setattr(sys, "argv", ["/somewhere/stream/cli/archive.py"])
    assert Parser().prog == "python -m stream.cli.archive"
    assert Parser(prog="python -m glanet.train").prog == "python -m glanet.train"
    monkeypatch.setattr(sys, "argv", ["glanet train"])
    assert Parser(prog="python -m glanet.train", description="see python -m glanet.train").description == (
        "see glanet train"
    )
