"""The README documents every setting and the two set-up commands."""

import pytest

from geo_engine import SETTINGS, Settings

from .conftest import ROOT

README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_setting_is_documented(setting):
    assert f"`{setting.env}`" in README
    assert getattr(Settings(), setting.name) == setting.default


def test_setup_commands_are_documented():
    assert "make run" in README and "make test" in README


def test_settings_come_from_the_environment_and_flags_win():
    s = Settings.from_env({"GEO_ENGINE_DB": "/tmp/a.db", "GEO_ENGINE_DEFAULT_K": "3"})
    assert (s.db, s.default_k) == ("/tmp/a.db", 3)
    assert Settings.from_env({"GEO_ENGINE_DB": "/tmp/a.db"}, db="/tmp/b.db").db == "/tmp/b.db"


def test_a_bad_setting_value_names_the_variable():
    from geo_engine import InvalidInput

    with pytest.raises(InvalidInput, match="GEO_ENGINE_DEFAULT_K='many' is not a valid int"):
        Settings.from_env({"GEO_ENGINE_DEFAULT_K": "many"})


def test_a_setting_with_choices_names_them():
    from geo_engine import InvalidInput

    assert Settings.from_env({"GEO_ENGINE_SYNCHRONOUS": "normal"}).synchronous == "normal"
    with pytest.raises(InvalidInput, match="GEO_ENGINE_SYNCHRONOUS='off' is not one of full, normal"):
        Settings.from_env({"GEO_ENGINE_SYNCHRONOUS": "off"})


def test_a_yes_or_no_setting_reads_the_usual_words_and_refuses_others():
    from geo_engine import InvalidInput

    for word, want in [("true", True), ("1", True), ("on", True), ("YES", True), ("false", False),
                       ("0", False), ("off", False)]:
        assert Settings.from_env({"GEO_ENGINE_TRUST_CLIENT_CLOCK": word}).trust_client_clock is want
    with pytest.raises(InvalidInput, match="GEO_ENGINE_TRUST_CLIENT_CLOCK='maybe' is not a valid bool"):
        Settings.from_env({"GEO_ENGINE_TRUST_CLIENT_CLOCK": "maybe"})


def _commands():
    import click

    from geo_engine.cli import cli

    def walk(cmd, path):
        if isinstance(cmd, click.Group):
            for name in sorted(cmd.commands):
                yield from walk(cmd.commands[name], [*path, name])
        else:
            yield " ".join(path), cmd
    return list(walk(cli, []))


@pytest.mark.parametrize(("name", "command"), _commands(), ids=lambda v: v if isinstance(v, str) else "")
def test_the_cli_reference_has_every_command_and_option(name, command):
    reference = (ROOT / "docs" / "cli.md").read_text()
    assert f"`geo-engine {name}" in reference
    for param in command.params:
        for opt in getattr(param, "opts", []):
            if opt.startswith("--"):
                assert f"`{opt}" in reference or f"{opt} " in reference or f"[{opt}" in reference, \
                    (name, opt)


def test_the_readme_sends_users_to_the_docs_not_elsewhere():
    assert "docs/formats.md" in README and "docs/cli.md" in README
    assert "shared/" not in README and "SPEC" not in README
    for page in (ROOT / "docs").glob("*.md"):
        text = page.read_text()
        assert "shared/" not in text and "SPEC" not in text, page.name
