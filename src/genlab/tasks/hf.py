"""Hugging Face causal LMs behind genlab's Generator: `genlab.load("hf:PATH_OR_NAME")`.

Any causal LM that `transformers` loads with AutoModelForCausalLM/AutoTokenizer
(safetensors weights, no remote code) becomes a code Generator: the same
`generate`/`stream`/`complete_function`/`evaluate` as a genlab code
run, decoded by genlab's step engine (genlab.sampling.engine) through an adapter
that exposes the model's KV cache as the sequence protocol's state. A local
folder loads offline; any other name is looked up on the Hub (downloaded when online).

    finetune(name_or_path, config) continues training such a model on a code
    base with genlab's trainer (all weights, or LoRA adapters) and saves a
    Hugging Face folder (`hf:OUT`).

Bits are counted per token for these models (`unit` "token"): a foreign
tokenizer's tokens have no exact byte length to divide by.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from genlab.core.config import RunConfig
from genlab.core.errors import GenlabError
from genlab.core.files import atomic_write_json
from genlab.core.folders import claim, remove, replacing
from genlab.core.runs import RunDir, export_info
from genlab.datasets.token_store import TokenStore, WindowSampler
from genlab.models.hf_causal import CausalLM, load_hf
from genlab.objectives.lm import LanguageModeling
from genlab.tasks.code import CodeGenerator, CodeSource
from genlab.tasks.sequence import evaluate_tokens
from genlab.training.distributed import pick_device
from genlab.training.trainer import Trainer


class HFTokens:
    """A Hugging Face tokenizer under genlab's tokenizer protocol (encode/decode/vocab_size/unit_lengths)."""

    kind = "hf"
    unit = "token"

    def __init__(self, tokenizer, model_vocab: int = 0):
        self.tk = tokenizer
        self._vocab = max(len(tokenizer), model_vocab)
        # SamplingParams after a fixed anchor keeps a piece's leading space, which SentencePiece
        # tokenizers drop from the first token of a decode; pieces then concatenate exactly.
        self._anchor = tokenizer.encode("x", add_special_tokens=False)[:1]
        self._anchor_text = self._decode(self._anchor)

    @property
    def vocab_size(self) -> int:
        return self._vocab

    def encode(self, text: str) -> list[int]:
        return self.tk.encode(text, add_special_tokens=False)

    def _decode(self, ids: list[int]) -> str:
        return self.tk.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)

    def decode(self, ids) -> str:
        return self._decode(self._anchor + list(ids))[len(self._anchor_text):]

    def unit_lengths(self) -> np.ndarray:
        return np.ones(self.vocab_size, dtype=np.int64)

    @property
    def document_separator(self) -> list[int]:
        """What joins documents in training and starts an empty prompt: end-of-text, else BOS, else a blank line."""
        for tid in (self.tk.eos_token_id, self.tk.bos_token_id):
            if tid is not None:
                return [tid]
        return self.encode("\n\n")


class HFGenerator(CodeGenerator):
    """A Hugging Face causal LM as a code Generator (see the module docstring)."""

    def __init__(self, name_or_path: str, device: str = "auto"):
        dev = pick_device(device)
        tokenizer, model = load_hf(name_or_path, dev)
        tokens = HFTokens(tokenizer, model.get_output_embeddings().weight.shape[0])
        self.name = name_or_path
        # A folder genlab exported from a text run is a text model (no Python stops); any other is taken as code.
        self.modality = export_info(name_or_path).get("task", "code")
        self._init(None, RunConfig(task=self.modality), tokens, CausalLM(model), dev)

    def default_stop(self) -> list[str]:
        return super().default_stop() if self.modality == "code" else []

    def requests(self, prompt=None, n: int = 1, seed: int | None = None, stop: list[str] | None = None, **decoding):
        """As CodeGenerator's; the model's end-of-text token also ends generation."""
        stop = self.default_stop() if stop is None else list(stop)
        eos = self.tokenizer.tk.eos_token
        return super().requests(prompt, n, seed, stop + [eos] if eos else stop, **decoding)

    def encode_prompt(self, prompt) -> list[int]:
        return self.tokenizer.encode(prompt) if prompt else self.tokenizer.document_separator

    def chat_prompt(self, messages: list[dict]) -> str | None:
        """The chat in the tokenizer's own template, where it has one."""
        if not getattr(self.tokenizer.tk, "chat_template", None):
            return None
        return self.tokenizer.tk.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    def evaluate(self, data: str | None = None, **kwargs) -> dict:
        if data is None:
            raise GenlabError(f"hf:{self.name}: a Hugging Face model has no held-out split; pass --data")
        return super().evaluate(data=data, **kwargs)


def finetune(name_or_path: str, config: RunConfig, block_size: int = 256, lora_rank: int = 0, progress: bool = True,
             overwrite: bool = False) -> Path:
    """Continue training the causal LM `name_or_path` on the code base `config.data`.

    All weights are trained, or with `lora_rank` > 0 only rank-r LoRA adapters on
    every linear layer (`peft`; Hu et al. 2021), merged into the weights at the end.
    Uses genlab's trainer with `config.train` (steps, time, lr, batch size,
    schedule) on windows of `block_size` tokens. `config.out` becomes a Hugging
    Face folder (config, safetensors weights, tokenizer) that loads as `hf:OUT`,
    with genlab's metrics.jsonl, loss.png and results.json in OUT/training/.
    Written atomically: until it finishes, OUT is left as it was.
    """
    # Long on purpose: load, adapt (LoRA), build data, train, save and clean up, in order.
    out = Path(config.out)
    # Claimed without emptying: an earlier model stays in place until the new one is swapped in.
    if claim(out, "hf-model", inputs=[config.data.source, name_or_path.removeprefix("hf:")]) and not overwrite:
        raise GenlabError(f"--out {out}: holds an earlier fine-tuned model; pass --overwrite or another --out")
    torch.manual_seed(config.train.seed)
    device = pick_device(config.train.device)
    tokenizer, model = load_hf(name_or_path, device)
    tokens = HFTokens(tokenizer, model.get_output_embeddings().weight.shape[0])
    if lora_rank:
        try:
            from peft import LoraConfig, get_peft_model
        except ModuleNotFoundError:
            raise GenlabError("--lora-rank needs the `peft` package (pip install peft)") from None
        model = get_peft_model(model, LoraConfig(r=lora_rank, lora_alpha=2 * lora_rank, target_modules="all-linear",
                                                 task_type="CAUSAL_LM"))
    lm = CausalLM(model)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    block = min(block_size, lm.max_context or block_size)
    with replacing(out, "hf-model") as work:
        run = RunDir(work / "training")
        run.path.mkdir()
        source = CodeSource()
        files = source.files(config, progress)
        store = TokenStore.build(run.data, (tokens.encode(source.read(f)) for f in files), tokens.vocab_size,
                                 tokens.unit_lengths(), config.data.val_fraction, 0.0, config.data.split_chunk,
                                 config.train.seed, separator=tokens.document_separator)
        train_tokens, val_tokens = store.split("train"), store.split("val")
        batches = WindowSampler(train_tokens, block, config.train.batch_size, config.train.seed)

        def evaluate(full: bool = False) -> dict:
            if len(val_tokens) < 2:
                return {}
            r = evaluate_tokens(lm, val_tokens, tokens.unit_lengths(), batches.block_size, device,
                                config.train.batch_size, None if full else config.train.eval_batches)
            return {"val_loss": round(r["loss"], 5), "val_bits_per_token": round(r["bits_per_unit"], 5)}

        # The Trainer itself (schedule, clipping, evals, checkpoints, trackers), but not driver.train_task: the
        # model and tokenizer are transformers' (saved with save_pretrained below), not a genlab family's.
        trainer = Trainer(LanguageModeling(lm), batches, config.train, run, evaluate,
                          items_per_batch=config.train.batch_size * batches.block_size)
        results = trainer.fit()
        if lora_rank:
            model = model.merge_and_unload()  # a plain model again: loads without peft
        model.save_pretrained(work, safe_serialization=True)
        tokenizer.save_pretrained(work)
        for copy in (run.weights, run.checkpoint, run.data):  # the weights live above; no resume for HF fine-tuning
            remove(copy)
        atomic_write_json(run.path / "results.json", {"base": name_or_path, "lora_rank": lora_rank,
                                                      "trainable_parameters": trainable, **results})
    if progress:
        print(f"fine-tuned {name_or_path} for {results['step']} steps -> {out} (load it as hf:{out})", file=sys.stderr)
    return out
