"""Plumbing shared by the scripts: errors as one line, argument checks, seeding and threads, JSONL
files (read with a check of each line, appended by whole units, written atomically), the lock that
keeps one writer per output folder, the arguments file, shards.

Nothing of the method lives here, and nothing of the project is imported here: every other module
may import common, common imports none of them. The loss mask and the loss on target tokens are in
chat.py, model loading in models.py, checkpoints in checkpoint.py, the agent loop (batched generation,
action parsing, episodes) in agent.py, the statistics in stats.py.
"""
from __future__ import annotations

import argparse
import atexit
import fcntl
import gzip
import json
import logging
import math
import os
import random
import signal
import sys
import tempfile
import threading
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table


# ---------------------------------------------------------------------------------------------
# Errors: one clear line, never a traceback wall
class UserError(Exception):
    """Bad input: a missing file, a malformed line, an unknown name. Printed as one line."""


def run_main(main) -> None:
    """Run a script's main(); known input errors and OS errors (a read-only folder, a full disk, a file
    where a folder belongs) become one line on stderr and exit code 2. A traceback is a bug of ours."""
    # Ctrl-C in a terminal signals the whole process group: the game's JVM dies with us, and the call
    # that was talking to it fails with its own error. Once interrupted, any error is the interruption.
    interrupted = []

    def on_sigint(signum, frame):
        if not interrupted:
            interrupted.append(True)
            logging.disable(logging.CRITICAL)  # py4j logs the interrupted call with its traceback
            raise KeyboardInterrupt

    if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread
        signal.signal(signal.SIGINT, on_sigint)
    try:
        main()
    except KeyboardInterrupt:
        _interrupted()
    except UserError as e:  # an environment's EnvError is one too
        if interrupted:
            _interrupted()
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:
        if interrupted:
            _interrupted()
        where = f": {e.filename}" if e.filename else ""
        print(f"error: {e.strerror or e}{where}", file=sys.stderr)
        sys.exit(2)
    except Exception:
        if interrupted:
            _interrupted()
        raise


def _interrupted() -> None:
    print("interrupted; rerun the same command to resume (finished lines and checkpoints are kept)", file=sys.stderr)
    sys.exit(130)


class ArgParser(argparse.ArgumentParser):
    """argparse whose errors are one line (`SCRIPT: error: --tasks: must be >= 1, got -1`), exit code 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def at_least(low, kind=int, strict: bool = False, high=None):
    """An argparse type: a number of `kind` that is >= low (> low when strict) and <= high if given."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}") from None
        if kind is float and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text}")
        if (value <= low if strict else value < low) or (high is not None and value > high):
            bound = f"{'>' if strict else '>='} {low}" + (f" and <= {high}" if high is not None else "")
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def set_seed(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def seed_unit(seed: int, index: int) -> None:
    """Seed one unit of work (a chunk of tasks, a batch of reflections, an RL update) by the run's seed
    and the unit's index, so a resumed or sharded run draws exactly what one uninterrupted run draws.
    1,000,003 is a prime larger than any index: seeds of different runs and units never collide."""
    set_seed(seed * 1_000_003 + index)


def usable_cores() -> int:
    """The cores this process may run on: its affinity (`taskset -c 1 python ...`, a container's CPU
    set), not every core of the machine."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def set_threads(n: int = 0) -> None:
    """Torch threads; 0 = one per usable core. A JVM env in the same process is idle while we compute."""
    torch.set_num_threads(n or usable_cores())


# ---------------------------------------------------------------------------------------------
# JSONL and small files. Writers append and flush line by line (a run killed midway keeps every
# finished line and resumes), or write a temporary file and rename it (never half a file).
# What the scripts read, checked line by line (read_jsonl's `require`): key -> type, or a one-element
# list [spec] for a list whose items are dicts of that spec.
ROLLOUT = {"id": str, "task_id": str, "step": int, "state": str,
           "expert": {"action": str, "next_state": str},
           "alternatives": [{"action": str, "next_state": str, "source": str}]}
EPISODE = {"task_id": str, "success": (bool, int)}
SUMMARY = {"split": str, "mode": str}
EXPERT = {"id": str, "task_id": str, "step": int, "messages": [{"role": str}]}
REFLECTION = {"id": str, "text": str}  # reflect.py's log: "thought" and "dropped" are text or null
CURVE = {"update": int}  # rl.py's curve.jsonl
LOSS = {"loss": (int, float)}  # train.py's loss.jsonl
SETTING = {"ablation": str, "value": (int, float), "label": str}  # ablate.sh's setting.json
CHAT = {"messages": [{"role": str}]}


def _check(value, spec, where: str) -> None:
    if isinstance(spec, dict):
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected an object, got {type(value).__name__}")
        for key, sub in spec.items():
            if key not in value:
                raise UserError(f"{where}: missing key {key!r}")
            _check(value[key], sub, f"{where}: {key!r}")
    elif isinstance(spec, list):
        if not isinstance(value, list):
            raise UserError(f"{where}: expected a list, got {type(value).__name__}")
        for i, item in enumerate(value):
            _check(item, spec[0], f"{where}[{i}]")
    elif not isinstance(value, spec) or (spec is int and isinstance(value, bool)):
        names = "/".join(t.__name__ for t in (spec if isinstance(spec, tuple) else (spec,)))
        raise UserError(f"{where}: expected {names}, got {type(value).__name__}")


def read_jsonl(path, require: dict | None = None) -> list[dict]:
    """The objects of a JSONL file. A malformed line, or one without what `require` asks for (a spec
    such as ROLLOUT), is one error naming the file and line. Where only PATH.gz exists (a published
    folder stores its episode files gzip-compressed: results/README.md), that file is read."""
    path = Path(path)
    packed = path.with_name(path.name + ".gz")
    if not path.exists() and packed.is_file():
        path = packed
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, expected a JSONL file")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            rows = _read_lines(f, path, require)
    except (OSError, EOFError) as e:  # a gzip file cut short or not gzip at all
        if isinstance(e, FileNotFoundError) or path.suffix != ".gz":
            raise
        raise UserError(f"{path}: damaged gzip file ({e})") from None
    return rows


def _read_lines(f, path, require) -> list[dict]:
    """The checked rows of an open JSONL file (read_jsonl)."""
    rows = []
    for n, raw in enumerate(f, 1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise UserError(f"{path}:{n}: not UTF-8 text (byte {e.start}); is it a JSONL file?") from None
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{n}: malformed JSON line ({e.msg})") from None
        except RecursionError:
            raise UserError(f"{path}:{n}: JSON nested too deeply") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}:{n}: expected a JSON object, got {type(row).__name__}")
        if require:
            _check(row, require, f"{path}:{n}")
        rows.append(row)
    return rows


def check_chat_rows(path, rows: list[dict]) -> None:
    """What a chat row must hold to train, checked before any model loads (one line naming file:line):
    each message's `content` is text (None only beside `tool_calls`), and some message is the
    assistant's (the turn that is trained)."""
    for n, row in enumerate(rows, 1):
        msgs = row["messages"]
        for i, m in enumerate(msgs):
            content = m.get("content")
            if not isinstance(content, str) and not (content is None and m.get("tool_calls")):
                raise UserError(f"{path}:{n}: message {i}: 'content' must be text, got {type(content).__name__}")
        if not any(m.get("role") == "assistant" for m in msgs):
            raise UserError(f"{path}:{n}: no assistant message (nothing to train)")


def dumps(row: dict) -> str:
    return json.dumps(row, ensure_ascii=False)


def append_jsonl(path, row: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(dumps(row) + "\n")
        f.flush()


def resume_jsonl(path, key: str = "id") -> set:
    """Keys already written by an earlier, interrupted run. A torn last line (killed mid-write) is
    cut off so the file stays valid."""
    path = Path(path)
    if not path.exists():
        return set()
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: not UTF-8 text (byte {e.start}): not a file this run wrote; move it away to start over") from None
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
        path.write_text(text, encoding="utf-8")
    return {row[key] for row in read_jsonl(path)}


def write_atomic(path, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)

    write_atomic_with(path, write)


def write_atomic_with(path, write) -> None:
    """`write(tmp)` writes the file at the temporary path tmp, which is then renamed to PATH: the old
    file or the new one, never half of one (binary files too: rl.py's resume point)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are ordinary files
        os.replace(tmp, path)
    except BaseException:  # a full disk, a kill: no temporary file is left behind
        Path(tmp).unlink(missing_ok=True)
        raise


def append_jsonl_rows(path, rows: list[dict]) -> None:
    """Append a whole unit (a chunk's lines) in one write: a kill leaves at most one torn last line,
    which resume_jsonl cuts."""
    if rows:
        with open(path, "a", encoding="utf-8") as f:
            f.write("".join(dumps(r) + "\n" for r in rows))
            f.flush()


_LOCKS: dict = {}  # lock file -> open descriptor, held until the process exits


def lock_output(folder, script: str) -> None:
    """One writer per output: a second `script` process on the same folder is refused with one line.
    The lock is an flock on FOLDER/.SCRIPT.lock, which the kernel releases when its process dies, so
    a killed run never leaves it stuck. Calls from the same process (tests) hold it once."""
    folder = Path(folder)
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    path = (folder / f".{script}.lock").resolve()
    if path in _LOCKS:
        return
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise UserError(f"{folder}: another {script} process (pid {holder}) is writing here; "
                        "wait for it to finish or use another output folder") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    if not _LOCKS:
        atexit.register(_drop_empty_outputs)
    _LOCKS[path] = (fd, created)


def _drop_empty_outputs() -> None:
    """At exit: a folder in which this process wrote nothing but its lock (a run that failed on its
    inputs) is left as it was found."""
    for path, (_, created) in _LOCKS.items():
        try:
            if all(p.name.endswith(".lock") and p.name.startswith(".") for p in path.parent.iterdir()):
                path.unlink(missing_ok=True)
                if created:
                    path.parent.rmdir()
        except OSError:
            pass


def write_jsonl(path, rows) -> None:
    write_atomic(path, "".join(dumps(r) + "\n" for r in rows))


def save_args(args, out_dir, name: str = "args.json") -> None:
    """Print the resolved arguments as a table and write them next to the outputs (a script with
    --dtype calls models.note_dtype first, so the file says what "auto" became on this machine)."""
    d = {k: v for k, v in vars(args).items()}
    table = Table(title=f"{Path(sys.argv[0]).name} arguments", show_header=False)
    for k, v in d.items():
        table.add_row(k, str(v))
    Console(stderr=True).print(table)
    write_atomic(Path(out_dir) / name, json.dumps(d, indent=2, default=str) + "\n")


def shard_range(n: int, shard: str) -> range:
    """The I-th of N contiguous parts of range(n) for --shard I/N. Contiguous, so the shards' JSONL
    files concatenated in order (cat shard0 shard1 ...) are the file one process writes."""
    try:
        i, k = (int(x) for x in shard.split("/"))
        assert 0 <= i < k
    except (ValueError, AssertionError):
        raise UserError(f"--shard {shard!r}: expected I/N with 0 <= I < N") from None
    return range(n * i // k, n * (i + 1) // k)
