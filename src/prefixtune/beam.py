"""Beam search that drops finished sources from the batch: the same outputs as `model.generate`, less compute.

`transformers`' beam search (generation/utils.py `_beam_search`, v5) keeps every source of a batch in every forward
pass until the *last* one is done, and runs the prompt once per beam. Both are waste on a CPU, where a forward pass
costs in proportion to its rows (issue #21: decoding is the larger cost of a Table 2 cell):

* the prompt runs once per source and its cache is repeated over the beams (the beams of a source start equal);
* a source whose beam search can no longer change -- all `num_beams` hypotheses finished and no running beam can
  beat the worst of them (HF's early-stop heuristic, which is monotone: once satisfied it stays satisfied) -- is
  removed from the batch, its cache rows and its state. Its finished hypotheses are frozen from that step in
  HF's loop too (their scores only receive -1e9), so removing it changes nothing for it or for the others.

The bookkeeping is HF's own: the same logits processors (`_get_logits_processor` on the same generation config),
the same top-k / finished-beam / early-stop helpers, the same position ids and attention masks. What can differ is
float rounding where a kernel's result depends on the number of rows; tests/test_beam.py checks identical outputs
against `generate` on tiny GPT-2 and Llama models, and `make bench` on the real SmolLM2 (results/bench.md).

Supported: decoder-only models, deterministic beam search (`num_beams > 1`, no sampling), one returned sequence.
Everything else (encoder-decoder BART, sampling, several returned sequences) goes to `generate` (`supports`).
"""
from __future__ import annotations

from typing import Any

import torch
from transformers import DynamicCache

UNSUPPORTED = ("num_beam_groups", "constraints", "force_words_ids")  # generate options this loop does not have


def supports(model, kwargs: dict[str, Any]) -> bool:
    """Whether `beam_search(model, ...)` reproduces `model.generate(**kwargs)` for these settings."""
    if model.config.is_encoder_decoder or int(kwargs.get("num_beams", 1)) < 2:
        return False
    if kwargs.get("do_sample") or int(kwargs.get("num_return_sequences", 1)) != 1:
        return False
    return not any(kwargs.get(k) for k in UNSUPPORTED)


def _positions(mask: torch.Tensor) -> torch.Tensor:
    # generation/utils.py `_prepare_position_ids_for_generation`: left padding shifts positions, pads get 0
    return (mask.long().cumsum(-1) - 1).masked_fill(mask == 0, 0)


@torch.no_grad()
def beam_search(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: Any) -> torch.Tensor:
    """(B, P + n) token ids for left-padded prompts (B, P): what `model.generate(input_ids, attention_mask,
    **kwargs)` returns for the same settings (rows padded with `pad_token_id` after their end). `model` is a
    GenerationMixin: its generation config, logits processors and beam helpers do the bookkeeping."""
    gc, _ = model._prepare_generation_config(None, **kwargs)
    model._prepare_special_tokens(gc, True, device=input_ids.device)
    batch, prompt_len = input_ids.shape
    k = int(gc.num_beams)
    max_length = prompt_len + int(gc.max_new_tokens) if gc.max_new_tokens is not None else int(gc.max_length)
    processors = model._get_logits_processor(generation_config=gc, input_ids_seq_length=prompt_len,
                                             encoder_input_ids=input_ids, device=input_ids.device, model_kwargs={})
    eos = gc._eos_token_tensor
    keep = max(2, 1 + (eos.shape[0] if eos is not None else 0)) * k
    top_k_mask = torch.cat([torch.ones(k, dtype=torch.bool), torch.zeros(keep - k, dtype=torch.bool)])
    fill = int(gc._pad_token_tensor if gc._pad_token_tensor is not None else (eos[0] if eos is not None else -1))
    length_penalty, early_stopping = float(gc.length_penalty), gc.early_stopping

    # prefill once per source; the beams of a source start from the same prompt
    mask = attention_mask.to(torch.long)
    positions = _positions(mask)
    all_ones = bool(mask.all())  # HF drops an all-ones mask once, before the loop, and then passes none
    out = model(input_ids=input_ids, attention_mask=None if all_ones else mask, position_ids=positions,
                past_key_values=DynamicCache(config=model.config), use_cache=True, return_dict=True,
                **({"logits_to_keep": 1} if model._supports_logits_to_keep() else {}))
    cache = out.past_key_values
    cache.batch_repeat_interleave(k)
    logits = out.logits[:, -1, :].to(dtype=torch.float32).repeat_interleave(k, dim=0)
    del out
    mask, positions = mask.repeat_interleave(k, dim=0), positions.repeat_interleave(k, dim=0)

    n_steps = max_length - prompt_len
    alive = torch.arange(batch)  # original source index of each row group still in the batch
    running = torch.full((batch, k, max_length), fill, dtype=torch.long)
    running[:, :, :prompt_len] = input_ids[:, None, :]
    done_seq = running.clone()
    running_scores = torch.zeros(batch, k)
    running_scores[:, 1:] = -1e9
    done_scores = torch.full((batch, k), -1e9)
    finished = torch.zeros(batch, k, dtype=torch.bool)
    unsatisfied = torch.ones(batch, 1, dtype=torch.bool)
    running_idx = torch.full((batch, k, n_steps), -1, dtype=torch.int32)
    done_idx = running_idx.clone()
    result = torch.full((batch, max_length), fill, dtype=torch.long)
    result_len = torch.zeros(batch, dtype=torch.long)
    cur = prompt_len
    while True:
        a = alive.shape[0]
        log_probs = torch.nn.functional.log_softmax(logits, dim=-1)
        log_probs = processors(running[:, :, :cur].reshape(a * k, cur), log_probs)
        log_probs = (log_probs.view(a, k, -1) + running_scores[:, :, None]).reshape(a, -1)
        top_lp, top_seq, top_idx = model._get_top_k_continuations(
            accumulated_log_probs=log_probs, running_sequences=running, running_beam_indices=running_idx,
            cur_len=cur, decoder_prompt_len=prompt_len, do_sample=False, beams_to_keep=keep, num_beams=k,
            batch_size=a)
        # HF's stopping criteria: the new token is an end-of-sequence token, or the sequence is at max_length
        last = top_seq[:, :, cur]
        hits = torch.isin(last, eos) if eos is not None else torch.zeros_like(last, dtype=torch.bool)
        if cur + 1 >= max_length:
            hits = torch.ones_like(hits)
        running, running_scores, running_idx = model._get_running_beams_for_next_iteration(
            topk_log_probs=top_lp, topk_running_sequences=top_seq, topk_running_beam_indices=top_idx,
            next_token_hits_stopping_criteria=hits, num_beams=k)
        done_seq, done_scores, done_idx, finished = model._update_finished_beams(
            sequences=done_seq, topk_running_sequences=top_seq, beam_scores=done_scores, topk_log_probs=top_lp,
            beam_indices=done_idx, topk_running_beam_indices=top_idx, is_early_stop_heuristic_unsatisfied=unsatisfied,
            is_sent_finished=finished, next_token_hits_stopping_criteria=hits, top_num_beam_mask=top_k_mask,
            num_beams=k, cur_len=cur, decoder_prompt_len=prompt_len, length_penalty=length_penalty,
            early_stopping=early_stopping)
        beam_idx = running_idx[..., cur - prompt_len].long()  # (a, k): rows of the flat (a*k) batch to continue
        cur += 1
        unsatisfied = model._check_early_stop_heuristic(
            is_early_stop_heuristic_unsatisfied=unsatisfied, running_beam_scores=running_scores,
            beam_scores=done_scores, is_sent_finished=finished, cur_len=cur, max_length=max_length,
            decoder_prompt_len=prompt_len, early_stopping=early_stopping, length_penalty=length_penalty)
        if not bool(model._beam_search_has_unfinished_sequences(unsatisfied, finished, hits, early_stopping)):
            stop = torch.ones(a, dtype=torch.bool)
        else:
            # a source is over once its heuristic is satisfied (or, with early_stopping=True, all its beams
            # finished): from then on HF's loop only adds -1e9 to its candidates
            stop = ~unsatisfied[:, 0]
            if early_stopping is True:
                stop |= finished.all(dim=1)
        gone = stop.nonzero()[:, 0]
        result[alive[gone]] = done_seq[gone, 0]
        result_len[alive[gone]] = ((done_idx[gone, 0] + 1).bool()).sum(dim=1)  # tokens of the best hypothesis
        if bool(stop.all()):
            break
        stay = (~stop).nonzero()[:, 0]
        rows = beam_idx[stay].reshape(-1)  # reorder the beams and drop the finished sources in one go
        cache.batch_select_indices(rows)
        mask, positions = mask[rows], positions[rows]
        alive, running, running_scores, running_idx = alive[stay], running[stay], running_scores[stay], running_idx[stay]
        done_seq, done_scores, done_idx = done_seq[stay], done_scores[stay], done_idx[stay]
        finished, unsatisfied = finished[stay], unsatisfied[stay]
        # the next token of every continuing beam
        positions = positions[:, -1:] + 1
        mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=-1)
        out = model(input_ids=running[:, :, cur - 1].reshape(-1, 1), attention_mask=None if all_ones else mask,
                    position_ids=positions, past_key_values=cache, use_cache=True, return_dict=True)
        cache = out.past_key_values
        logits = out.logits[:, -1, :].to(copy=True, dtype=torch.float32)
        del out
    # HF crops every row to the longest best hypothesis of the batch (the rest is filled with `fill`)
    return result[:, : prompt_len + int(result_len.max())]
