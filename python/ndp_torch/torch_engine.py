"""The LoRA training engine of the PyTorch worker: one object per ``init`` (NDP.md §11.3).

Two model paths: a Hugging Face checkpoint folder through ``transformers`` + ``peft`` when both are
importable; otherwise the built-in Qwen2 module (torch_model.py) with our LoRA layer
(torch_lora.py), built from the resolved preset the trainer sends, or loaded from a Qwen2
checkpoint folder's ``config.json`` + ``*.safetensors`` without transformers. Either way: AdamW on
the LoRA matrices only, gradients summed over ``grad_accum`` micro-batches, global-norm clipping,
and the adapter written in PEFT's layout.
"""
import contextlib
import ctypes
import importlib.util
import json
import math
import os
import time
from pathlib import Path

import torch

from .errors import NdpError
from .safetensors_io import read_safetensors, write_safetensors
from .torch_lora import apply_lora
from .torch_model import ModelConfig, Qwen2ForCausalLM, causal_lm_loss, loss_positions

_ST_DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}


def resolve_device(requested: str):
    """``auto`` → cuda when torch sees a GPU, else cpu. ``cuda`` without one is NDP_ERR_WORKER_START."""
    notes = []
    if requested in ("auto", "", None):
        device = "cuda" if torch.cuda.is_available() else "cpu"
        notes.append(f"auto picked {device} (torch {torch.__version__}, cuda available: {torch.cuda.is_available()})")
    elif requested.startswith("cuda"):
        if not torch.cuda.is_available():
            raise NdpError("NDP_ERR_WORKER_START", f"device {requested} asked for, but torch {torch.__version__} sees no CUDA GPU")
        device = requested
    elif requested == "cpu":
        device = "cpu"
    else:
        raise NdpError("NDP_ERR_WORKER_START", f"the torch backend runs on cpu or cuda, not '{requested}'")
    return torch.device(device), notes


def _tensor_bytes(t: torch.Tensor) -> bytes:
    t = t.detach().to("cpu", torch.float32).contiguous()
    return ctypes.string_at(t.data_ptr(), t.numel() * t.element_size())


def _hf_available() -> bool:
    return importlib.util.find_spec("transformers") is not None and importlib.util.find_spec("peft") is not None


#: How many more embedding rows than tokenizer ids a model may have (padded vocabularies), as the ONNX session allows.
MAX_EMBEDDING_PADDING = 1024


def check_vocabulary(tokenizer_vocab, model_vocab: int) -> None:
    """The same rule as the ONNX session (client/trainer/training-worker.ts): NDP_ERR_VOCAB_MISMATCH."""
    if not tokenizer_vocab:
        return
    if tokenizer_vocab > model_vocab or model_vocab - tokenizer_vocab > MAX_EMBEDDING_PADDING:
        raise NdpError("NDP_ERR_VOCAB_MISMATCH", f"the data's tokenizer has {tokenizer_vocab} tokens but the model's vocabulary has {model_vocab} rows: train with the model the data was tokenized for")


class LoraEngine:
    """``init`` keys as in NDP.md §11.3; ``weights`` (name → float32 tensor) are the base weights the
    trainer sent with ``init`` (the ONNX session's seeded preset weights, so both engines train the
    very same model); without them a preset is initialised here from ``seed``."""

    def __init__(self, init: dict, weights=None):
        lora = init.get("lora") or {}
        optim = init.get("optim") or {}
        self.r = int(lora.get("r", 8))
        self.alpha = lora.get("alpha", 16)
        self.targets = list(lora.get("targets") or ["q_proj", "v_proj"])
        self.grad_accum = max(1, int(optim.get("grad_accum", 1)))
        self.max_grad_norm = float(optim.get("max_grad_norm", 1.0))
        self.seed = int(init.get("seed", 0))
        self.device, self.notes = resolve_device(str(init.get("device", "auto")))
        self.autocast = init.get("precision") == "bf16" and self.device.type == "cuda"
        generator = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        checkpoint = init.get("checkpoint")
        self.hf = False
        if checkpoint:
            self.base_name = str(checkpoint)
            self._load_checkpoint(Path(checkpoint), generator)
        else:
            model = init.get("model") or {}
            config = ModelConfig.from_dict(model)
            self.model = Qwen2ForCausalLM(config)
            self.base_name = str(model.get("preset", "ndp-preset"))
            if weights:
                self._load_state(weights, f"the weights sent with init for {self.base_name}")
                self.notes.append("base weights sent by the trainer (identical to the ONNX session's)")
            else:
                self.model.init_weights(generator)
            self.vocab_size = config.vocab_size
            self.description = f"{self.base_name} (built-in Qwen2, {config.num_hidden_layers} layers, hidden {config.hidden_size}, heads {config.num_attention_heads}/{config.num_key_value_heads}, vocab {config.vocab_size})"
        check_vocabulary(init.get("vocab"), self.vocab_size)
        if not self.hf:
            for p in self.model.parameters():
                p.requires_grad_(False)
            self.lora_layers = apply_lora(self.model, set(self.targets), self.r, self.alpha, generator)
            self.params = [p for layer in self.lora_layers.values() for p in (layer.lora_A, layer.lora_B)]
        self.model.to(self.device)
        self.optimizer = torch.optim.AdamW(self.params, lr=float(optim.get("lr", 1e-3)), weight_decay=float(optim.get("weight_decay", 0.0)))
        self.micro = 0
        self.group_tokens = 0
        self.steps = 0

    def _load_state(self, state, where: str) -> None:
        missing, _ = self.model.load_state_dict(state, strict=False)
        missing = [m for m in missing if not (m == "lm_head.weight" and self.model.config.tie_word_embeddings)]
        if missing:
            raise NdpError("NDP_ERR_WORKER_START", f"{where}: weights missing: {missing[:5]}")

    # -- model loading -------------------------------------------------------------------------
    def _load_checkpoint(self, folder: Path, generator) -> None:
        if not (folder / "config.json").is_file():
            raise NdpError("NDP_ERR_WORKER_START", f"checkpoint folder {folder} has no config.json")
        config = json.loads((folder / "config.json").read_text())
        self.vocab_size = int(config["vocab_size"])
        if _hf_available():
            from peft import LoraConfig, get_peft_model
            from transformers import AutoModelForCausalLM

            base = AutoModelForCausalLM.from_pretrained(str(folder), torch_dtype=torch.float32)
            self.model = get_peft_model(base, LoraConfig(r=self.r, lora_alpha=self.alpha, target_modules=self.targets, lora_dropout=0.0, task_type="CAUSAL_LM"))
            self.params = [p for p in self.model.parameters() if p.requires_grad]
            self.hf = True
            self.description = f"{folder.name} (transformers {config.get('model_type')}, peft LoRA)"
            self.notes.append("transformers + peft path: attention follows the model's own mask (packed documents are separated only by its attention implementation)")
            return
        if config.get("model_type") not in ("qwen2", "qwen3"):
            raise NdpError("NDP_ERR_WORKER_START", f"{folder}: model_type {config.get('model_type')!r} needs transformers + peft, which this Python cannot import")
        self.model = Qwen2ForCausalLM(ModelConfig.from_dict(config))
        state = {}
        for file in sorted(folder.glob("*.safetensors")):
            tensors, _ = read_safetensors(file)
            for name, (dtype, shape, raw) in tensors.items():
                if dtype not in _ST_DTYPES:
                    continue
                state[name] = torch.frombuffer(bytearray(raw), dtype=_ST_DTYPES[dtype]).view(shape).float() if raw.nbytes else torch.empty(shape)
        self._load_state(state, str(folder))
        self.description = f"{folder.name} (built-in Qwen2 from checkpoint, {self.model.config.num_hidden_layers} layers)"
        self.notes.append("transformers/peft not importable: checkpoint loaded into the built-in Qwen2 module")

    @property
    def trainable(self) -> int:
        return sum(p.numel() for p in self.params)

    # -- compute -------------------------------------------------------------------------------
    def _inputs(self, batch):
        """Checks ids on the host (the tensors are still in pinned CPU memory), then starts their
        asynchronous copy to the device and masks there: a host-side ``torch.where`` would make new,
        unpinned tensors whose copy blocks.

        Padding (attention_mask 0) gets id 0 and document 0, as in the ONNX session (loss-targets.ts).
        """
        mask = batch["attention_mask"] != 0
        bad = mask & ((batch["input_ids"] < 0) | (batch["input_ids"] >= self.vocab_size))
        if bool(bad.any()):
            row, col = (int(v) for v in bad.nonzero()[0])
            raise NdpError("NDP_ERR_TOKEN_OUT_OF_RANGE", f"token id {int(batch['input_ids'][row, col])} at row {row}, position {col} is outside the model vocabulary ({self.vocab_size})")
        keep, target = loss_positions(batch["labels"], batch["document_ids"] * mask)
        bad = keep & ((target < 0) | (target >= self.vocab_size))
        if bool(bad.any()):
            row, col = (int(v) for v in bad.nonzero()[0])
            raise NdpError("NDP_ERR_TOKEN_OUT_OF_RANGE", f"label {int(target[row, col])} at row {row}, position {col + 1} is outside the model vocabulary ({self.vocab_size})")
        on_device = {name: batch[name].to(self.device, non_blocking=True) for name in ("input_ids", "attention_mask", "labels", "position_ids", "document_ids")}
        keep_token = on_device["attention_mask"] != 0
        ids = on_device["input_ids"] * keep_token
        documents = on_device["document_ids"] * keep_token
        return ids, on_device["position_ids"], documents, on_device["labels"], on_device["attention_mask"]

    def _loss_sum(self, batch):
        ids, positions, documents, labels, mask = self._inputs(batch)
        # Only built when asked for: torch 1.13's autocast probes CUDA even when disabled.
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16) if self.autocast else contextlib.nullcontext():
            if self.hf:
                logits = self.model(input_ids=ids.long(), attention_mask=mask.long(), position_ids=positions.long()).logits
                return causal_lm_loss(logits, lambda x: x, labels, documents)
            hidden = self.model(ids, positions, documents)
            return causal_lm_loss(hidden, self.model.lm_head, labels, documents)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def step(self, batch) -> dict:
        """Forward + backward; every ``grad_accum``-th call scales the summed gradients by 1/tokens
        of the group (a token-weighted mean, as the ONNX session), clips and applies AdamW."""
        started = time.perf_counter()
        self.model.train()
        loss_sum, count = self._loss_sum(batch)
        value = math.nan
        if count:
            loss_sum.backward()
            self.group_tokens += count
            value = float(loss_sum.detach()) / count
        self.micro += 1
        updated = False
        grad_norm = None
        if self.micro >= self.grad_accum:
            tokens, self.micro, self.group_tokens = self.group_tokens, 0, 0
            if tokens:
                for p in self.params:
                    if p.grad is not None:
                        p.grad.mul_(1.0 / tokens)
                grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.max_grad_norm))
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.steps += 1
                updated = True
        self._sync()
        return {"loss": value, "loss_tokens": count, "updated": updated, "grad_norm": grad_norm, "step": self.steps, "compute_ms": (time.perf_counter() - started) * 1000}

    def evaluate(self, batch) -> dict:
        started = time.perf_counter()
        self.model.eval()
        with torch.no_grad():
            loss_sum, count = self._loss_sum(batch)
        return {"loss": float(loss_sum) / count if count else math.nan, "loss_tokens": count, "compute_ms": (time.perf_counter() - started) * 1000}

    # -- output --------------------------------------------------------------------------------
    def save(self, directory: str) -> list:
        """Writes adapter_config.json + adapter_model.safetensors (PEFT layout) into ``directory``."""
        os.makedirs(directory, exist_ok=True)
        if self.hf:
            self.model.save_pretrained(directory)
            return sorted(os.listdir(directory))
        tensors = {}
        for path, layer in self.lora_layers.items():
            for part, p in (("lora_A", layer.lora_A), ("lora_B", layer.lora_B)):
                tensors[f"base_model.model.{path}.{part}.weight"] = p
        weights = os.path.join(directory, "adapter_model.safetensors")
        try:
            from safetensors.torch import save_file
            save_file({k: v.detach().cpu().float().contiguous() for k, v in tensors.items()}, weights, metadata={"format": "pt"})
        except ImportError:
            write_safetensors(weights, {k: ("F32", tuple(v.shape), _tensor_bytes(v)) for k, v in tensors.items()}, {"format": "pt"})
        config = {
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": self.base_name,
            "r": self.r,
            "lora_alpha": self.alpha,
            "lora_dropout": 0.0,
            "target_modules": list(self.targets),
            "bias": "none",
            "fan_in_fan_out": False,
            "inference_mode": True,
            "init_lora_weights": True,
            "use_rslora": False,
            "use_dora": False,
            "modules_to_save": None,
            "layers_to_transform": None,
            "layers_pattern": None,
            "rank_pattern": {},
            "alpha_pattern": {},
            "revision": None,
        }
        with open(os.path.join(directory, "adapter_config.json"), "w") as f:
            json.dump(config, f, indent=2)
        return ["adapter_config.json", "adapter_model.safetensors"]
