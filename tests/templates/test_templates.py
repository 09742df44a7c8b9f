import pytest

from instructgen.templates import TemplateError, load_template

SHOWN = ["Give three tips for staying healthy.", "Translate the sentence into French."]


def test_self_instruct_completion_prompt_is_pinned():
    assert load_template("self_instruct.completion").render(instructions=SHOWN) == (
        "Come up with a series of tasks:\n"
        "1. Give three tips for staying healthy.\n"
        "2. Translate the sentence into French.\n"
        "3.")


def test_self_instruct_chat_prompt_is_pinned():
    assert load_template("self_instruct.chat").render(instructions=SHOWN) == [{"role": "user", "content": (
        "Come up with a series of tasks. Here are 2 examples:\n"
        "1. Give three tips for staying healthy.\n"
        "2. Translate the sentence into French.\n"
        "\n"
        "Continue the list with new, diverse tasks numbered from 3 to 15, one per line, each a single "
        "instruction in the same style. Reply with the numbered list only.")}]


def test_user_turn_template():
    t = load_template("user_turn")
    assert t.render(instruction="Sum these.", input="") == "Sum these."
    assert t.render(instruction="Sum these.", input="1, 2") == "Sum these.\n\n1, 2"


def test_strict_rendering_and_errors(tmp_path):
    with pytest.raises(TemplateError, match="'instructions' is undefined"):
        load_template("self_instruct.completion").render()
    bad = tmp_path / "bad.jinja2"
    bad.write_text("line one\n{% for x in %}\n")
    with pytest.raises(TemplateError, match=r"bad.jinja2:2"):
        load_template(bad)
    with pytest.raises(TemplateError, match="not found"):
        load_template("no_such_template")
