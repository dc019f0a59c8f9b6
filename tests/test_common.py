"""common.py: JSONL reading (errors naming file and line), torn last lines, stable writes."""
import json

import pytest

import common


def test_malformed_jsonl_names_file_and_line(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"a": 1}\n{"a": 2\n{"a": 3}\n')
    with pytest.raises(common.UserError, match=r"bad\.jsonl:2: malformed JSON"):
        common.read_jsonl(p)
    p.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(common.UserError, match=r"bad\.jsonl:2: expected a JSON object"):
        common.read_jsonl(p)
    with pytest.raises(common.UserError, match="no such file"):
        common.read_jsonl(tmp_path / "missing.jsonl")


def test_resume_cuts_a_torn_last_line(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"id": "a"}\n{"id": "b"}\n{"id": "c", "tr')
    assert common.resume_jsonl(p) == {"a", "b"}
    assert p.read_text() == '{"id": "a"}\n{"id": "b"}\n'


def test_jsonl_writes_are_readable_and_stable(tmp_path):
    p = tmp_path / "out.jsonl"
    rows = [{"id": "1", "text": "ünï"}, {"id": "2", "b": [1, 2]}]
    common.write_jsonl(p, rows)
    assert common.read_jsonl(p) == rows and json.loads(p.read_text().splitlines()[0])["text"] == "ünï"
