"""PyTorch reference for bench/gpu-lora.ts: the same Qwen2-style decoder, LoRA adapters, loss,
clipping and AdamW as the generated ONNX graphs (client/trainer/lora-graphs.ts), trained on the same
batches from the same initial weights. Reads everything from the folder given as argv[1]:
  spec.json          model config, LoRA spec, optimizer settings, batch shapes, steps
  base.safetensors   frozen base weights (Hugging Face names, float32)
  lora.safetensors   initial LoRA matrices (graph names lora.<layer>.<target>.A|B)
  batches.bin        int32: per micro-batch inputIds, positionIds, documentIds, then M, positions[M], targets[M]
Prints one JSON object: first/last loss, tokens/s over the timed steps, per-step ms.
Plain PyTorch only (no transformers), so the attention mask follows documentIds exactly."""
import json
import math
import struct
import sys
import time

import torch


def read_safetensors(path, device):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", info["dtype"]
        b, e = info["data_offsets"]
        t = torch.frombuffer(bytearray(data[8 + n + b : 8 + n + e]), dtype=torch.float32).reshape(info["shape"])
        out[name] = t.to(device)
    return out


def main():
    folder = sys.argv[1]
    spec = json.load(open(f"{folder}/spec.json"))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if spec.get("requireCuda") and device != "cuda":
        print(json.dumps({"skipped": "torch.cuda.is_available() is False"}))
        return
    torch.backends.cuda.matmul.allow_tf32 = False
    c = spec["config"]
    H, nh, nkv, D = c["hiddenSize"], c["numHeads"], c["numKvHeads"], c["headDim"]
    W = read_safetensors(f"{folder}/base.safetensors", device)
    lora = {k: torch.nn.Parameter(v) for k, v in read_safetensors(f"{folder}/lora.safetensors", device).items()}
    scale = spec["lora"]["alpha"] / spec["lora"]["rank"]
    B, T = spec["batchSize"], spec["seqLen"]
    N = B * T

    with open(f"{folder}/batches.bin", "rb") as f:
        raw = torch.frombuffer(bytearray(f.read()), dtype=torch.int32).to(torch.int64)
    batches, at = [], 0
    for _ in range(spec["microBatches"]):
        ids = raw[at : at + N].reshape(B, T); at += N
        pos = raw[at : at + N].reshape(B, T); at += N
        doc = raw[at : at + N].reshape(B, T); at += N
        m = int(raw[at]); at += 1
        lp = raw[at : at + m]; at += m
        lt = raw[at : at + m]; at += m
        batches.append(tuple(x.to(device) for x in (ids, pos, doc, lp, lt)))

    inv_freq = 1.0 / (c["ropeTheta"] ** (torch.arange(0, D, 2, device=device, dtype=torch.float32) / D))
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool, device=device))

    def rms(x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + c["rmsNormEps"]) * w

    def module(target):
        return f"self_attn.{target}" if target in ("q_proj", "k_proj", "v_proj", "o_proj") else f"mlp.{target}"

    def linear(x, layer, target):
        p = f"model.layers.{layer}.{module(target)}"
        y = x @ W[f"{p}.weight"].T
        if c["qkvBias"] and target in ("q_proj", "k_proj", "v_proj"):
            y = y + W[f"{p}.bias"]
        a = lora.get(f"lora.{layer}.{target}.A")
        if a is not None:
            y = y + ((x @ a.T) @ lora[f"lora.{layer}.{target}.B"].T) * scale
        return y

    def rotate(x, cos, sin):
        x1, x2 = x[..., : D // 2], x[..., D // 2 :]
        return x * cos + torch.cat([-x2, x1], -1) * sin

    def loss_sum(ids, pos, doc, lp, lt):
        h = W["model.embed_tokens.weight"][ids].reshape(N, H)
        allowed = (doc[:, :, None] == doc[:, None, :]) & (doc[:, None, :] > 0) & causal
        bias = torch.zeros(allowed.shape, device=device).masked_fill(~allowed, -1e9)[:, None]
        freqs = pos[..., None].float() * inv_freq
        ang = torch.cat([freqs, freqs], -1)[:, None]
        cos, sin = ang.cos(), ang.sin()
        for l in range(c["numLayers"]):
            p = f"model.layers.{l}"
            x = rms(h, W[f"{p}.input_layernorm.weight"])
            q = linear(x, l, "q_proj").reshape(B, T, nh, D)
            k = linear(x, l, "k_proj").reshape(B, T, nkv, D)
            v = linear(x, l, "v_proj").reshape(B, T, nkv, D)
            if c["qkNorm"]:
                q = rms(q, W[f"{p}.self_attn.q_norm.weight"])
                k = rms(k, W[f"{p}.self_attn.k_norm.weight"])
            k = k.repeat_interleave(nh // nkv, dim=2)
            v = v.repeat_interleave(nh // nkv, dim=2)
            q, k, v = rotate(q.transpose(1, 2), cos, sin), rotate(k.transpose(1, 2), cos, sin), v.transpose(1, 2)
            att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(D) + bias, -1) @ v
            h = h + linear(att.transpose(1, 2).reshape(N, nh * D), l, "o_proj")
            y = rms(h, W[f"{p}.post_attention_layernorm.weight"])
            g = linear(y, l, "gate_proj")
            h = h + linear(torch.nn.functional.silu(g) * linear(y, l, "up_proj"), l, "down_proj")
        final = rms(h, W["model.norm.weight"])[lp]
        head = W["model.embed_tokens.weight"] if c["tieWordEmbeddings"] else W["lm_head.weight"]
        logits = final @ head.T
        return torch.nn.functional.cross_entropy(logits, lt, reduction="sum")

    opt = spec["optimizer"]
    params = list(lora.values())
    adamw = torch.optim.AdamW(params, lr=opt["learningRate"], betas=(0.9, 0.999), eps=1e-8, weight_decay=opt["weightDecay"])
    accum = spec["gradAccum"]
    losses, step_ms, tokens_timed, time_timed = [], [], 0, 0.0
    for step in range(spec["steps"]):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        group = batches[step * accum : (step + 1) * accum]
        total = sum(int(b[3].numel()) for b in group)
        step_loss = 0.0
        for b in group:
            s = loss_sum(*b)
            (s / total).backward()
            step_loss += float(s.detach())
        torch.nn.utils.clip_grad_norm_(params, opt["maxGradNorm"])
        adamw.step()
        adamw.zero_grad(set_to_none=True)
        if device == "cuda":
            torch.cuda.synchronize()
        ms = (time.perf_counter() - t0) * 1000
        losses.append(step_loss / total)
        step_ms.append(ms)
        if step > 0:
            tokens_timed += sum(int((b[2] > 0).sum()) for b in group)
            time_timed += ms / 1000
    print(json.dumps({
        "device": torch.cuda.get_device_name(0) if device == "cuda" else "cpu",
        "torch": torch.__version__,
        "firstLoss": losses[0],
        "lastLoss": losses[-1],
        "losses": losses,
        "tokensPerSecond": tokens_timed / time_timed if time_timed > 0 else float("nan"),
        "stepMs": step_ms,
    }))


if __name__ == "__main__":
    main()
