"""common.py: JSONL reading (errors naming file and line), torn last lines, stable writes, threads."""
import gzip
import json
import os

import pytest
import torch

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


def test_threads_follow_the_cores_this_process_may_use():
    # taskset / a container's CPU set: one thread per usable core, not per core of the machine
    if not hasattr(os, "sched_getaffinity"):
        pytest.skip("no CPU affinity on this platform")
    before, threads = os.sched_getaffinity(0), torch.get_num_threads()
    try:
        os.sched_setaffinity(0, {min(before)})
        assert common.usable_cores() == 1
        common.set_threads(0)
        assert torch.get_num_threads() == 1
        common.set_threads(3)  # asked for: given
        assert torch.get_num_threads() == 3
    finally:
        os.sched_setaffinity(0, before)
        torch.set_num_threads(threads)
    assert common.usable_cores() == len(before)


def test_a_packed_episode_file_reads_as_the_plain_one(tmp_path):
    # published folders store episode files gzip-compressed; every reader asks for NAME.jsonl
    rows = [{"task_id": "t0", "success": True}, {"task_id": "t1", "success": False}]
    common.write_jsonl(tmp_path / "test.jsonl", rows)
    plain = (tmp_path / "test.jsonl").read_bytes()
    (tmp_path / "packed").mkdir()
    (tmp_path / "packed" / "test.jsonl.gz").write_bytes(gzip.compress(plain))
    assert common.read_jsonl(tmp_path / "packed" / "test.jsonl", require=common.EPISODE) == rows
    common.write_jsonl(tmp_path / "packed" / "test.jsonl", rows[:1])  # a plain file, where both exist, wins
    assert common.read_jsonl(tmp_path / "packed" / "test.jsonl") == rows[:1]
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "test.jsonl.gz").write_bytes(gzip.compress(plain)[:20])
    with pytest.raises(common.UserError, match=r"test.jsonl.gz: damaged gzip file"):
        common.read_jsonl(tmp_path / "cut" / "test.jsonl")
    (tmp_path / "cut" / "ood.jsonl.gz").write_bytes(b"not gzip at all\n")
    with pytest.raises(common.UserError, match=r"ood.jsonl.gz: damaged gzip file"):
        common.read_jsonl(tmp_path / "cut" / "ood.jsonl")
