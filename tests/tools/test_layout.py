"""The generators' commands come from the tools app (that no app imports tools is tests/test_import_direction.py)."""


def test_the_generators_commands_come_from_tools():
    from django.core.management import get_commands

    commands = get_commands()
    assert commands["seed_demo"] == "tools"
    assert commands["generate_dataset"] == "tools"
