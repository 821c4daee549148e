"""The PyTorch path: model, LoRA, engine, adapter output, allocator, worker loop. Skipped without torch."""
import json
import math
import os
import socket
import struct
import tempfile
import threading
import unittest

from helpers import control_frame, tensor_frames
from ndp_torch.channel import WorkerChannel
from ndp_torch.errors import NdpError
from ndp_torch.frame import FrameSource
from ndp_torch.msgpack_lite import unpackb
from ndp_torch.registry import TYP
from ndp_torch.safetensors_io import read_safetensors, write_safetensors

try:
    import torch
except ImportError:
    torch = None

SKIP = "torch is not importable by this Python (Debian: apt-get install python3-torch, then run with /usr/bin/python3)"
TINY = {"vocab_size": 512, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "rope_theta": 10000.0, "rms_norm_eps": 1e-6, "tie_word_embeddings": True, "preset": "test-tiny"}


def init_message(**over):
    message = {"w": "init", "id": 0, "model": TINY, "device": "cpu", "seed": 3, "lora": {"r": 4, "alpha": 8, "targets": ["q_proj", "v_proj"]},
               "optim": {"lr": 1e-2, "weight_decay": 0.0, "max_grad_norm": 1.0, "grad_accum": 1}}
    message.update(over)
    return message


def make_batch(b=2, t=12, seed=0, documents=None):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 512, (b, t), generator=g, dtype=torch.int32)
    docs = torch.ones(b, t, dtype=torch.int32) if documents is None else documents
    positions = torch.zeros(b, t, dtype=torch.int32)
    for row in range(b):
        start = 0
        for col in range(1, t + 1):
            if col == t or docs[row, col] != docs[row, start]:
                positions[row, start:col] = torch.arange(col - start, dtype=torch.int32)
                start = col
    labels = torch.where(docs > 0, ids, torch.full_like(ids, -100))
    return {"input_ids": ids, "attention_mask": (docs > 0).int(), "labels": labels, "position_ids": positions, "document_ids": docs}


@unittest.skipIf(torch is None, SKIP)
class ModelTest(unittest.TestCase):
    def setUp(self):
        from ndp_torch.torch_model import ModelConfig, Qwen2ForCausalLM
        self.model = Qwen2ForCausalLM(ModelConfig.from_dict(TINY))
        self.model.init_weights(torch.Generator().manual_seed(0))

    def test_attention_never_crosses_documents_nor_looks_ahead(self):
        docs = torch.tensor([[1] * 6 + [2] * 6], dtype=torch.int32)
        batch = make_batch(1, 12, documents=docs)
        base = self.model(batch["input_ids"], batch["position_ids"], docs)
        changed = batch["input_ids"].clone()
        changed[0, 7:] = (changed[0, 7:] + 1) % 512  # later tokens of document 2
        other = self.model(changed, batch["position_ids"], docs)
        self.assertTrue(torch.allclose(base[0, :7], other[0, :7], atol=1e-6), "document 1 and the causal past are untouched")
        self.assertFalse(torch.allclose(base[0, 7:], other[0, 7:]))

    def test_lora_starts_at_the_base_model_and_trains_only_adapters(self):
        from ndp_torch.torch_lora import apply_lora
        batch = make_batch()
        before = self.model(batch["input_ids"], batch["position_ids"], batch["document_ids"]).detach()
        for p in self.model.parameters():
            p.requires_grad_(False)
        layers = apply_lora(self.model, {"q_proj", "v_proj"}, 4, 8, torch.Generator().manual_seed(1))
        self.assertEqual(sorted(layers), [f"model.layers.{i}.self_attn.{n}" for i in range(2) for n in ("q_proj", "v_proj")])
        after = self.model(batch["input_ids"], batch["position_ids"], batch["document_ids"])
        self.assertTrue(torch.allclose(before, after))
        self.assertEqual({n for n, p in self.model.named_parameters() if p.requires_grad},
                         {f"model.layers.{i}.self_attn.{n}.lora_{m}" for i in range(2) for n in ("q_proj", "v_proj") for m in "AB"})

    def test_loss_ignores_cross_document_and_masked_labels(self):
        from ndp_torch.torch_model import causal_lm_loss
        docs = torch.tensor([[1, 1, 1, 2, 2, 0]], dtype=torch.int32)
        labels = torch.tensor([[5, 6, -100, 8, 9, -100]], dtype=torch.int32)
        hidden = torch.randn(1, 6, 32)
        loss, count = causal_lm_loss(hidden, self.model.lm_head, labels, docs)
        self.assertEqual(count, 2)  # 0→6 and 3→9; 2→8 crosses documents, the rest are -100
        self.assertTrue(math.isfinite(float(loss)))


@unittest.skipIf(torch is None, SKIP)
class EngineTest(unittest.TestCase):
    def test_loss_falls_and_accumulation_steps_every_second_call(self):
        from ndp_torch.torch_engine import LoraEngine
        engine = LoraEngine(init_message(optim={"lr": 2e-2, "grad_accum": 2, "max_grad_norm": 1.0}))
        self.assertEqual(engine.trainable, 2 * (4 * 32 + 32 * 4 + 4 * 32 + 16 * 4))
        batch = make_batch()
        first = engine.evaluate(batch)["loss"]
        results = [engine.step(batch) for _ in range(30)]
        self.assertEqual([r["updated"] for r in results[:4]], [False, True, False, True])
        self.assertIsNone(results[0]["grad_norm"])
        self.assertGreater(results[1]["grad_norm"], 0)
        self.assertEqual(results[-1]["step"], 15)
        self.assertEqual(results[0]["loss_tokens"], 2 * 11)
        last = engine.evaluate(batch)["loss"]
        self.assertLess(last, first - 0.1, f"loss {first} -> {last}")

    def test_accumulation_is_a_token_weighted_mean_like_one_big_batch(self):
        from ndp_torch.torch_engine import LoraEngine
        one, two = make_batch(1, 12, seed=1), make_batch(1, 12, seed=2)
        two["labels"][0, :5] = -100  # unequal token counts make a plain mean of means differ
        both = {k: torch.cat([one[k], two[k]]) for k in one}
        accumulated = LoraEngine(init_message(optim={"lr": 1e-2, "grad_accum": 2}))
        accumulated.step(one)
        r = accumulated.step(two)
        single = LoraEngine(init_message(optim={"lr": 1e-2, "grad_accum": 1}))
        s = single.step(both)
        self.assertAlmostEqual(r["grad_norm"], s["grad_norm"], places=5)
        for a, b in zip(accumulated.params, single.params):
            self.assertTrue(torch.allclose(a, b, atol=1e-6))

    def test_token_out_of_range_fails_the_batch(self):
        from ndp_torch.torch_engine import LoraEngine
        engine = LoraEngine(init_message())
        batch = make_batch()
        batch["input_ids"][1, 3] = 512
        with self.assertRaises(NdpError) as ctx:
            engine.step(batch)
        self.assertEqual(ctx.exception.code, "NDP_ERR_TOKEN_OUT_OF_RANGE")
        self.assertIn("row 1, position 3", ctx.exception.message)
        batch = make_batch()
        batch["attention_mask"][0, 5] = 0
        batch["input_ids"][0, 5] = 99999  # padding: ignored, as in the ONNX session
        self.assertEqual(engine.step(batch)["loss_tokens"], 2 * 11 - 2)

    def test_weights_sent_with_init_are_the_model(self):
        from ndp_torch.torch_engine import LoraEngine
        from ndp_torch.torch_model import ModelConfig, Qwen2ForCausalLM
        source = Qwen2ForCausalLM(ModelConfig.from_dict(TINY))
        source.init_weights(torch.Generator().manual_seed(99))
        weights = {k: v.clone() for k, v in source.state_dict().items() if k != "lm_head.weight"}
        engine = LoraEngine(init_message(), weights)
        batch = make_batch()
        self.assertTrue(torch.allclose(source(batch["input_ids"], batch["position_ids"], batch["document_ids"]),
                                       engine.model(batch["input_ids"], batch["position_ids"], batch["document_ids"]), atol=1e-6))
        with self.assertRaises(NdpError) as ctx:
            LoraEngine(init_message(), {"model.norm.weight": torch.ones(32)})
        self.assertEqual(ctx.exception.code, "NDP_ERR_WORKER_START")

    def test_qwen3_layout(self):
        from ndp_torch.torch_model import ModelConfig, Qwen2ForCausalLM
        config = ModelConfig.from_dict({**TINY, "model_type": "qwen3", "head_dim": 16})
        self.assertEqual((config.qk_norm, config.qkv_bias, config.head_dim), (True, False, 16))
        model = Qwen2ForCausalLM(config)
        names = set(dict(model.named_parameters()))
        self.assertIn("model.layers.0.self_attn.q_norm.weight", names)
        self.assertNotIn("model.layers.0.self_attn.q_proj.bias", names)
        self.assertEqual(model.model.layers[0].self_attn.q_proj.out_features, 64)
        batch = make_batch()
        self.assertEqual(tuple(model(batch["input_ids"], batch["position_ids"], batch["document_ids"]).shape), (2, 12, 32))

    def test_evaluate_changes_nothing(self):
        from ndp_torch.torch_engine import LoraEngine
        engine = LoraEngine(init_message())
        batch = make_batch()
        engine.step(batch)
        snapshot = [p.detach().clone() for p in engine.params]
        self.assertEqual(engine.evaluate(batch)["loss"], engine.evaluate(batch)["loss"])
        self.assertTrue(all(torch.equal(a, b) for a, b in zip(snapshot, engine.params)))

    def test_no_trained_token_is_nan_not_a_crash(self):
        from ndp_torch.torch_engine import LoraEngine
        engine = LoraEngine(init_message())
        batch = make_batch()
        batch["labels"].fill_(-100)
        result = engine.step(batch)
        self.assertTrue(math.isnan(result["loss"]))
        self.assertEqual(result["loss_tokens"], 0)

    def test_refusals(self):
        from ndp_torch.torch_engine import LoraEngine
        with self.assertRaises(NdpError) as ctx:
            LoraEngine(init_message(vocab=513))
        self.assertEqual(ctx.exception.code, "NDP_ERR_VOCAB_MISMATCH")
        with self.assertRaises(NdpError) as ctx:
            LoraEngine(init_message(device="webgpu"))
        self.assertEqual(ctx.exception.code, "NDP_ERR_WORKER_START")
        if not torch.cuda.is_available():
            with self.assertRaises(NdpError) as ctx:
                LoraEngine(init_message(device="cuda"))
            self.assertEqual(ctx.exception.code, "NDP_ERR_WORKER_START")

    def test_adapter_in_peft_layout(self):
        from ndp_torch.torch_engine import LoraEngine
        engine = LoraEngine(init_message())
        engine.step(make_batch())
        with tempfile.TemporaryDirectory() as folder:
            out = os.path.join(folder, "adapter")
            self.assertEqual(engine.save(out), ["adapter_config.json", "adapter_model.safetensors"])
            with open(os.path.join(out, "adapter_config.json")) as f:
                config = json.load(f)
            self.assertEqual((config["peft_type"], config["r"], config["lora_alpha"], config["target_modules"]), ("LORA", 4, 8, ["q_proj", "v_proj"]))
            tensors, metadata = read_safetensors(os.path.join(out, "adapter_model.safetensors"))
            self.assertEqual(metadata, {"format": "pt"})
            self.assertEqual(tensors["base_model.model.model.layers.1.self_attn.v_proj.lora_A.weight"][:2], ("F32", (4, 32)))
            self.assertEqual(tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"][:2], ("F32", (32, 4)))
            a = engine.lora_layers["model.layers.0.self_attn.q_proj"].lora_A.detach()
            raw = tensors["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"][2]
            self.assertTrue(torch.equal(torch.frombuffer(bytearray(raw), dtype=torch.float32).view(4, 32), a))
            self.assertEqual(len(tensors), 8)

    def test_checkpoint_folder_loads_into_the_builtin_module_without_transformers(self):
        from ndp_torch import torch_engine
        from ndp_torch.torch_model import ModelConfig, Qwen2ForCausalLM
        if torch_engine._hf_available():
            self.skipTest("transformers + peft are importable here: the checkpoint takes their path")
        source = Qwen2ForCausalLM(ModelConfig.from_dict(TINY))
        source.init_weights(torch.Generator().manual_seed(42))
        with tempfile.TemporaryDirectory() as folder:
            with open(os.path.join(folder, "config.json"), "w") as f:
                json.dump({**TINY, "model_type": "qwen2"}, f)
            state = {k: v for k, v in source.state_dict().items() if k != "lm_head.weight"}
            write_safetensors(os.path.join(folder, "model.safetensors"),
                              {k: ("F32", tuple(v.shape), v.contiguous().numpy().tobytes()) for k, v in state.items()})
            engine = torch_engine.LoraEngine(init_message(model=None, checkpoint=folder))
        batch = make_batch()
        expected = source(batch["input_ids"], batch["position_ids"], batch["document_ids"])
        got = engine.model(batch["input_ids"], batch["position_ids"], batch["document_ids"])
        self.assertTrue(torch.allclose(expected, got, atol=1e-5))


@unittest.skipIf(torch is None, SKIP)
class AllocatorTest(unittest.TestCase):
    def test_lands_in_torch_memory_in_either_byte_order(self):
        from ndp_torch.torch_io import TorchAllocator
        for little in (True, False):
            trainer, worker = socket.socketpair()
            values = list(range(-5, 15))
            data = struct.pack(("<" if little else ">") + "20i", *values)
            trainer.sendall(control_frame({"w": "batch", "id": 0, "tensors": ["x"]}) + tensor_frames(0, "x", TYP["TOKEN_IDS"], (4, 5), data, little, 50))
            batch = WorkerChannel(worker, allocator=TorchAllocator()).receive()
            self.assertEqual(batch["x"].dtype, torch.int32)
            self.assertEqual(batch["x"].tolist(), [values[i:i + 5] for i in range(0, 20, 5)])
            trainer.close()
            worker.close()


@unittest.skipIf(torch is None, SKIP)
class WorkerLoopTest(unittest.TestCase):
    def test_init_train_eval_save_close_over_a_socket(self):
        from ndp_torch.worker import serve
        trainer, worker = socket.socketpair()
        trainer.settimeout(120)  # a dead worker thread fails the test instead of hanging it
        self.addCleanup(trainer.close)
        self.addCleanup(worker.close)
        outcome = {}
        thread = threading.Thread(target=lambda: outcome.setdefault("status", serve(WorkerChannel(worker))))
        thread.start()
        source = FrameSource(trainer)

        def reply():
            return unpackb(source.read_frame().payload)

        trainer.sendall(control_frame(init_message()))
        ready = reply()
        self.assertEqual((ready["w"], ready["id"], ready["backend"], ready["device"], ready["vocab_size"]), ("ready", 0, "builtin", "cpu", 512))
        batch = make_batch()
        for batch_id, mode in ((1, "train"), (2, "eval")):
            stream = control_frame({"w": "batch", "id": batch_id, "mode": mode, "tensors": list(batch)})
            for name, tensor in batch.items():
                stream += tensor_frames(batch_id, name, TYP["TOKEN_IDS"], tuple(tensor.shape), tensor.numpy().tobytes())
            trainer.sendall(stream)
            self.assertEqual(reply(), {"w": "ack", "id": batch_id})
            result = reply()
            self.assertEqual((result["w"], result["id"], result["loss_tokens"]), ("result", batch_id, 22))
        with tempfile.TemporaryDirectory() as folder:
            trainer.sendall(control_frame({"w": "save", "id": 3, "dir": os.path.join(folder, "a")}))
            self.assertEqual(reply(), {"w": "saved", "id": 3, "files": ["adapter_config.json", "adapter_model.safetensors"]})
        trainer.sendall(control_frame({"w": "bogus", "id": 4}))
        self.assertEqual(reply()["code"], "NDP_ERR_WORKER_PROTOCOL")
        trainer.sendall(control_frame({"w": "close", "id": 5}))
        self.assertEqual(reply(), {"w": "closed", "id": 5})
        thread.join()
        self.assertEqual(outcome["status"], 0)


if __name__ == "__main__":
    unittest.main()
