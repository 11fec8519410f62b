"""Workload validation: every mistake names the JSON path and what was expected."""

from __future__ import annotations

import copy

import pytest

from edgecore._jsoninput import InputError
from edgecore.scheduler import parse_workload

GOOD = {
    "config": {"kv_pages": 8, "page_tokens": 4, "max_active": 2, "prefill_budget": 16, "decode_width": 2},
    "requests": [
        {"id": "a", "prompt_tokens": 4, "max_new_tokens": 3},
        {"id": "b", "prompt_tokens": 4, "max_new_tokens": 3, "priority": -1, "arrival_tick": 2,
         "output_tokens": 2},
    ],
}


def mutated(path, value):
    doc = copy.deepcopy(GOOD)
    target = doc
    for part in path[:-1]:
        target = target[part]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


def test_good_workload_parses_with_defaults():
    w = parse_workload(GOOD)
    assert w.config.admission == "reserve" and w.config.aging_ticks == 64
    assert w.requests[0].priority == 0 and w.requests[0].arrival_tick == 0
    assert w.output_tokens == {"b": 2}
    assert parse_workload(w.to_json()) == w


@pytest.mark.parametrize(("path", "value", "message"), [
    (("requests", 1, "max_new_tokens"), "3",
     'requests[1].max_new_tokens: expected a positive integer, got "3" (string)'),
    (("requests", 0, "prompt_tokens"), 0, "requests[0].prompt_tokens: expected a positive integer, got 0"),
    (("requests", 0, "prompt_tokens"), 2.5,
     "requests[0].prompt_tokens: expected a positive integer, got 2.5"),
    (("requests", 0, "priority"), True, "requests[0].priority: expected an integer, got true (boolean)"),
    (("requests", 0, "arrival_tick"), -1, "requests[0].arrival_tick: expected a non-negative integer"),
    (("requests", 0, "id"), "", 'requests[0].id: expected a non-empty string, got "" (string)'),
    (("requests", 1, "id"), "a", 'requests[1].id: expected a unique request id, got "a" (string) '
                                  "(already used by requests[0])"),
    (("requests", 1, "output_tokens"), 4, "requests[1].output_tokens: expected at most max_new_tokens (3)"),
    (("requests", 0, "max_new_tokens"), KeyError,
     "requests[0].max_new_tokens: expected a value, got nothing (field is missing)"),
    (("requests", 0, "max_new"), 3, "requests[0].max_new: expected no such field"),
    (("requests", 0), [1], "requests[0]: expected an object, got a list of 1 item(s)"),
    (("requests",), {"a": 1}, "requests: expected a list"),
    (("config", "admission"), "lazy", 'config.admission: expected one of "reserve", "on_demand"'),
    (("config", "kv_pages"), None, "config.kv_pages: expected a value, got null"),
    (("config", "decode_width"), 0, "config.decode_width: expected a positive integer, got 0"),
    (("config", "page_size"), 4, "config.page_size: expected no such field"),
    (("extra",), 1, "extra: expected no such field"),
])
def test_mistakes_name_the_path_and_the_expectation(path, value, message):
    with pytest.raises(InputError) as info:
        parse_workload(mutated(path, value))
    assert str(info.value).startswith(message), str(info.value)


def test_top_level_must_be_an_object():
    with pytest.raises(InputError, match="top level: expected a workload object"):
        parse_workload([1, 2])
