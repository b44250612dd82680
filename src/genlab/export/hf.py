"""A GPT run as a Hugging Face `transformers` folder: `genlab export RUN --format hf --out DIR`.

genlab's GPT with learned positions is GPT-2's architecture: pre-norm blocks, LayerNorm, fused QKV, a
4x MLP, tied embeddings. The differences are set in the config or in the weights: GELU exact
(`activation_function="gelu"`, not GPT-2's tanh approximation) and biases (genlab has none by default:
GPT-2's are written as zeros). Attention scale, LayerNorm epsilon (1e-5) and causal masking agree.
A RoPE GPT is refused: no transformers architecture has exactly genlab's rotary block (GPT-NeoX rotates
with an interleaving and partial-rotary layout of its own, Llama uses RMSNorm and SwiGLU).
"""

from __future__ import annotations

import torch

from genlab.core.errors import GenlabError


def gpt2_twin(model) -> "torch.nn.Module":
    """transformers' GPT2LMHeadModel holding `model`'s weights (a genlab GPT with learned positions)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    c = model.cfg
    if c.rope:
        raise GenlabError("--format hf: a GPT with rope = true has no transformers architecture with genlab's block; "
                          "train with learned positions (rope = false) to export it")
    hf = GPT2LMHeadModel(GPT2Config(vocab_size=model.vocab_size, n_positions=c.block_size, n_embd=c.n_embd,
                                    n_layer=c.n_layer, n_head=c.n_head, activation_function="gelu",
                                    resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, layer_norm_epsilon=1e-5,
                                    bos_token_id=None, eos_token_id=None, pad_token_id=None, tie_word_embeddings=True)).eval()
    with torch.no_grad():
        for p in hf.parameters():
            p.zero_()  # the biases genlab does not have (a genlab bias, when on, is copied below)
        t = hf.transformer
        t.wte.weight.copy_(model.wte.weight)
        t.wpe.weight.copy_(model.wpe.weight)
        _copy_norm(t.ln_f, model.ln_f)
        for ours, theirs in zip(model.blocks, t.h):
            _copy_norm(theirs.ln_1, ours.ln_1)
            _copy_norm(theirs.ln_2, ours.ln_2)
            for mine, conv in ((ours.attn.qkv, theirs.attn.c_attn), (ours.attn.proj, theirs.attn.c_proj),
                               (ours.mlp.fc, theirs.mlp.c_fc), (ours.mlp.proj, theirs.mlp.c_proj)):
                conv.weight.copy_(mine.weight.T)  # HF's Conv1D stores (in, out)
                if mine.bias is not None:
                    conv.bias.copy_(mine.bias)
    return hf


def _copy_norm(dest, src) -> None:
    dest.weight.copy_(src.weight)
    if src.bias is not None:
        dest.bias.copy_(src.bias)


def hf_tokenizer(tokenizer):
    """genlab's tokenizer as a `transformers` fast tokenizer (AutoTokenizer loads what it saves)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    if tokenizer.kind == "char":  # one token per character: split everything, join without spaces
        # tokenizers needs an unknown token: a character the run never saw reads as a line break there
        # (genlab itself refuses such a character).
        tk = Tokenizer(models.WordLevel({c: i for i, c in enumerate(tokenizer.chars)}, unk_token="\n"))
        tk.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # any character, newlines too
        tk.decoder = decoders.Fuse()
    elif hasattr(tokenizer, "hf"):  # byte-level BPE (text and code): already a `tokenizers` tokenizer
        tk = tokenizer.hf
    else:
        raise GenlabError(f"--format hf: a {tokenizer.kind} tokenizer has no Hugging Face equivalent")
    return PreTrainedTokenizerFast(tokenizer_object=tk, clean_up_tokenization_spaces=False)


def export_hf(generator, work) -> dict:
    """Write `generator`'s run into `work` as a transformers folder; returns the parity check."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # its per-shard bars say nothing for one small file
    config = generator.config
    model = generator.model.cpu().eval()
    twin = gpt2_twin(model)
    twin.save_pretrained(work, safe_serialization=True)
    hf_tokenizer(generator.tokenizer).save_pretrained(work)
    # Parity: the folder as transformers loads it, against the run, on the same tokens.
    loaded = AutoModelForCausalLM.from_pretrained(work, use_safetensors=True).eval()
    x = torch.randint(0, model.vocab_size, (2, min(64, config.model.block_size)), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        diff = (loaded(x).logits - model(x)).abs().max().item()
    if diff > 1e-4:
        raise GenlabError(f"--format hf: the exported model's logits differ from the run's by {diff:.2e}; not written")
    return {"max_abs_logit_difference": diff}
