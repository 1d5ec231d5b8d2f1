"""The ``key=value`` spelling shared by the package's argparse commands
(``cofi_lightning.tools.cli``)."""

import argparse

import pytest

from cofi_lightning.tools.cli import boolean, int_at_least, key_values_to_options, parse_key_values


def test_only_key_value_tokens_are_rewritten():
    argv = ["batch=32", "paths.data_dir=/a=b", "--seq", "8", "--out=x=y", "/a=b", "=x", "s95"]
    assert key_values_to_options(argv) == [
        "--batch=32",
        "--paths.data_dir=/a=b",
        "--seq",
        "8",
        "--out=x=y",
        "/a=b",
        "=x",
        "s95",
    ]


def test_parse_key_values_rejects_unknown_keys_and_abbreviations(capsys):
    parser = argparse.ArgumentParser(prog="cmd", allow_abbrev=False)
    parser.add_argument("--batch", type=int_at_least(1))
    parser.add_argument("--flag", nargs="?", const=True, default=False, type=boolean)
    assert vars(parse_key_values(parser, ["batch=3", "flag=no"])) == {"batch": 3, "flag": False}
    assert vars(parse_key_values(parser, ["--flag"])) == {"batch": None, "flag": True}
    for argv, message in [
        (["bat=3"], "unknown key(s): bat"),  # no prefix matching
        (["batch=0"], "argument --batch: must be an integer >= 1, got '0'"),
        (["flag=maybe"], "argument --flag: expected true or false, got 'maybe'"),
    ]:
        with pytest.raises(SystemExit) as exit_:
            parse_key_values(parser, argv)
        assert exit_.value.code == 2 and message in capsys.readouterr().err
