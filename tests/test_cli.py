"""The geninf command: usage errors and exit codes (the full demo runs in `make demo`)."""

import pytest

from geninf.cli import main


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "demo" in capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert "geninf" in capsys.readouterr().out


def test_unknown_option_is_a_usage_error():
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--no-such-flag"])
    assert exc.value.code == 2


def test_bad_class_is_one_line_exit_2(capsys):
    assert main(["demo", "--forget-class", "42", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "forget-class" in err[0]
