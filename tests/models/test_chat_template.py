"""Chat templates rendered as transformers renders them: templates that use
each helper transformers gives them (raise_exception, tojson, strftime_now,
namespace, loop controls, {% generation %}, trim/lstrip blocks, special
token variables, tools), compared with apply_chat_template(tokenize=False)
on a tokenizer directory with the same template; the sandbox refuses
attribute escapes."""

import pytest

pytest.importorskip("transformers")

from support.tokenizers import byte_level_bpe, save_dir  # noqa: E402

from edgecore.models.chat_template import ChatTemplate, ChatTemplateError  # noqa: E402
from edgecore.models.tokenizer import tokenizer_from_dir  # noqa: E402

TEMPLATES = {
    "trim_and_lstrip": """{% for m in messages %}
    {% if m['role'] == 'system' %}
        <<SYS>>{{ m['content'] }}<</SYS>>
    {% else %}
        [{{ m['role'] }}] {{ m['content'] }}
    {% endif %}
{% endfor %}
{% if add_generation_prompt %}[assistant]{% endif %}""",
    "tojson_and_tools": """{% if tools %}{{ tools | tojson }}{{ tools[0] | tojson(indent=2) }}{% endif %}"""
                        """{% for m in messages %}{{ m | tojson }}{% endfor %}""",
    "namespace_and_loopcontrols": """{% set ns = namespace(n=0, last='') %}{% for m in messages %}"""
                                  """{% if m['role'] == 'system' %}{% continue %}{% endif %}"""
                                  """{% set ns.n = ns.n + 1 %}{% set ns.last = m['content'] %}"""
                                  """{% if ns.n > 2 %}{% break %}{% endif %}{{ loop.index }}:{{ m['content'] }};"""
                                  """{% endfor %}n={{ ns.n }} last={{ ns.last }}""",
    "special_tokens_and_generation": """{{ bos_token }}{% for m in messages %}{% if m['role'] == 'assistant' %}"""
                                     """{% generation %}{{ m['content'] }}{{ eos_token }}{% endgeneration %}"""
                                     """{% else %}{{ m['content'] }}{% endif %}{% endfor %}""",
    "raise_exception": """{% for m in messages %}{% if m['role'] not in ['user', 'assistant', 'system'] %}"""
                       """{{ raise_exception('bad role ' + m['role']) }}{% endif %}{{ m['content'] }}{% endfor %}""",
    "dict_and_strftime": """{% set d = dict(a=1) %}{{ d['a'] }}{{ strftime_now('%Y') | length }}"""
                         """{% for m in messages %}{{ m.content }}{% endfor %}""",
    "missing_keys": """{% for m in messages %}{{ m['role'] }}{% if m['name'] is defined %}({{ m['name'] }})"""
                    """{% endif %}{% endfor %}""",
}

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi <b>there</b> \"é\" 🤗"},
            {"role": "assistant", "content": "Hello!", "name": None}, {"role": "user", "content": "2+2?"}]
TOOLS = [{"type": "function", "function": {"name": "add", "description": "adds <a> & <b>",
                                           "parameters": {"type": "object"}}}]


@pytest.fixture(scope="module")
def byte_tok():
    return byte_level_bpe(vocab_size=300)


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_render_matches_transformers(name, byte_tok, tmp_path):
    from transformers import AutoTokenizer

    path = save_dir(tmp_path, byte_tok, chat_template=TEMPLATES[name])
    mine, ref = tokenizer_from_dir(path), AutoTokenizer.from_pretrained(str(path))
    for gen in (False, True):
        kw = {"tools": TOOLS} if name == "tojson_and_tools" else {}
        want = ref.apply_chat_template(MESSAGES, add_generation_prompt=gen, tokenize=False, **kw)
        assert mine.render_chat(MESSAGES, gen, **kw) == want
        assert mine.apply_chat_template(MESSAGES, gen, **kw) == list(ref.apply_chat_template(
            MESSAGES, add_generation_prompt=gen, tokenize=True, return_dict=False, **kw))


def test_raise_exception_is_one_error():
    t = ChatTemplate(TEMPLATES["raise_exception"], "test template")
    with pytest.raises(ChatTemplateError, match="test template: the chat template failed .bad role robot"):
        t.render([{"role": "robot", "content": "x"}])


@pytest.mark.parametrize("source", [
    "{{ ''.__class__.__mro__ }}",
    "{% set ns = namespace() %}{% set ns._hidden = 1 %}",
    "{{ messages.append(1) }}",  # immutable sandbox: no mutation of the caller's data
])
def test_sandbox_refuses(source):
    with pytest.raises(ChatTemplateError):
        ChatTemplate(source).render([{"role": "user", "content": "x"}])


def test_unsafe_attributes_render_as_nothing():
    assert ChatTemplate("[{{ messages.__class__ }}]").render([{"role": "user", "content": "x"}]) == "[]"


def test_syntax_error_names_the_origin():
    with pytest.raises(ChatTemplateError, match="model/tokenizer_config.json: the chat template does not compile"):
        ChatTemplate("{% for %}", "model/tokenizer_config.json")
