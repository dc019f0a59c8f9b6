"""What a user can get wrong, and what a kill does: one line, exit 2, nothing half-written; resumes are
byte-identical; one writer per output folder; BFCL answers are bounded."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

import collect
import common
import envs
import evaluate
import iwm
import models
import prompts
import reflect
import report
import rl
import train
from conftest import ROOT, run_script, tiny_checkpoint

COLLECT = ["--env", "textcraft", "--tasks", "4", "--chunk", "4", "--k-iwm", "1", "--k-sr", "1",
           "--model", "tiny-random", "--dtype", "fp32"]


# ---- arguments --------------------------------------------------------------------------------
@pytest.mark.parametrize("module, argv, flag", [
    (collect, ["--tasks", "-1", "--out", "x"], "--tasks"),
    (collect, ["--chunk", "0", "--out", "x"], "--chunk"),
    (collect, ["--k-iwm", "-1", "--out", "x"], "--k-iwm"),
    (collect, ["--temperature", "abc", "--out", "x"], "--temperature"),
    (evaluate, ["--episodes", "-1", "--out", "x"], "--episodes"),
    (evaluate, ["--batch", "0", "--out", "x"], "--batch"),
    (train, ["--data", "d", "--epochs", "0"], "--epochs"),
    (train, ["--data", "d", "--lr", "-1"], "--lr"),
    (train, ["--data", "d", "--warmup", "2"], "--warmup"),
    (iwm, ["--run", "r", "--k", "-2"], "--k"),
])
def test_a_bad_argument_is_one_line_and_exit_2(module, argv, flag, capsys):
    with pytest.raises(SystemExit) as e:
        module.parse_args(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"argument {flag}" in err[0], err


def test_more_tasks_than_the_split_holds_is_refused_before_any_file(tmp_path):
    r = run_script("collect.py", "--env", "textcraft", "--split", "dev", "--tasks", "41", "--k-sr", "0",
                   "--out", tmp_path / "c")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "error: --tasks 41: the dev split of textcraft has 40 tasks"]
    assert not (tmp_path / "c").exists()


# ---- env settings -----------------------------------------------------------------------------
@pytest.mark.parametrize("name, message", [
    ("twx-cooking:nosuch=1", "unknown setting 'nosuch'"),
    ("twx-cooking:numLocations=abc", "bad value 'numLocations=abc'"),
    ("twx-cooking:numLocations=0", "Number of locations must be greater than one"),
    ("textcraft:distractors=x", "bad setting"),
])
def test_a_bad_env_setting_is_refused_at_make(name, message):
    with pytest.raises(envs.EnvError, match=message):
        envs.make(name)


def test_a_game_that_cannot_be_generated_writes_nothing(tmp_path):
    r = run_script("collect.py", "--env", "twx-cooking:numLocations=0", "--tasks", "1", "--k-sr", "0",
                   "--out", tmp_path / "c")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "Number of locations" in r.stderr and not (tmp_path / "c").exists()


# ---- bad files --------------------------------------------------------------------------------
def write_rows(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


GOOD = {"id": "t/0", "task_id": "t", "step": 0, "state": "s", "expert": {"action": "a", "next_state": "n"},
        "alternatives": [{"action": "b", "next_state": "m", "source": "valid"}]}


@pytest.mark.parametrize("bad, message", [
    ({k: v for k, v in GOOD.items() if k != "alternatives"}, "rollouts.jsonl:2: missing key 'alternatives'"),
    ({**GOOD, "alternatives": [{"action": "b", "source": "valid"}]}, r"rollouts.jsonl:2: 'alternatives'\[0\]: missing key 'next_state'"),
    ({**GOOD, "step": "0"}, "rollouts.jsonl:2: 'step': expected int, got str"),
    ({**GOOD, "expert": None}, "rollouts.jsonl:2: 'expert': expected an object"),
])
def test_a_malformed_rollout_row_names_file_and_line(tmp_path, bad, message):
    write_rows(tmp_path / "rollouts.jsonl", [GOOD, bad])
    with pytest.raises(common.UserError, match=message):
        iwm.main(["--run", str(tmp_path)])
    assert not (tmp_path / "iwm.jsonl").exists()


def test_a_message_without_role_names_file_and_line(tmp_path, tiny):
    _, tok = tiny
    write_rows(tmp_path / "d.jsonl", [{"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]},
                                      {"messages": [{"content": "x"}]}])
    with pytest.raises(common.UserError, match=r"d.jsonl:2: 'messages'\[0\]: missing key 'role'"):
        train.load_examples(tok, [str(tmp_path / "d.jsonl")], 256)


def test_scripts_turn_bad_inputs_into_one_line(tmp_path):
    write_rows(tmp_path / "run" / "rollouts.jsonl", [GOOD, {"id": 1}])
    (tmp_path / "notmodel").mkdir()
    (tmp_path / "afile").write_text("x")
    cases = [
        (["iwm.py", "--run", tmp_path / "run"], "rollouts.jsonl:2: 'id': expected str, got int"),
        (["evaluate.py", "--model", tmp_path / "notmodel", "--episodes", "1", "--out", tmp_path / "ev"], "not a model"),
        (["evaluate.py", "--model", "tiny-random", "--episodes", "1", "--out", tmp_path / "afile" / "ev"], "afile"),
        (["train.py", "--data", tmp_path / "run", "--out", tmp_path / "ck"], "is a folder"),
        (["reflect.py", "--run", tmp_path / "run", "--model", "tiny-random"], "rollouts.jsonl:2: 'id': expected str"),
        (["budget.py", "--ckpt", tmp_path / "notmodel", "--env", "textcraft"], "not a finished train.py checkpoint"),
        (["rl.py", "--init", tmp_path / "notmodel", "--env", "textcraft", "--out", tmp_path / "rl"], "not a model"),
        (["collect.py", "--env", "textcraft", "--tasks", "1", "--model", tmp_path / "notmodel", "--out", tmp_path / "c"], "not a model"),
    ]
    for argv, message in cases:
        r = run_script(*argv)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and message in lines[0], (argv, r.stderr[-500:])
    assert not any((tmp_path / d).exists() for d in ("ev", "ck", "rl", "c"))
    assert not (tmp_path / "run" / "iwm.jsonl").exists()


def test_a_failed_evaluation_leaves_no_args_file_and_the_corrected_command_runs(tmp_path):
    out = tmp_path / "ev"
    out.mkdir()
    (out / "args.json").write_text(json.dumps({"model": "other", "env": "twx-cooking"}))  # no episode written
    with pytest.raises(common.UserError, match="not a model"):
        (tmp_path / "nm").mkdir()
        evaluate.main(["--model", str(tmp_path / "nm"), "--env", "textcraft", "--episodes", "1", "--out", str(out)])
    assert json.loads((out / "args.json").read_text())["model"] == "other"  # not rewritten by the failure
    rows = evaluate.main(["--model", "tiny-random", "--dtype", "fp32", "--env", "textcraft", "--split", "test",
                          "--episodes", "1", "--max-steps", "2", "--out", str(out)])
    assert rows[0]["n"] == 1 and json.loads((out / "args.json").read_text())["model"] == "tiny-random"


# ---- resume by whole units ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def whole(tmp_path_factory):
    out = tmp_path_factory.mktemp("whole")
    collect.main(COLLECT + ["--out", str(out)])
    return out


def test_collect_killed_anywhere_in_a_chunk_resumes_byte_identical(whole, tmp_path):
    ex, ro = (whole / "expert.jsonl").read_text(), (whole / "rollouts.jsonl").read_text()
    stats = json.loads((whole / "collect_stats.json").read_text())
    ex_lines, ro_lines = ex.splitlines(True), ro.splitlines(True)
    first = json.loads(ro_lines[0])["task_id"]
    n_first = sum(json.loads(x)["task_id"] == first for x in ro_lines)
    cuts = {  # what a kill can leave: (expert.jsonl, rollouts.jsonl)
        "mid expert line": (ex[: len(ex) // 2], None),
        "experts written, rollouts torn": (ex, "".join(ro_lines[:n_first]) + ro_lines[n_first][:50]),
        "one task finished": (ex, "".join(ro_lines[:n_first])),
        "all written, no stats": (ex, ro),
    }
    for name, (e, r) in cuts.items():
        out = tmp_path / name.replace(" ", "-").replace(",", "")
        out.mkdir()
        (out / "expert.jsonl").write_text(e)
        if r is not None:
            (out / "rollouts.jsonl").write_text(r)
        collect.main(COLLECT + ["--out", str(out)])
        assert (out / "expert.jsonl").read_text() == ex, name
        assert (out / "rollouts.jsonl").read_text() == ro, name
        got = json.loads((out / "collect_stats.json").read_text())
        assert {k: v for k, v in got.items() if k != "this_run"} == {k: v for k, v in stats.items() if k != "this_run"}
        assert got["expert_steps"] == len(ex_lines) and got["tasks"] == 4


def test_collect_killed_by_a_signal_resumes_byte_identical(whole, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "collect.py", *COLLECT, "--chunk", "1", "--out", str(out)]
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:  # kill as soon as the first lines are out
        if (out / "rollouts.jsonl").exists() and (out / "rollouts.jsonl").stat().st_size:
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    collect.main(COLLECT + ["--chunk", "1", "--out", str(out)])
    ref = tmp_path / "ref"
    collect.main(COLLECT + ["--chunk", "1", "--out", str(ref)])
    for f in ("expert.jsonl", "rollouts.jsonl"):
        assert (out / f).read_bytes() == (ref / f).read_bytes()
    assert not [p.name for p in out.iterdir() if p.name.startswith(".") and not p.name.endswith(".lock")]  # no temp files


# ---- one writer per folder -------------------------------------------------------------------
def test_a_second_writer_on_the_same_folder_is_refused_and_a_dead_one_does_not_block(tmp_path):
    out = tmp_path / "ev"
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time, common; common.lock_output(sys.argv[1], 'evaluate'); "
                               "print('locked', flush=True); time.sleep(600)", str(out)],
                              cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    r = run_script("evaluate.py", "--model", "tiny-random", "--env", "textcraft", "--episodes", "1",
                   "--out", out)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"error: {out}: another evaluate process (pid {holder.pid}) is writing here; "
        "wait for it to finish or use another output folder"]
    assert sorted(p.name for p in out.iterdir()) == [".evaluate.lock"]  # nothing else written
    os.kill(holder.pid, signal.SIGKILL)  # a killed writer leaves no stuck lock
    holder.wait()
    rows = evaluate.main(["--model", "tiny-random", "--dtype", "fp32", "--env", "textcraft", "--split", "test",
                          "--episodes", "1", "--max-steps", "2", "--out", str(out)])
    assert rows[0]["n"] == 1


# ---- BFCL: answers are bounded --------------------------------------------------------------
@pytest.mark.parametrize("answer, message", [
    ("f(" + "[" * 3000 + "]" * 3000 + ")", "not a Python call"),
    ("(" * 5000, "not a Python call"),
    ("ls(a='" + "y" * 20000 + "')", "at most 10,000 characters"),
    ("power(base=3, exponent=1000000000)", "exponent is at most 1,000"),
    ("square_root(number=2, precision=100000000)", "precision is at most 1,000"),
    ("mean(numbers=[1e400])", "numbers are at most"),
    ("f(" + "[" * 5 + "1" + "]" * 5 + ")", "containers are at most 4 deep"),
])
def test_bfcl_answers_beyond_the_bounds_get_the_envs_error_text(answer, message):
    env = envs.make("bfcl")
    env.reset(env.tasks("train")[0])
    t0 = time.time()
    obs, reward, _ = env.step(answer)
    assert message in obs and obs.startswith("Error: could not parse") and reward == 0.0
    assert time.time() - t0 < 1.0
    t0 = time.time()
    env.map_action("a" * 100_000)
    assert time.time() - t0 < 1.0


def test_rl_killed_after_an_update_resumes_to_the_same_updates(tmp_path):
    argv = ["--init", "tiny-random", "--dtype", "fp32", "--env", "textcraft", "--lr", "1e-2", "--updates", "3",
            "--tasks-per-update", "2", "--group", "2", "--train-tasks", "4", "--batch", "4", "--max-steps", "2",
            "--eval-every", "0", "--threads", "1"]
    killed = tmp_path / "killed"
    p = subprocess.Popen([sys.executable, "rl.py", *argv, "--out", str(killed)], cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None and not (killed / rl.STATE).exists():
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert (killed / rl.STATE).exists() and not (killed / "ckpt").exists()  # killed after update 1, before the end
    rl.main(argv + ["--out", str(killed)])
    whole = tmp_path / "whole"
    rl.main(argv + ["--out", str(whole)])
    timing = {"seconds", "rollout_s", "update_s", "tokens_per_s"}
    strip = lambda rows: [{k: v for k, v in r.items() if k not in timing} for r in rows]  # noqa: E731
    assert strip(common.read_jsonl(killed / "curve.jsonl")) == strip(common.read_jsonl(whole / "curve.jsonl"))
    assert [r["update"] for r in common.read_jsonl(killed / "curve.jsonl")] == [1, 2, 3]
    a = dict(models.load_model(str(killed / "ckpt"), dtype="fp32")[0].named_parameters())
    b = dict(models.load_model(str(whole / "ckpt"), dtype="fp32")[0].named_parameters())
    assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)
    assert not (killed / rl.STATE).exists()  # a finished run keeps only its checkpoint
    with pytest.raises(common.UserError, match="another setting"):  # a resume point of another setting is refused
        torch.save({"update": 1, "setting": {"lr": 1.0}}, whole / rl.STATE)
        rl.main(argv + ["--out", str(whole)])


def test_train_killed_after_a_resume_point_continues_to_the_same_weights(tmp_path, capsys):
    data = tmp_path / "expert.jsonl"
    common.write_jsonl(data, [{"messages": prompts.policy_messages(f"Observation: room {i}", f"Action: go {i % 3}")}
                              for i in range(10)])
    argv = ["--model", "tiny-random", "--dtype", "fp32", "--data", str(data), "--steps", "60", "--batch", "4",
            "--lr", "1e-2", "--threads", "1", "--resume-every", "1"]
    killed = tmp_path / "killed" / "il"
    p = subprocess.Popen([sys.executable, "train.py", *argv, "--out", str(killed)], cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None and not train.resume_path(killed).exists():
        time.sleep(0.02)
    p.send_signal(signal.SIGKILL)
    p.wait()
    assert train.resume_path(killed).exists() and not killed.exists()  # killed mid-run, after a resume point
    done = torch.load(train.resume_path(killed), weights_only=False)["step"]
    assert 1 <= done < 60
    train.main(argv + ["--out", str(killed)])  # the same command continues
    assert f"resuming {killed} after step {done} of 60" in capsys.readouterr().out  # continued, not restarted
    whole = tmp_path / "whole" / "il"
    train.main(argv + ["--out", str(whole)])
    strip = lambda rows: [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in rows]  # noqa: E731
    assert strip(common.read_jsonl(killed / "loss.jsonl")) == strip(common.read_jsonl(whole / "loss.jsonl"))
    a = dict(models.load_model(str(killed), dtype="fp32")[0].named_parameters())
    b = dict(models.load_model(str(whole), dtype="fp32")[0].named_parameters())
    assert a.keys() == b.keys() and all(torch.equal(a[n], b[n]) for n in a)
    assert not train.resume_path(killed).exists()  # a finished run keeps only its checkpoint
    with pytest.raises(common.UserError, match="another setting"):  # a resume point of another setting is refused
        torch.save({"step": 1, "setting": {"lr": 1.0}}, train.resume_path(whole))
        train.main(argv + ["--out", str(whole)])


def test_evaluate_killed_in_a_wave_resumes_byte_identical(tmp_path):
    argv = ["--model", "tiny-random", "--dtype", "fp32", "--env", "textcraft", "--split", "test", "ood",
            "--episodes", "3", "--batch", "2", "--max-steps", "3"]
    whole = tmp_path / "whole"
    evaluate.main(argv + ["--out", str(whole)])
    files = {f: (whole / f).read_text() for f in ("test.jsonl", "ood.jsonl", "summary.jsonl")}
    test_lines = files["test.jsonl"].splitlines(True)
    cuts = {  # waves: [test 0, test 1], [test 2, ood 0], [ood 1, ood 2]
        "first wave, torn third line": {"test.jsonl": "".join(test_lines[:2]) + test_lines[2][:40]},
        "half of a wave": {"test.jsonl": test_lines[0]},
        "all but the summary": {"test.jsonl": files["test.jsonl"], "ood.jsonl": files["ood.jsonl"]},
    }
    for name, written in cuts.items():
        out = tmp_path / name.replace(" ", "-").replace(",", "")
        out.mkdir()
        (out / "args.json").write_text((whole / "args.json").read_text())
        for f, text in written.items():
            (out / f).write_text(text)
        evaluate.main(argv + ["--out", str(out)])
        for f, text in files.items():
            assert (out / f).read_text() == text, (name, f)


def test_reflect_killed_mid_batch_resumes_byte_identical(whole, tmp_path):
    argv = ["--model", "tiny-random", "--dtype", "fp32", "--k", "1", "--batch", "4", "--max-new-tokens", "12"]
    ref = tmp_path / "ref"
    shutil.copytree(whole, ref)
    reflect.main(argv + ["--run", str(ref)])
    log = (ref / "reflections.jsonl").read_text()
    lines = log.splitlines(True)
    assert len(lines) > 5
    out = tmp_path / "cut"
    shutil.copytree(whole, out)
    (out / "reflections.jsonl").write_text("".join(lines[:5]) + lines[5][:30])  # killed in the second batch
    reflect.main(argv + ["--run", str(out)])
    for f in ("reflections.jsonl", "reflect.jsonl", "reflect_stats.json"):
        assert (out / f).read_text() == (ref / f).read_text(), f


def test_collect_subset_of_keeps_the_first_tasks_byte_for_byte(whole, tmp_path):
    out = tmp_path / "half"
    collect.main(["--env", "textcraft", "--subset-of", str(whole), "--tasks", "2", "--out", str(out)])
    ids = list(dict.fromkeys(r["task_id"] for r in common.read_jsonl(whole / "expert.jsonl")))[:2]
    for f in ("expert.jsonl", "rollouts.jsonl"):
        want = [x for x in (whole / f).read_text().splitlines(True) if json.loads(x)["task_id"] in ids]
        assert (out / f).read_text() == "".join(want)
    stats = json.loads((out / "collect_stats.json").read_text())
    assert stats["tasks"] == 2 and stats["expert_steps"] == len(common.read_jsonl(out / "expert.jsonl"))
    with pytest.raises(common.UserError, match="holds 4 tasks, --tasks asks for 5"):
        collect.main(["--env", "textcraft", "--subset-of", str(whole), "--tasks", "5", "--out", str(tmp_path / "x")])


@pytest.mark.parametrize("script", ["evaluate.py", "collect.py"])
def test_ctrl_c_ends_a_script_with_one_line_and_exit_130(tmp_path, script):
    """Ctrl-C in a terminal signals the whole process group, the game's JVM included: the script ends
    with one line and exit 130, no traceback, and its rerun finishes with the files an
    uninterrupted run writes."""
    out = tmp_path / "out"
    args = {"evaluate.py": ["--model", "tiny-random", "--dtype", "fp32", "--env", "twx-cooking", "--split", "test",
                            "--episodes", "6", "--batch", "2", "--max-steps", "4"],
            "collect.py": ["--env", "twx-cooking", "--tasks", "6", "--chunk", "2", "--k-iwm", "1", "--k-sr", "1",
                           "--model", "tiny-random", "--dtype", "fp32"]}[script]
    p = subprocess.Popen([sys.executable, script, *args, "--out", str(out)], cwd=ROOT, stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and not any(out.glob("*.jsonl")):
        time.sleep(0.05)
    os.killpg(p.pid, signal.SIGINT)
    _, err = p.communicate(timeout=120)
    if p.returncode == 0:
        pytest.skip("finished before the signal")
    assert p.returncode == 130 and "Traceback" not in err, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("interrupted; rerun the same command to resume")
    r = run_script(script, *args, "--out", out)
    assert r.returncode == 0, r.stderr[-2000:]
    whole = tmp_path / "whole"
    assert run_script(script, *args, "--out", whole).returncode == 0
    for f in sorted(p.name for p in whole.glob("*.jsonl")):
        if f == "summary.jsonl":
            continue
        assert (out / f).read_text() == (whole / f).read_text(), f


def test_non_finite_and_absurd_numbers_are_refused_in_one_line(tmp_path):
    data = tmp_path / "expert.jsonl"
    common.write_jsonl(data, [{"messages": prompts.policy_messages(f"Observation: room {i}", f"Action: go {i % 3}")}
                              for i in range(6)])
    base = ["--model", "tiny-random", "--dtype", "fp32", "--data", str(data), "--batch", "3", "--threads", "1"]
    for script, args, text in [
        ("train.py", [*base, "--lr", "inf", "--out", tmp_path / "a"], "--lr: must be a finite number, got inf"),
        ("train.py", [*base, "--lr", "nan", "--out", tmp_path / "a"], "--lr: must be a finite number, got nan"),
        ("train.py", [*base, "--epochs", "1e308", "--out", tmp_path / "a"], "--epochs: must be > 0 and <= 10000.0"),
        ("iwm.py", ["--run", tmp_path, "--ratio", "inf"], "--ratio: must be a finite number"),
        ("evaluate.py", ["--model", "tiny-random", "--temperature", "1e9", "--out", tmp_path / "e"], "--temperature: must be >= 0 and <= 100"),
        ("evaluate.py", ["--model", "tiny-random", "--env", "twx-cooking", "--split", "dev", "--episodes", "101",
                         "--out", tmp_path / "e"], "--episodes 101: the dev split of twx-cooking holds 100 games"),
    ]:
        r = run_script(script, *args)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, (script, args, r.stderr[-500:])
        assert text in r.stderr, (text, r.stderr)
    assert not (tmp_path / "a").exists() and not (tmp_path / "e").exists()
    # a learning rate that is finite but far too high: the loss diverges, the run says so, nothing saved
    r = run_script("train.py", *base, "--lr", "1e30", "--steps", "5", "--full", "--out", tmp_path / "huge")
    assert r.returncode == 2 and "the run diverged; lower --lr" in r.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "huge").exists()


def test_damaged_inputs_get_one_line_before_any_work(tmp_path):
    """Random bytes for a data file, a message whose content is a number or null, a file without an
    assistant turn, a checkpoint whose weights are cut or empty, whose config is cut mid-string or
    whose tokenizer is gone, a torn args file in an evaluation being resumed: one line naming the
    file (and line), exit 2, nothing written."""
    good = tmp_path / "expert.jsonl"
    common.write_jsonl(good, [{"messages": prompts.policy_messages(f"Observation: room {i}", f"Action: go {i % 3}")}
                              for i in range(6)])
    ck = tiny_checkpoint(tmp_path, "il", 2)
    blob = (ck / "adapter_model.safetensors").read_bytes()
    (tmp_path / "bytes.jsonl").write_bytes(bytes(range(128, 256)) * 8)
    (tmp_path / "bytes-run").mkdir()
    (tmp_path / "bytes-run" / "rollouts.jsonl").write_bytes(bytes(range(128, 256)) * 8)
    msgs = prompts.policy_messages("Observation: x", "Action: y")
    common.write_jsonl(tmp_path / "number.jsonl", [{"messages": [*msgs[:-1], {"role": "assistant", "content": 7}]}])
    common.write_jsonl(tmp_path / "null.jsonl", [{"messages": [*msgs[:-1], {"role": "assistant", "content": None}]}])
    common.write_jsonl(tmp_path / "noanswer.jsonl", [{"messages": msgs[:-1]}])
    damaged = {}
    for name, change in [("cut", lambda p: (p / "adapter_model.safetensors").write_bytes(blob[: len(blob) // 2])),
                         ("empty", lambda p: (p / "adapter_model.safetensors").write_bytes(b"")),
                         ("config", lambda p: (p / "adapter_config.json").write_text('{"base_model_name_or')),
                         ("notok", lambda p: [(p / f).unlink() for f in ("tokenizer.json", "tokenizer_config.json")])]:
        damaged[name] = tmp_path / f"ck-{name}"
        shutil.copytree(ck, damaged[name])
        change(damaged[name])
    train_args = ["--model", "tiny-random", "--dtype", "fp32", "--batch", "3", "--steps", "1", "--out"]
    cases = [
        ("train.py", ["--data", tmp_path / "bytes.jsonl", *train_args, tmp_path / "o1"], "bytes.jsonl:1: not UTF-8 text"),
        ("iwm.py", ["--run", tmp_path / "bytes-run", "--out", tmp_path / "o2.jsonl"], "rollouts.jsonl:1: not UTF-8 text"),
        ("train.py", ["--data", tmp_path / "number.jsonl", *train_args, tmp_path / "o3"], "number.jsonl:1: message 2: 'content' must be text, got int"),
        ("train.py", ["--data", tmp_path / "null.jsonl", *train_args, tmp_path / "o4"], "null.jsonl:1: message 2: 'content' must be text, got NoneType"),
        ("train.py", ["--data", tmp_path / "noanswer.jsonl", *train_args, tmp_path / "o5"], "noanswer.jsonl:1: no assistant message"),
        ("evaluate.py", ["--model", damaged["cut"], "--out", tmp_path / "o6"], "adapter_model.safetensors does not read"),
        ("evaluate.py", ["--model", damaged["empty"], "--out", tmp_path / "o7"], "adapter_model.safetensors does not read"),
        ("train.py", ["--init", damaged["config"], "--data", good, *train_args, tmp_path / "o8"], "adapter_config.json or base_model.json does not read"),
        ("rl.py", ["--init", damaged["notok"], "--out", tmp_path / "o9"], "no tokenizer files"),
    ]
    for script, args, text in cases:
        r = run_script(script, *args)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, (script, r.stderr[-800:])
        assert text in r.stderr, (text, r.stderr)
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 10))
    # a torn args file in an evaluation folder being resumed
    ev = tmp_path / "ev"
    eargs = ["--model", "tiny-random", "--dtype", "fp32", "--env", "twx-cooking", "--split", "test", "--episodes", "2",
             "--batch", "2", "--max-steps", "2", "--out", ev]
    assert run_script("evaluate.py", *eargs).returncode == 0
    (ev / "args.json").write_text('{"model": "tiny-ra')
    r = run_script("evaluate.py", *eargs)
    assert r.returncode == 2 and "args.json: torn or damaged arguments file" in r.stderr.strip().splitlines()[-1]


def test_subset_of_a_malformed_collection_writes_nothing(tmp_path):
    src = tmp_path / "src"
    collect.main(["--env", "twx-coin:numLocations=2", "--tasks", "3", "--k-iwm", "1", "--k-sr", "0", "--out", str(src)])
    lines = (src / "rollouts.jsonl").read_text().splitlines(True)
    (src / "rollouts.jsonl").write_text("".join(lines[:-1]) + '{"id": "x", "task_id": 3}\n')  # a bad last row
    r = run_script("collect.py", "--env", "twx-coin:numLocations=2", "--tasks", "2", "--subset-of", src,
                   "--out", tmp_path / "sub")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "rollouts.jsonl" in r.stderr
    assert not (tmp_path / "sub").exists() or not any((tmp_path / "sub").glob("*.jsonl"))




def test_files_the_scripts_wrote_are_read_back_with_their_types_checked(tmp_path):
    """A loss log, an RL curve, an ablation setting, a reflection log or an episode file with a field of
    the wrong type is one error naming the file, line and field, never a traceback."""
    ck = tmp_path / "run" / "ckpt" / "il-s0"
    ck.mkdir(parents=True)
    common.write_jsonl(ck / "loss.jsonl", [{"step": 1, "loss": 0.5}, {"step": 2, "loss": "nan?"}])
    with pytest.raises(common.UserError, match=r"loss.jsonl:2: 'loss': expected int/float, got str"):
        report.loss_curves(tmp_path / "run")
    curve = tmp_path / "rl" / "curve.jsonl"
    curve.parent.mkdir()
    common.write_jsonl(curve, [{"update": "0", "test_success": 0.0}])
    with pytest.raises(common.UserError, match=r"curve.jsonl:1: 'update': expected int, got str"):
        rl.plot([str(curve.parent)], str(tmp_path / "c.png"))
    setting = tmp_path / "abl" / "k1" / "setting.json"
    setting.parent.mkdir(parents=True)
    setting.write_text(json.dumps({"ablation": "k", "value": "one", "label": "K=1"}) + "\n")
    with pytest.raises(common.UserError, match=r"setting.json:1: 'value': expected int/float, got str"):
        report.ablation(tmp_path / "abl")
    ev = tmp_path / "ev" / "eval" / "il" / "s0"
    ev.mkdir(parents=True)
    common.write_jsonl(ev / "summary.jsonl", [{"model": "il", "split": "test", "mode": "raw"}])
    common.write_jsonl(ev / "test.jsonl", [{"task_id": 3, "success": True}])
    with pytest.raises(common.UserError, match=r"test.jsonl:1: 'task_id': expected str, got int"):
        report.results_table(tmp_path / "ev")
